"""Su 2022, "CoSENT: a more efficient sentence vector scheme than Sentence-BERT" (siamese STS).

The gold scores are used only for their order: every two pairs of the batch whose scores differ,
pair i scored below pair j, should have cos(u_i, v_i) < cos(u_j, v_j), and each that does not is
penalised smoothly:

    loss = log(1 + Σ_{i, j: y_i < y_j} exp(λ · (s_i − s_j))),   s = cos(u, v), λ = ``scale``

(the 1 is the appended exp(0) term of a logsumexp, which keeps it stable). As
sentence-transformers' CoSENTLoss (tested against it). Pairs with equal scores are not compared.

``prediction`` is the siamese STS prediction, 5·cos(u, v) (a ``PairLogit`` beside u and v, or the
score alone); ``labels`` are the 0..5 gold scores."""

from __future__ import annotations

import torch

from optiminbert.losses.base import Loss
from optiminbert.multitask import STS_SCALE, PairLogit
from optiminbert.schema import RunShape, Setting, positive


def siamese_sts(shape: RunShape) -> bool:
    """A siamese run that trains STS: the runs whose STS loss ``sts_loss`` chooses."""
    return shape.pairs == "siamese" and "sts" in shape.tasks


class CoSENTLoss(Loss):
    name = "cosent"
    in_batch = True  # every pair is ranked against the rest of its batch
    settings = (
        Setting("cosent_scale", 20.0, "CoSENT: differences of the pairs' cosines times this, then log(1 + Σ exp)",
                check=positive, applies=siamese_sts, when=lambda v: v["sts_loss"] == "cosent"),
    )

    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.scale = scale

    @classmethod
    def from_settings(cls, settings) -> "CoSENTLoss":
        return cls(scale=settings["cosent_scale"])

    def similarity(self, prediction: PairLogit | torch.Tensor) -> torch.Tensor:
        """s for each pair of the batch, (B,): the cosine."""
        score = prediction.logit if isinstance(prediction, PairLogit) else prediction
        return score.float() / STS_SCALE

    def forward(self, prediction: PairLogit | torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scores = self.scale * self.similarity(prediction)
        labels = labels.float()
        differences = scores[:, None] - scores[None, :]  # (i, j): s_i - s_j
        ranked_below = labels[:, None] < labels[None, :]  # (i, j): y_i < y_j
        terms = differences.masked_fill(~ranked_below, float("-inf")).flatten()
        return torch.logsumexp(torch.cat([terms.new_zeros(1), terms]), dim=0)
