"""Hadsell, Chopra & LeCun 2006, "Dimensionality Reduction by Learning an Invariant Mapping".

Labelled pairs at cosine distance 1 − cos(u, v); paraphrases are pulled together (their squared
distance) and other pairs pushed beyond ``margin`` (the squared shortfall). Online, as
sentence-transformers' loss of that name: only the batch's hard pairs count, paraphrases farther
apart than the closest non-paraphrase and non-paraphrases closer than the farthest paraphrase
(every pair of a class when the batch has none of the other). Summed over them, not averaged,
as in sentence-transformers (tested against it), which differs in two cases: in a batch of one
class it counts only the pairs beyond that class's mean distance, and it ignores a label other
than 0 or 1 (here a paraphrase when above 0.5). ``prediction`` is (B, 2, d), u beside v;
``labels`` are 1 for paraphrases, 0 otherwise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from optiminbert.losses.base import Loss


class OnlineContrastiveLoss(Loss):
    in_batch = True
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
