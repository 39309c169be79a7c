"""Positive pairs for the contrastive losses (MNRL, GISTEmbed) and their batches.

The pairs come from the tasks' own training data: Quora duplicates, and STS pairs rated at
least ``sts_min`` (near-paraphrases). In-batch negatives are only negatives if no text occurs
twice in a batch, so batches are drawn without duplicate texts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from optiminbert.batching import TokenizedTexts, by_length, in_random_order, pad, sequential_batches
from optiminbert.errors import UserError
from optiminbert.model import BertModel
from optiminbert.multitask import CONTRASTIVE, STS_SCALE, mean_pool
from optiminbert.prepared import TaskSplit
from optiminbert.runtime import Runtime, autocast
from optiminbert.schema import Setting, siamese, within

__all__ = ["CONTRASTIVE", "PositivePairs", "no_duplicate_batches", "positive_pairs", "SETTINGS"]

SETTINGS = (
    Setting("contrastive_sts_min", 4.0, "contrastive task: STS pairs scored at least this count as positives",
            check=within(0, STS_SCALE, high_open=False, note=", STS's scale"), applies=siamese,
            when=lambda values: values["contrastive"] != "none"),
)


def no_duplicate_batches(
    keys: list[tuple[str, str]], lengths: torch.Tensor, batch_size: int, generator: torch.Generator, chunk_batches: int = 50
) -> list[torch.Tensor]:
    """A shuffled pass in batches where no text appears twice, length-bucketed like every other
    training batch (see ``length_bucketed_batches``): shuffle, sort within chunks of
    ``chunk_batches`` batches by ``lengths`` (the tokens of a pair's row), fill batches in that order,
    then shuffle the batch order. A pair whose text is already in the batch being filled waits
    for a later one (as sentence-transformers' NoDuplicatesBatchSampler); a chunk's pairs that
    cannot fill a whole batch join the next chunk, so only the last batch of the pass is short
    (and the padding stays as low as other batches': docs/performance.md)."""
    order = torch.randperm(len(keys), generator=generator)
    batches, carried = [], torch.empty(0, dtype=torch.long)
    chunks = order.split(batch_size * chunk_batches)
    for number, chunk in enumerate(chunks, 1):
        chunk = torch.cat([carried, chunk])
        remaining = by_length(chunk, lengths).tolist()
        while remaining:
            batch, seen, deferred = [], set(), []
            for i in remaining:
                if len(batch) < batch_size and not seen.intersection(keys[i]):
                    batch.append(i)
                    seen.update(keys[i])
                else:
                    deferred.append(i)
            if len(batch) < batch_size and number < len(chunks):
                break  # these pairs join the next chunk
            batches.append(torch.tensor(batch))
            remaining = deferred
        carried = torch.tensor(remaining, dtype=torch.long)
    return in_random_order(batches, generator)


@dataclass
class PositivePairs:
    """Anchor/positive token ids; ``labels`` holds the guide's embeddings (GISTEmbed) or zeros."""

    keys: list[tuple[str, str]]
    columns: list[TokenizedTexts]
    labels: torch.Tensor

    @classmethod
    def from_splits(cls, splits: dict[str, TaskSplit], sts_min: float) -> "PositivePairs | None":
        """Quora duplicates and STS pairs scored >= ``sts_min``; None if no split gives any."""
        keys, firsts, seconds = [], [], []
        for task, split in splits.items():
            keep = split.labels >= (sts_min if task == "sts" else 0.5)
            for i in keep.nonzero().flatten().tolist():
                keys.append(tuple(t.lower() for t in split.texts[i]))
                firsts.append(split.columns[0][i])
                seconds.append(split.columns[1][i])
        if not keys:
            return None
        columns = [TokenizedTexts.from_lists(firsts), TokenizedTexts.from_lists(seconds)]
        return cls(keys, columns, torch.zeros(len(keys)))

    def __len__(self) -> int:
        return len(self.keys)

    def shuffled_batches(self, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
        return no_duplicate_batches(self.keys, self.lengths, batch_size, generator)

    # Batched as a task split's siamese pairs are: both texts side by side in one row.
    is_pair = True
    lengths = TaskSplit.lengths
    batch = TaskSplit.batch

    @torch.inference_mode()
    def add_guide(self, guide: BertModel, runtime, batch_size: int) -> None:
        """Embed every text once with the frozen guide (mean pooling) as GISTEmbed's labels."""
        guide.to(runtime.device).eval()
        embedded = []
        for column in self.columns:
            out = torch.empty(len(self), guide.config.hidden_size)
            for indices in sequential_batches(column.lengths, batch_size):
                batch = runtime.to_device(pad([column[i] for i in indices.tolist()]))
                with autocast(runtime.device, runtime.dtype):
                    hidden = guide(batch["input_ids"], batch["attention_mask"]).last_hidden_state
                out[indices] = mean_pool(hidden, batch["attention_mask"]).float().cpu()
            embedded.append(out)
        self.labels = torch.stack(embedded, dim=1)


def positive_pairs(settings: Mapping[str, Any], train: dict[str, TaskSplit], vocab_size: int, runtime: Runtime) -> PositivePairs | None:
    """The contrastive task's data from a run's own pair tasks (None if it has none), with the
    guide's embeddings for GISTEmbed."""
    positives = PositivePairs.from_splits({t: s for t, s in train.items() if t in ("quora", "sts")}, settings["contrastive_sts_min"])
    if positives is not None and settings["contrastive"] == "gist":
        guide = BertModel.from_pretrained(settings["guide"])
        if guide.config.vocab_size != vocab_size:
            raise UserError(f"guide {settings['guide']!r} must share the trained checkpoint's vocabulary (its token ids are reused)")
        positives.add_guide(guide, runtime, settings["eval_batch_size"])
    return positives
