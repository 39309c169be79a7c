"""The siamese paraphrase loss: binary cross-entropy on the head's logit, plus
``online_contrastive`` times ``OnlineContrastiveLoss`` on the sentence embeddings the head read,
so the embeddings are shaped for the decision directly, at no extra encoder pass."""

from __future__ import annotations

import torch

from optiminbert.losses.binary_cross_entropy import BinaryCrossEntropyLoss
from optiminbert.losses.online_contrastive import OnlineContrastiveLoss
from optiminbert.multitask import PairLogit
from optiminbert.schema import RunShape, Setting, at_least


def _paraphrase_siamese(shape: RunShape) -> bool:
    return shape.pairs == "siamese" and "quora" in shape.tasks


class SiameseParaphraseLoss(BinaryCrossEntropyLoss):
    settings = (
        Setting("online_contrastive", 0.0, "siamese paraphrase: weight of the online contrastive loss on (u, v) added to BCE (0: BCE alone)",
                check=at_least(0), applies=_paraphrase_siamese),
        Setting("online_contrastive_margin", 0.5, "online contrastive: non-paraphrases are pushed to at least this cosine distance",
                check=at_least(0), applies=_paraphrase_siamese, when=lambda v: v["online_contrastive"] > 0),
    )

    def __init__(self, weight: float = 0.0, margin: float = 0.5):
        super().__init__()
        self.weight = weight
        self.contrastive = OnlineContrastiveLoss(margin)

    @property
    def in_batch(self) -> bool:
        return bool(self.weight)

    @classmethod
    def from_settings(cls, settings) -> "SiameseParaphraseLoss":
        return cls(settings["online_contrastive"], settings["online_contrastive_margin"])

    def forward(self, prediction: PairLogit, labels: torch.Tensor) -> torch.Tensor:
        loss = super().forward(prediction.logit, labels)
        if self.weight:
            loss = loss + self.weight * self.contrastive(prediction.embeddings, labels)
        return loss
