"""Binary cross-entropy on one logit (paraphrase)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from optiminbert.losses.base import Loss


class BinaryCrossEntropyLoss(Loss):
    def forward(self, prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(prediction.float(), labels.float())
