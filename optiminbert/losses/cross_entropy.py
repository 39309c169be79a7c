"""Softmax cross-entropy over class logits (sentiment)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from optiminbert.losses.base import Loss


class CrossEntropyLoss(Loss):
    def forward(self, prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(prediction.float(), labels.long())
