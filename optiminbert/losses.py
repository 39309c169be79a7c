"""Training objectives, one class each with the same signature: ``loss(prediction, labels)``,
where ``prediction`` is what ``MultitaskBert.forward`` returns for the task."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optiminbert.multitask import STS_SCALE


class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy over class logits (sentiment)."""

    def forward(self, prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(prediction.float(), labels.long())


class BinaryCrossEntropyLoss(nn.Module):
    """Binary cross-entropy on one logit (paraphrase)."""

    def forward(self, prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(prediction.float(), labels.float())


class MSELoss(nn.Module):
    """Mean squared error of a regressed 0..5 similarity (STS, cross-encoded), measured on the
    0..1 scale: on the raw scale it is 25 times larger, and in a summed multitask loss (with
    gradient clipping) it drowned the sentiment and paraphrase gradients."""

    def forward(self, prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(prediction.float() / STS_SCALE, labels.float() / STS_SCALE)


class CosineSimilarityLoss(MSELoss):
    """Reimers & Gurevych 2019 (Sentence-BERT): MSE between cos(u, v) and the gold similarity
    scaled to [0, 1]. The prediction arrives as 5·cos(u, v), so this is MSELoss's arithmetic."""


def loss_for(task_kind: str, pairs: str) -> nn.Module:
    if task_kind == "classification":
        return CrossEntropyLoss()
    if task_kind == "binary":
        return BinaryCrossEntropyLoss()
    return CosineSimilarityLoss() if pairs == "siamese" else MSELoss()
