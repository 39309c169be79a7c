"""Li & Li 2023, "AnglE-optimized Text Embeddings" (siamese STS).

CoSENT's ranking objective (``cosent.py``) with another pairwise similarity. The cosine saturates
near ±1, where its gradient vanishes; AnglE reads each embedding as a complex vector, its first
half the real parts and its second half the imaginary ones, z = a + ib for u and w = c + id for v
(an odd width gets a zero last coordinate), and scores the pair by the angle difference between
them:

    s(u, v) = |Σ_k Re(z_k w̄_k) + Im(z_k w̄_k)| / (‖u‖ ‖v‖) = |cos(u, v) + Σ_k (b_k c_k − a_k d_k) / (‖u‖ ‖v‖)|

    loss = log(1 + Σ_{i, j: y_i < y_j} exp(λ · (s_i − s_j))),   λ = ``scale``

As sentence-transformers' AnglELoss and its ``pairwise_angle_sim`` (tested against them), which
follow the authors' code rather than their paper's equation 3 in the order of the subtraction.

``prediction`` is the siamese STS ``PairLogit``: the score (unused) beside u and v, (B, 2, d);
``labels`` are the 0..5 gold scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from optiminbert.losses.cosent import CoSENTLoss, siamese_sts
from optiminbert.multitask import PairLogit
from optiminbert.schema import Setting, positive


class AnglELoss(CoSENTLoss):
    name = "angle"
    settings = (
        Setting("angle_scale", 20.0, "AnglE: differences of the pairs' angle similarities times this, then log(1 + Σ exp)",
                check=positive, applies=siamese_sts, when=lambda v: v["sts_loss"] == "angle"),
    )

    @classmethod
    def from_settings(cls, settings) -> "AnglELoss":
        return cls(scale=settings["angle_scale"])

    def similarity(self, prediction: PairLogit) -> torch.Tensor:
        """s for each pair of the batch, (B,): the angle similarity of u and v."""
        pair = F.normalize(prediction.embeddings.float(), dim=-1)
        if pair.shape[-1] % 2:
            pair = F.pad(pair, (0, 1))
        a, b = pair[:, 0].chunk(2, dim=-1)  # u's real and imaginary parts
        c, d = pair[:, 1].chunk(2, dim=-1)  # v's
        return ((a * c + b * d) + (b * c - a * d)).sum(-1).abs()
