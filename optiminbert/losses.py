"""Training objectives, one class each with the same signature: ``loss(prediction, labels)``,
where ``prediction`` is what ``MultitaskBert.forward`` returns for the task.

The contrastive losses train the sentence embeddings on positive pairs (paraphrases, very
similar STS pairs): their ``prediction`` is (B, 2, d), each anchor's embedding beside its
positive's, and every other positive in the batch serves as a negative."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optiminbert.errors import UserError
from optiminbert.multitask import STS_SCALE, PairLogit


class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy over class logits (sentiment)."""

    def forward(self, prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(prediction.float(), labels.long())


class BinaryCrossEntropyLoss(nn.Module):
    """Binary cross-entropy on one logit (paraphrase)."""

    def forward(self, prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(prediction.float(), labels.float())


class OnlineContrastiveLoss(nn.Module):
    """Hadsell, Chopra & LeCun 2006, "Dimensionality Reduction by Learning an Invariant
    Mapping": labelled pairs at cosine distance 1 − cos(u, v); paraphrases are pulled together
    (their squared distance) and other pairs pushed beyond ``margin`` (the squared shortfall).
    Online, as sentence-transformers' loss of that name: only the batch's hard pairs count,
    paraphrases farther apart than the closest non-paraphrase and non-paraphrases closer than
    the farthest paraphrase (every pair of a class when the batch has none of the other). Summed
    over them, not averaged, as in sentence-transformers. ``prediction`` is (B, 2, d), u beside v;
    ``labels`` are 1 for paraphrases, 0 otherwise."""

    def __init__(self, margin: float = 0.5):
        super().__init__()
        self.margin = margin

    def forward(self, prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        u, v = prediction.float().unbind(1)
        distance = 1 - F.cosine_similarity(u, v, dim=-1)
        same = labels > 0.5
        positive, negative = distance[same], distance[~same]
        closest_negative = negative.min() if len(negative) else distance.new_tensor(float("-inf"))
        farthest_positive = positive.max() if len(positive) else distance.new_tensor(float("inf"))
        hard_positive = positive[positive > closest_negative]
        hard_negative = negative[negative < farthest_positive]
        return hard_positive.pow(2).sum() + F.relu(self.margin - hard_negative).pow(2).sum()


class SiameseParaphraseLoss(BinaryCrossEntropyLoss):
    """Binary cross-entropy on the paraphrase head's logit, plus ``weight`` times
    ``OnlineContrastiveLoss`` on the sentence embeddings the head read: the embeddings are
    shaped for the decision directly, at no extra encoder pass. ``prediction`` is a
    ``PairLogit``."""

    def __init__(self, weight: float = 0.0, margin: float = 0.5):
        super().__init__()
        self.weight = weight
        self.contrastive = OnlineContrastiveLoss(margin)

    def forward(self, prediction: PairLogit, labels: torch.Tensor) -> torch.Tensor:
        loss = super().forward(prediction.logit, labels)
        if self.weight:
            loss = loss + self.weight * self.contrastive(prediction.embeddings, labels)
        return loss


class MSELoss(nn.Module):
    """Mean squared error of a regressed 0..5 similarity (STS, cross-encoded), measured on the
    0..1 scale: on the raw scale it is 25 times larger, and in a summed multitask loss (with
    gradient clipping) it drowned the sentiment and paraphrase gradients."""

    def forward(self, prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(prediction.float() / STS_SCALE, labels.float() / STS_SCALE)


class CosineSimilarityLoss(MSELoss):
    """Reimers & Gurevych 2019 (Sentence-BERT): MSE between cos(u, v) and the gold similarity
    scaled to [0, 1]. The prediction arrives as 5·cos(u, v), so this is MSELoss's arithmetic."""


class MultipleNegativesRankingLoss(nn.Module):
    """Henderson et al. 2017, "Efficient Natural Language Response Suggestion for Smart Reply":
    cross-entropy of each anchor against all in-batch positives, scored by ``scale`` times the
    cosine similarity, with its own positive (the diagonal) as the target. ``labels`` are unused."""

    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.scale = scale

    def forward(self, prediction: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        anchors, positives = F.normalize(prediction.float(), dim=-1).unbind(1)
        scores = self.scale * anchors @ positives.T
        return F.cross_entropy(scores, torch.arange(len(scores), device=scores.device))


class GISTEmbedLoss(nn.Module):
    """Solatorio 2024, "GISTEmbed: Guided In-sample Selection of Training Negatives": like
    MNRL, with anchor-positive, anchor-anchor and positive-positive candidates, but a frozen
    guide model vets the negatives: a candidate the guide rates at least as similar to the
    anchor as the anchor's own positive, minus ``margin``, is likely a false negative (a second
    paraphrase in the batch) and is masked out. Similarities are divided by ``temperature``.

    ``labels`` are the guide's embeddings of the same pairs, (B, 2, g), computed once up front
    (the guide is frozen, so they never change)."""

    def __init__(self, temperature: float = 0.01, margin: float = 0.0):
        super().__init__()
        self.temperature = temperature
        self.margin = margin

    def forward(self, prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        anchors, positives = F.normalize(prediction.float(), dim=-1).unbind(1)
        guide_a, guide_p = F.normalize(labels.float(), dim=-1).unbind(1)
        threshold = (guide_a * guide_p).sum(-1, keepdim=True) - self.margin  # guide's sim to the true positive
        eye = torch.eye(len(anchors), dtype=torch.bool, device=anchors.device)
        blocks = []
        for model_sim, guide_sim, keep_diagonal in (
            (anchors @ positives.T, guide_a @ guide_p.T, True),  # the diagonal is the positive itself
            (anchors @ anchors.T, guide_a @ guide_a.T, False),  # the diagonal is the anchor itself
            (positives @ positives.T, guide_p @ guide_p.T, False),
        ):
            masked = (guide_sim >= threshold) & ~eye if keep_diagonal else (guide_sim >= threshold) | eye
            blocks.append((model_sim / self.temperature).masked_fill(masked, float("-inf")))
        scores = torch.cat(blocks, dim=1)
        return F.cross_entropy(scores, torch.arange(len(scores), device=scores.device))


CONTRASTIVE_LOSSES = ("none", "mnrl", "gist")


def contrastive_loss(name: str, p: dict) -> nn.Module:
    for key in ("mnrl_scale", "gist_temperature"):
        if not p[key] > 0:
            raise UserError(f"param {key} must be positive, got {p[key]!r}")
    if name == "mnrl":
        return MultipleNegativesRankingLoss(scale=p["mnrl_scale"])
    if name == "gist":
        return GISTEmbedLoss(temperature=p["gist_temperature"], margin=p["gist_margin"])
    raise UserError(f"unknown contrastive loss {name!r}: choose one of {', '.join(CONTRASTIVE_LOSSES)}")


def loss_for(task_kind: str, pairs: str, online_contrastive: float = 0.0, margin: float = 0.5) -> nn.Module:
    """The task's loss; the siamese paraphrase loss adds ``online_contrastive`` times
    ``OnlineContrastiveLoss(margin)``."""
    for key, value in (("online_contrastive", online_contrastive), ("online_contrastive_margin", margin)):
        if value < 0:
            raise UserError(f"param {key} must be >= 0, got {value!r}")
    if task_kind == "classification":
        return CrossEntropyLoss()
    if task_kind == "binary":
        return SiameseParaphraseLoss(online_contrastive, margin) if pairs == "siamese" else BinaryCrossEntropyLoss()
    return CosineSimilarityLoss() if pairs == "siamese" else MSELoss()
