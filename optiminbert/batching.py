"""From tokenized examples to padded batches: dynamic padding, pair encoding, length buckets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

PAD_ID = 0


def pad(sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence of this batch (dynamic padding), with its mask."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq)
        mask[row, : len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def join_pair(a: Sequence[int], b: Sequence[int], max_length: int) -> tuple[list[int], list[int]]:
    """[CLS] a [SEP] + b [SEP] from two separately encoded sentences, cut longest-first.

    WordPiece splits words independently, so joining two encodings equals encoding the pair;
    this lets one cached tokenization serve both siamese and cross-encoded models.
    """
    head, body_a, sep = a[0], list(a[1:-1]), a[-1]
    body_b = list(b[1:-1])
    while len(body_a) + len(body_b) + 3 > max_length:
        (body_a if len(body_a) >= len(body_b) else body_b).pop()
    ids = [head, *body_a, sep, *body_b, sep]
    segments = [0] * (len(body_a) + 2) + [1] * (len(body_b) + 1)
    return ids, segments


def pad_pairs(pairs: Sequence[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    batch = pad([ids for ids, _ in pairs])
    segments = torch.zeros_like(batch["input_ids"])
    for row, (_, seg) in enumerate(pairs):
        segments[row, : len(seg)] = torch.as_tensor(seg)
    batch["token_type_ids"] = segments
    return batch


def pad_side_by_side(pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> dict[str, torch.Tensor]:
    """Siamese pairs, one row each: a then b, each keeping its own [CLS] ... [SEP], told apart
    by ``sequence_ids`` (1 for a, 2 for b, 0 for padding) so the encoder keeps them apart
    (``BertModel.forward``). A batch pads to its longest len(a) + len(b), as a cross-encoded
    one does; stacking a and b as two rows each padded to the longer of the two leaves far more
    of the slots padding, because the two sentences of a pair differ in length."""
    batch = pad([[*a, *b] for a, b in pairs])
    sequence_ids = batch["attention_mask"].clone()
    for row, (a, _) in enumerate(pairs):
        sequence_ids[row, len(a) :] *= 2
    batch["sequence_ids"] = sequence_ids
    return batch


@dataclass
class TokenizedTexts:
    """Token ids of one text column, stored flat with offsets (compact to cache and load)."""

    flat: torch.Tensor
    offsets: torch.Tensor

    @classmethod
    def from_lists(cls, sequences: Sequence[Sequence[int]]) -> "TokenizedTexts":
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
        offsets = torch.zeros(len(sequences) + 1, dtype=torch.long)
        offsets[1:] = lengths.cumsum(0)
        flat = torch.tensor([t for s in sequences for t in s], dtype=torch.int32)
        return cls(flat, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> list[int]:
        return self.flat[self.offsets[i] : self.offsets[i + 1]].tolist()

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def head(self, n: int) -> "TokenizedTexts":
        return TokenizedTexts(self.flat[: self.offsets[min(n, len(self))]], self.offsets[: n + 1])


def length_bucketed_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator, chunk_batches: int = 50
) -> list[torch.Tensor]:
    """Shuffled batches of similar lengths: shuffle, sort within chunks of ``chunk_batches``
    batches, cut, then shuffle the batch order, so padding stays small but order stays random."""
    order = torch.randperm(len(lengths), generator=generator)
    batches = []
    for chunk in order.split(batch_size * chunk_batches):
        batches.extend(by_length(chunk, lengths).split(batch_size))
    return in_random_order(batches, generator)


def by_length(indices: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``indices`` sorted by their ``lengths``, ties in their given (shuffled) order."""
    return indices[torch.argsort(lengths[indices], stable=True)]


def in_random_order(batches: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """Batches cut from length-sorted chunks, shuffled so that a pass does not run short to long."""
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def sequential_batches(lengths: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Evaluation order: sorted by length for little padding (callers scatter results back)."""
    yield from torch.argsort(lengths, stable=True).split(batch_size)
