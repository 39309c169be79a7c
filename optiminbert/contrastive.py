"""Positive pairs for the contrastive losses (MNRL, GISTEmbed) and their batches.

The pairs come from the tasks' own training data: Quora duplicates, and STS pairs rated at
least ``sts_min`` (near-paraphrases). In-batch negatives are only negatives if no text occurs
twice in a batch, so batches are drawn without duplicate texts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from optiminbert.batching import TokenizedTexts, pad, sequential_batches
from optiminbert.model import BertModel
from optiminbert.multitask import CONTRASTIVE, mean_pool
from optiminbert.prepared import TaskSplit
from optiminbert.runtime import autocast

__all__ = ["CONTRASTIVE", "PositivePairs", "no_duplicate_batches"]


def no_duplicate_batches(keys: list[tuple[str, str]], batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled pass in batches where no text appears twice: a pair whose text is already in
    the batch being filled waits for a later batch (as sentence-transformers' NoDuplicatesBatchSampler)."""
    remaining = torch.randperm(len(keys), generator=generator).tolist()
    batches = []
    while remaining:
        batch, seen, deferred = [], set(), []
        for i in remaining:
            if len(batch) < batch_size and not seen.intersection(keys[i]):
                batch.append(i)
                seen.update(keys[i])
            else:
                deferred.append(i)
        batches.append(torch.tensor(batch))
        remaining = deferred
    return batches


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

    def shuffled_batches(self, batch_size: int, generator: torch.Generator, pairs: str = "siamese") -> list[torch.Tensor]:
        return no_duplicate_batches(self.keys, batch_size, generator)

    def batch(self, indices: torch.Tensor, pairs: str, max_length: int) -> dict[str, torch.Tensor]:
        rows = indices.tolist()
        batch = pad([self.columns[0][i] for i in rows] + [self.columns[1][i] for i in rows])
        batch["labels"] = self.labels[indices]
        return batch

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
