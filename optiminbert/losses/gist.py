"""Solatorio 2024, "GISTEmbed: Guided In-sample Selection of Training Negatives".

Like MNRL, with anchor-positive, anchor-anchor and positive-positive candidates, but a frozen
guide model vets the negatives: a candidate the guide rates at least as similar to the anchor as
the anchor's own positive, minus ``margin``, is likely a false negative (a second paraphrase in
the batch) and is masked out. Similarities are divided by ``temperature``. As sentence-transformers'
GISTEmbedLoss (tested against it), but for exact ties: a candidate the guide rates exactly as
similar as the positive (a duplicate of it) is masked here and kept as a negative there.

``prediction`` is (B, 2, d); ``labels`` are the guide's embeddings of the same pairs, (B, 2, g),
computed once up front (the guide is frozen, so they never change)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from optiminbert.losses.base import Loss
from optiminbert.schema import Setting, positive, siamese


def _gist(values: dict) -> bool:
    return values["contrastive"] == "gist"


class GISTEmbedLoss(Loss):
    name = "gist"
    in_batch = True
    settings = (
        Setting("gist_temperature", 0.01, "GISTEmbed: similarities divided by this", check=positive,
                applies=siamese, when=_gist),
        Setting("gist_margin", 0.0, "GISTEmbed: mask candidates the guide rates >= positive - margin",
                applies=siamese, when=_gist),
        Setting("guide", "default", "GISTEmbed's frozen guide: 'default' or a BERT directory with the checkpoint's vocabulary",
                applies=siamese, when=_gist),
    )

    def __init__(self, temperature: float = 0.01, margin: float = 0.0):
        super().__init__()
        self.temperature = temperature
        self.margin = margin

    @classmethod
    def from_settings(cls, settings) -> "GISTEmbedLoss":
        return cls(temperature=settings["gist_temperature"], margin=settings["gist_margin"])

    def forward(self, prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        anchors, positives = F.normalize(prediction.float(), dim=-1).unbind(1)
        guide_a, guide_p = F.normalize(labels.float(), dim=-1).unbind(1)
        guide_ap = guide_a @ guide_p.T
        # The guide's similarity to the true positive, read off the matrix the candidates are
        # compared in, so that a tie is a tie (a separately computed dot product can round apart).
        threshold = guide_ap.diagonal().unsqueeze(1) - self.margin
        eye = torch.eye(len(anchors), dtype=torch.bool, device=anchors.device)
        blocks = []
        for model_sim, guide_sim, keep_diagonal in (
            (anchors @ positives.T, guide_ap, True),  # the diagonal is the positive itself
            (anchors @ anchors.T, guide_a @ guide_a.T, False),  # the diagonal is the anchor itself
            (positives @ positives.T, guide_p @ guide_p.T, False),
        ):
            masked = (guide_sim >= threshold) & ~eye if keep_diagonal else (guide_sim >= threshold) | eye
            blocks.append((model_sim / self.temperature).masked_fill(masked, float("-inf")))
        scores = torch.cat(blocks, dim=1)
        return F.cross_entropy(scores, torch.arange(len(scores), device=scores.device))
