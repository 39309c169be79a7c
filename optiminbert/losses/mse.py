"""Mean squared error of a regressed 0..5 similarity (STS, cross-encoded), measured on the 0..1
scale: on the raw scale it is 25 times larger, and in a summed multitask loss (with gradient
clipping) it drowned the sentiment and paraphrase gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from optiminbert.losses.base import Loss
from optiminbert.multitask import STS_SCALE


class MSELoss(Loss):
    def forward(self, prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(prediction.float() / STS_SCALE, labels.float() / STS_SCALE)
