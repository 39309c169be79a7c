"""Batching helpers (batching.py): length-bucketed training batches and cutting a cross-encoded
pair to max_length."""

from __future__ import annotations

import pytest
import torch

from optiminbert.batching import join_pair, length_bucketed_batches

CLS, SEP = 2, 3  # their ids in the tiny vocabulary ([PAD] [UNK] [CLS] [SEP] [MASK] first)


def test_length_bucketed_batches_cover_every_index_once() -> None:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 50, (103,), generator=generator)
    batches = length_bucketed_batches(lengths, 8, generator, chunk_batches=3)
    assert sorted(torch.cat(batches).tolist()) == list(range(103))
    # Chunks of 24 examples: four full chunks of three batches of 8, then one batch of 7.
    assert sorted(len(b) for b in batches) == [7] + [8] * 12
    for batch in batches:  # sorted by length within its chunk
        assert lengths[batch].tolist() == sorted(lengths[batch].tolist())


def encoded(*body: int) -> list[int]:
    return [CLS, *body, SEP]


@pytest.mark.parametrize(
    "a, b, max_length, ids, segments",
    [
        # fits: nothing cut
        (encoded(10, 11), encoded(20), 32, [CLS, 10, 11, SEP, 20, SEP], [0, 0, 0, 0, 1, 1]),
        # 5 + 3 body tokens into 8 - 3: a is cut 5 -> 4 -> 3 -> 2 (ties cut a)
        (encoded(10, 11, 12, 13, 14), encoded(20, 21, 22), 8, [CLS, 10, 11, SEP, 20, 21, 22, SEP], [0] * 4 + [1] * 4),
        # b is the longer one: 1 + 6 into 3, b is cut to 2
        (encoded(10), encoded(20, 21, 22, 23, 24, 25), 6, [CLS, 10, SEP, 20, 21, SEP], [0, 0, 0, 1, 1, 1]),
    ],
)
def test_join_pair_cuts_longest_first(a, b, max_length, ids, segments) -> None:
    got_ids, got_segments = join_pair(a, b, max_length)
    assert (got_ids, got_segments) == (ids, segments)
    assert len(got_ids) <= max_length and got_ids[0] == CLS and got_ids[-1] == SEP and got_ids.count(SEP) == 2
