"""Reimers & Gurevych 2019, "Sentence-BERT": MSE between cos(u, v) and the gold similarity
scaled to [0, 1] (siamese STS). The prediction arrives as 5·cos(u, v), so this is ``MSELoss``'s
arithmetic."""

from __future__ import annotations

from optiminbert.losses.mse import MSELoss


class CosineSimilarityLoss(MSELoss):
    pass
