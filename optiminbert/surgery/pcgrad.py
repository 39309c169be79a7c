"""PCGrad, "Gradient Surgery for Multi-Task Learning" (Yu et al., NeurIPS 2020).

For each task i, in a random order over the other tasks j: if g_i and g_j conflict
(g_i · g_j < 0), project g_i onto the normal plane of g_j:

    g_i ← g_i − (g_i · g_j / ‖g_j‖²) g_j

The projected gradients of the shared parameters are summed (reduction "sum", matching the
summed loss of plain multitask training). Each task's own head gets its own gradient, untouched.
"""

from __future__ import annotations

import torch

from optiminbert.surgery.base import GramianStrategy


def conflict_coefficients(gram: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """PCGrad on the tasks' Gram matrix G = g gᵀ (T, T): returns C (T, T), projected = C @ g.

    Every projected gradient stays a combination of the original ones, so its dot products
    are (C G)[i, j] and each projection only changes one coefficient. Working on T x T numbers
    instead of T full gradients makes the surgery two passes over the gradients (G, then the
    merge) instead of a dozen (its cost per step: the study, study/report.md)."""
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


class PCGrad(GramianStrategy):
    name = "pcgrad"

    def __init__(self, settings, tasks: int = 0):
        super().__init__(settings, tasks)
        self.generator = torch.Generator().manual_seed(self.seed)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def weights(self, gramian: torch.Tensor) -> torch.Tensor:
        return conflict_coefficients(gramian, self.generator).sum(0)
