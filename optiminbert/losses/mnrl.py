"""Henderson et al. 2017, "Efficient Natural Language Response Suggestion for Smart Reply":
Multiple Negatives Ranking. Cross-entropy of each anchor against all in-batch positives, scored
by ``scale`` times the cosine similarity, with its own positive (the diagonal) as the target.

``prediction`` is (B, 2, d), each anchor's embedding beside its positive's; ``labels`` are unused."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from optiminbert.losses.base import Loss
from optiminbert.schema import Setting, positive, siamese


class MultipleNegativesRankingLoss(Loss):
    name = "mnrl"
    in_batch = True
    settings = (
        Setting("mnrl_scale", 20.0, "MNRL: cosine similarities times this, then cross-entropy", check=positive,
                applies=siamese, when=lambda v: v["contrastive"] == "mnrl"),
    )

    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.scale = scale

    @classmethod
    def from_settings(cls, settings) -> "MultipleNegativesRankingLoss":
        return cls(scale=settings["mnrl_scale"])

    def forward(self, prediction: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        anchors, positives = F.normalize(prediction.float(), dim=-1).unbind(1)
        scores = self.scale * anchors @ positives.T
        return F.cross_entropy(scores, torch.arange(len(scores), device=scores.device))
