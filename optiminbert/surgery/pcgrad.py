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


def project_conflicting(grads: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """grads: (T, P), one flattened gradient per task. Returns the projected (T, P)."""
    projected = grads.clone()
    tasks = grads.shape[0]
    for i in range(tasks):
        others = [j for j in torch.randperm(tasks, generator=generator).tolist() if j != i]
        for j in others:
            dot = projected[i] @ grads[j]
            if dot < 0:
                projected[i] -= dot / grads[j].pow(2).sum().clamp(min=1e-20) * grads[j]
    return projected


class PCGrad(GradientStrategy):
    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.generator = torch.Generator().manual_seed(seed)

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
        per_task = []
        names = [task for task, loss in losses.items() if loss is not None]
        for task in losses:
            if losses[task] is None:  # this rank's slice of the task's batch is empty
                per_task.append(_flatten([None] * len(shared), shared))
                continue
            own = task_params.get(task, [])
            grads = torch.autograd.grad(
                losses[task], shared + own, retain_graph=task != names[-1], allow_unused=True
            )
            per_task.append(_flatten(grads[: len(shared)], shared))
            for p, g in zip(own, grads[len(shared) :]):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
        distributed.all_reduce_gradients([p for own in task_params.values() for p in own])
        # Project the global per-task gradients: the ranks' own ones conflict differently.
        stacked = distributed.all_reduce_(torch.stack(per_task))
        merged = project_conflicting(stacked, self.generator).sum(0)
        offset = 0
        for p in shared:
            n = p.numel()
            p.grad = merged[offset : offset + n].view_as(p).to(p.dtype)
            offset += n


def _flatten(grads, params) -> torch.Tensor:
    # A task that does not reach a shared parameter contributes a zero gradient to it.
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(grads, params)]
    )
