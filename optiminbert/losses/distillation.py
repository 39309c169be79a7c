"""Clark et al. 2019, "BAM! Born-Again Multi-Task Networks for Natural Language Understanding":
a multitask student learns from single-task teachers with *teacher annealing*. Each task's loss is

    λ · (the task's own loss on the gold label) + (1 − λ) · (the loss against the teachers)

with λ rising linearly from 0 to 1 over training: the student first imitates its teachers, then
moves to the gold labels, so it can end up better than them. Without annealing λ is the fixed
``gold_weight``. What "against the teachers" means is the task kind's (``kinds.py``): soft
cross-entropy on the teachers' class distribution at ``temperature`` (Hinton et al. 2015's T²
scaling), BCE on their paraphrase probability, squared error to their similarity score.

``labels`` are (B, 1 + k): the gold label, then the teachers' k soft targets (``teachers.TeacherSplit``).
"""

from __future__ import annotations

import torch

from optiminbert.kinds import TaskKind
from optiminbert.losses.base import Loss
from optiminbert.multitask import PairLogit


class DistillationLoss(Loss):
    def __init__(self, gold: Loss, kind: TaskKind, temperature: float = 1.0, anneal: bool = True, gold_weight: float = 0.5):
        super().__init__()
        self.gold, self.kind, self.temperature, self.anneal = gold, kind, temperature, anneal
        self.weight = 0.0 if anneal else gold_weight

    @property
    def in_batch(self) -> bool:
        return self.gold.in_batch

    def at_step(self, step: int, total: int) -> None:
        if self.anneal:
            self.weight = step / total

    def forward(self, prediction: torch.Tensor | PairLogit, labels: torch.Tensor) -> torch.Tensor:
        gold = self.gold(prediction, labels[:, 0])
        raw = prediction.logit if isinstance(prediction, PairLogit) else prediction
        taught = self.kind.distillation_loss(raw, labels[:, 1:], self.temperature)
        return self.weight * gold + (1 - self.weight) * taught
