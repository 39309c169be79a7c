"""The task model: one shared BERT encoder and a small head per task.

Two pair designs, as in the report:
- ``cross``: a pair is one sequence, [CLS] a [SEP] b [SEP]; every head reads the pooled [CLS]
  (the baseline and the round-robin MTL phase).
- ``siamese``: the shared sentence-embedding layer (Reimers & Gurevych 2019). Each sentence gets
  an embedding u; STS predicts 5·cos(u, v), paraphrase classifies [u, v, |u−v|], sentiment
  classifies [pooled, u] (the "MTL with sentence embeddings" phase and the specialists).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from optiminbert.data import TASKS
from optiminbert.errors import UserError
from optiminbert.model import BertModel

STS_SCALE = 5.0  # STS gold scores run 0..5
# The alignment features are cosines within a few tenths of each other; scaled up, the head's
# weights for them reach a useful size within one short fine-tune at the head's learning rate.
ALIGNMENT_SCALE = 10.0
ALIGNMENT_FEATURES = 4
CONTRASTIVE = "contrastive"  # the round-robin task of positive pairs (contrastive.py), siamese only


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def token_alignment(hidden: torch.Tensor, sequence_ids: torch.Tensor) -> torch.Tensor:
    """How well each sentence's tokens are matched in the other, from side-by-side pairs.

    Every token of a gets the cosine of its best match among b's tokens, and the other way
    round; per pair that gives four features: the two sentences' mean best match averaged, the
    gap between those means, and the lower and the higher of the two sentences' worst-matched
    token. Pooled embeddings blur the one word two near-duplicate questions differ in ("learn
    Python" / "learn Java"); a token nothing in the other question matches keeps it visible.
    The two means are BERTScore's greedy-matching precision and recall (Zhang et al. 2020).
    [CLS] and [SEP], the first and last token of each sentence, are left out. Returns (B, 4).
    """
    prev = F.pad(sequence_ids[:, :-1], (1, 0))
    nxt = F.pad(sequence_ids[:, 1:], (0, 1))
    inner = (sequence_ids == prev) & (sequence_ids == nxt)
    a, b = inner & (sequence_ids == 1), inner & (sequence_ids == 2)
    h = F.normalize(hidden.float(), dim=-1)
    sim = h @ h.transpose(1, 2)
    lowest = torch.finfo(sim.dtype).min
    # clamp: a sentence with no inner tokens offers no match, the worst cosine rather than -inf
    best_a = sim.masked_fill(~b.unsqueeze(1), lowest).amax(2).clamp(min=-1.0)
    best_b = sim.masked_fill(~a.unsqueeze(1), lowest).amax(2).clamp(min=-1.0)

    def mean_and_worst(best: torch.Tensor, mine: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (best * mine).sum(1) / mine.sum(1).clamp(min=1)
        return mean, best.masked_fill(~mine, 1.0).amin(1)

    mean_a, worst_a = mean_and_worst(best_a, a)
    mean_b, worst_b = mean_and_worst(best_b, b)
    return torch.stack(
        [(mean_a + mean_b) / 2, (mean_a - mean_b).abs(), torch.minimum(worst_a, worst_b), torch.maximum(worst_a, worst_b)], -1
    )


class PairLogit(NamedTuple):
    """A siamese pair prediction: the paraphrase head's logit or the 0..5 STS score, and the
    sentence embeddings it was computed from, for a loss that reads them
    (``losses.SiameseParaphraseLoss``, ``losses.AnglELoss``)."""

    logit: torch.Tensor  # (B,): the paraphrase logit, or the STS score
    embeddings: torch.Tensor  # (B, 2, d): u beside v


class SentenceEmbedding(nn.Module):
    """A learned linear layer over mean-pooled tokens, shared by all tasks.

    Initialised to the identity so training starts from the checkpoint's own mean-pooled
    embedding (all-MiniLM-L6-v2 was trained for exactly that), not from a random projection.
    """

    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(width, width)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(width))
            self.linear.bias.zero_()

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.linear(mean_pool(hidden, mask))


class MultitaskBert(nn.Module):
    def __init__(
        self,
        encoder: BertModel,
        tasks: list[str],
        pairs: str = "cross",
        dropout: float = 0.3,
        pooling: str = "cls",
        token_alignment: bool = False,
    ):
        """``pooling`` is what the cross design's heads read: BERT's pooled [CLS] ("cls") or
        the mean of the token states ("mean", what sentence-embedding checkpoints were trained on).
        ``token_alignment``: the siamese paraphrase head also reads ``token_alignment``'s features
        (a cross-encoded pair's tokens already attend to each other, so the cross design ignores it)."""
        super().__init__()
        if pairs not in ("cross", "siamese"):
            raise UserError(f"pairs must be 'cross' or 'siamese', not {pairs!r}")
        if pooling not in ("cls", "mean"):
            raise UserError(f"pooling must be 'cls' or 'mean', not {pooling!r}")
        self.encoder = encoder
        self.tasks = list(tasks)
        self.pairs = pairs
        self.pooling = pooling
        self.token_alignment = token_alignment and pairs == "siamese"
        self.dropout = nn.Dropout(dropout)
        width = encoder.config.hidden_size
        self.embedding = SentenceEmbedding(width) if pairs == "siamese" else None
        self.heads = nn.ModuleDict()
        for task in self.tasks:
            spec = TASKS[task]
            if pairs == "cross":
                self.heads[task] = nn.Linear(width, spec.num_classes)
            elif spec.kind.name == "classification":
                self.heads[task] = nn.Linear(2 * width, spec.num_classes)
            elif spec.kind.name == "binary":
                self.heads[task] = nn.Linear(3 * width + ALIGNMENT_FEATURES * self.token_alignment, 1)
            # siamese STS is the scaled cosine itself: no parameters of its own

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> torch.Tensor | PairLogit:
        """Class logits (B, C) for sentiment; one logit (B,) for paraphrase and a 0..5 score (B,)
        for STS, siamese each a ``PairLogit`` beside u and v; the (B, 2, d) sentence embeddings of
        positive pairs for the contrastive task."""
        if "features" in batch:  # frozen encoder: features were computed once, up front
            return self.heads[task](self.dropout(batch["features"]))
        out = self.encoder(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"), batch.get("sequence_ids"))
        if self.pairs == "cross":
            logits = self.heads[task](self.dropout(self._pool(out, batch["attention_mask"])))
            return logits if TASKS[task].kind.name == "classification" else logits.squeeze(-1)
        if "sequence_ids" not in batch:  # single sentences
            u = self.embedding(out.last_hidden_state, batch["attention_mask"])
            return self.heads[task](self.dropout(torch.cat([out.pooler_output, u], dim=-1)))
        # Siamese pairs sit side by side in a row: u pools the first sentence's tokens, v the second's.
        u, v = (self.embedding(out.last_hidden_state, batch["sequence_ids"] == n) for n in (1, 2))
        if task == CONTRASTIVE:
            return torch.stack([u, v], dim=1)
        if TASKS[task].kind.name != "binary":
            return PairLogit(STS_SCALE * F.cosine_similarity(u, v, dim=-1), torch.stack([u, v], dim=1))
        # Stacked before the head reads u and v: autograd sums the three gradients each one gets
        # in an order that follows creation, and stacking afterwards changes their rounding, and
        # with it every committed Quora run.
        pair = torch.stack([u, v], dim=1)
        features = self.dropout(torch.cat([u, v, (u - v).abs()], dim=-1))
        if self.token_alignment:
            alignment = token_alignment(out.last_hidden_state, batch["sequence_ids"]).to(u.dtype)
            features = torch.cat([features, ALIGNMENT_SCALE * alignment], dim=-1)
        return PairLogit(self.heads[task](features).squeeze(-1), pair)

    def _pool(self, out, mask: torch.Tensor) -> torch.Tensor:
        return out.pooler_output if self.pooling == "cls" else mean_pool(out.last_hidden_state, mask)

    @torch.no_grad()
    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What a frozen-encoder head reads: the pooled representation of a single-sentence batch."""
        out = self.encoder(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        return self._pool(out, batch["attention_mask"])

    def shared_parameters(self) -> list[nn.Parameter]:
        shared = list(self.encoder.parameters())
        if self.embedding is not None:
            shared += list(self.embedding.parameters())
        return [p for p in shared if p.requires_grad]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return [p for p in self.heads[task].parameters() if p.requires_grad] if task in self.heads else []
