"""Training objectives, one per file, each with the same signature ``loss(prediction, labels)``
(sentence-transformers' ``losses/`` is the model). A task's loss is named by its kind for the
run's pair design (``kinds.py``); siamese STS's is chosen by ``sts_loss`` among the losses on the
same (pair, score) data (cosine similarity, CoSENT, AnglE); a contrastive loss (``contrastive``: mnrl, gist) trains the
sentence embeddings on positive pairs as an extra round-robin task of a siamese run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optiminbert.data import TASKS
from optiminbert.losses.angle import AnglELoss
from optiminbert.losses.base import Loss
from optiminbert.losses.binary_cross_entropy import BinaryCrossEntropyLoss
from optiminbert.losses.cosent import CoSENTLoss, siamese_sts
from optiminbert.losses.cosine_similarity import CosineSimilarityLoss
from optiminbert.losses.cross_entropy import CrossEntropyLoss
from optiminbert.losses.distillation import DistillationLoss
from optiminbert.losses.gist import GISTEmbedLoss
from optiminbert.losses.mnrl import MultipleNegativesRankingLoss
from optiminbert.losses.mse import MSELoss
from optiminbert.losses.online_contrastive import OnlineContrastiveLoss
from optiminbert.losses.siamese_paraphrase import SiameseParaphraseLoss
from optiminbert.schema import Setting, siamese

# The siamese STS losses ``sts_loss`` chooses among; the kind names the first (kinds.Regression).
STS_LOSSES: dict[str, type[Loss]] = {"cosine_similarity": CosineSimilarityLoss, "cosent": CoSENTLoss, "angle": AnglELoss}
LOSSES: dict[str, type[Loss]] = {
    "cross_entropy": CrossEntropyLoss,
    "binary_cross_entropy": BinaryCrossEntropyLoss,
    "siamese_paraphrase": SiameseParaphraseLoss,
    "mse": MSELoss,
    **STS_LOSSES,
}
CONTRASTIVE_LOSSES: dict[str, type[Loss]] = {"mnrl": MultipleNegativesRankingLoss, "gist": GISTEmbedLoss}

SETTINGS: tuple[Setting, ...] = (
    Setting("contrastive", "none", "an extra round-robin task on positive pairs with in-batch negatives (siamese phases)",
            choices=("none", *CONTRASTIVE_LOSSES), applies=siamese, top_level=False),
    Setting("sts_loss", "cosine_similarity", "the siamese STS loss: cosine_similarity (MSE on the cosine), or cosent or "
            "angle (rank the batch's pairs by their scores)", choices=tuple(STS_LOSSES), applies=siamese_sts, top_level=False),
    *(s for cls in (*LOSSES.values(), *CONTRASTIVE_LOSSES.values()) for s in cls.settings),
)


def task_loss(task: str, pairs: str, settings: Mapping[str, Any]) -> Loss:
    """The loss ``task`` trains with under the ``pairs`` design: its kind's, or the ``sts_loss``
    chosen where that is a siamese STS loss."""
    name = TASKS[task].kind.losses[pairs]
    if name in STS_LOSSES:
        name = settings["sts_loss"]
    return LOSSES[name].from_settings(settings)


def contrastive_loss(settings: Mapping[str, Any]) -> Loss:
    return CONTRASTIVE_LOSSES[settings["contrastive"]].from_settings(settings)


__all__ = ["LOSSES", "STS_LOSSES", "CONTRASTIVE_LOSSES", "SETTINGS", "Loss", "task_loss", "contrastive_loss", "OnlineContrastiveLoss",
           "DistillationLoss",
           *(cls.__name__ for cls in (*LOSSES.values(), *CONTRASTIVE_LOSSES.values()))]
