"""Reimers & Gurevych 2019, "Sentence-BERT": MSE between cos(u, v) and the gold similarity
scaled to [0, 1] (siamese STS). The prediction arrives as 5·cos(u, v) (a ``PairLogit`` beside u
and v, or the score alone), so this is ``MSELoss``'s arithmetic on the score."""

from __future__ import annotations

import torch

from optiminbert.losses.mse import MSELoss
from optiminbert.multitask import PairLogit


class CosineSimilarityLoss(MSELoss):
    def forward(self, prediction: PairLogit | torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return super().forward(prediction.logit if isinstance(prediction, PairLogit) else prediction, labels)
