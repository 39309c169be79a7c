"""PCGrad, "Gradient Surgery for Multi-Task Learning" (Yu et al., NeurIPS 2020).

For each task i, in a random order over the other tasks j: if g_i and g_j conflict
(g_i · g_j < 0), project g_i onto the normal plane of g_j:

    g_i ← g_i − (g_i · g_j / ‖g_j‖²) g_j

The projected gradients of the shared parameters are summed (reduction "sum", matching the
summed loss of plain multitask training). Each task's own head gets its own gradient, untouched.
"""

from __future__ import annotations

import torch
from torch import nn

from optiminbert import distributed
from optiminbert.surgery.base import GradientStrategy


def conflict_coefficients(gram: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """PCGrad on the tasks' Gram matrix G = g gᵀ (T, T): returns C (T, T), projected = C @ g.

    Every projected gradient stays a combination of the original ones, so its dot products
    are (C G)[i, j] and each projection only changes one coefficient. Working on T x T numbers
    instead of T full gradients makes the surgery two passes over the gradients (G, then the
    merge) instead of a dozen (its cost: benchmarks/pcgrad_cost.py, docs/performance.md)."""
    tasks = gram.shape[0]
    coefficients = torch.eye(tasks, dtype=gram.dtype)
    for i in range(tasks):
        others = [j for j in torch.randperm(tasks, generator=generator).tolist() if j != i]
        for j in others:
            dot = coefficients[i] @ gram[:, j]
            if dot < 0:
                coefficients[i, j] -= dot / gram[j, j].clamp(min=1e-20)
    return coefficients


def project_conflicting(grads: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """grads: (T, P), one flattened gradient per task. Returns the projected (T, P)."""
    return conflict_coefficients(grads @ grads.T, generator).to(grads.dtype) @ grads


class PCGrad(GradientStrategy):
    name = "pcgrad"

    def __init__(self, settings):
        super().__init__(settings)
        self.generator = torch.Generator().manual_seed(self.seed)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def backward(
        self,
        losses: dict[str, torch.Tensor],
        shared: list[nn.Parameter],
        task_params: dict[str, list[nn.Parameter]],
    ) -> None:
        # One (T, P) fp32 buffer that each task's flattened gradient is written into (a task
        # that does not reach a shared parameter leaves zeros there).
        per_task = torch.zeros(len(losses), sum(p.numel() for p in shared), device=shared[0].device)
        names = [task for task, loss in losses.items() if loss is not None]
        for row, task in zip(per_task, losses):
            if losses[task] is None:  # this rank's slice of the task's batch is empty: a zero row
                continue
            own = task_params.get(task, [])
            grads = torch.autograd.grad(
                losses[task], shared + own, retain_graph=task != names[-1], allow_unused=True
            )
            distributed.flatten_grads(grads[: len(shared)], shared, out=row)
            for p, g in zip(own, grads[len(shared) :]):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
        distributed.all_reduce_gradients([p for own in task_params.values() for p in own])
        # Project the global per-task gradients: the ranks' own ones conflict differently.
        distributed.all_reduce_(per_task)
        gram = (per_task @ per_task.T).double().cpu()
        weights = conflict_coefficients(gram, self.generator).sum(0)
        distributed.set_grads(shared, weights.to(per_task) @ per_task)
