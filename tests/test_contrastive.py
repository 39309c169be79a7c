"""The contrastive task (contrastive.py): positive pairs from the run's own pair tasks, batches
without a repeated text, the guide's embeddings for GISTEmbed, and a joint run that trains it."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import train_tiny

from optiminbert.contrastive import (
    CONTRASTIVE,
    PositivePairs,
    no_duplicate_batches,
    positive_pairs,
)
from optiminbert.errors import UserError
from optiminbert.phases import STUDY_TASKS
from optiminbert.prepared import TaskSplit, split_path
from optiminbert.runtime import Runtime

CPU = Runtime(torch.device("cpu"), None)

@pytest.mark.parametrize("chunk_batches", [1, 50])
def test_no_duplicate_batches_cover_every_pair_once_without_repeated_texts(chunk_batches):
    keys = [("a", "b"), ("a", "c"), ("d", "e"), ("b", "f"), ("g", "h"), ("i", "a"), ("j", "k")]
    lengths = torch.tensor([5, 9, 2, 7, 3, 8, 4])
    batches = no_duplicate_batches(keys, lengths, 3, torch.Generator().manual_seed(0), chunk_batches)
    assert sorted(i for b in batches for i in b.tolist()) == list(range(len(keys)))
    for batch in batches:
        texts = [t for i in batch.tolist() for t in keys[i]]
        assert len(texts) == len(set(texts)) and len(batch) <= 3


def test_no_duplicate_batches_group_similar_lengths():
    keys = [(f"a{i}", f"b{i}") for i in range(40)]
    lengths = torch.randperm(40, generator=torch.Generator().manual_seed(1)) + 3
    batches = no_duplicate_batches(keys, lengths, 8, torch.Generator().manual_seed(0))
    spans = sorted((lengths[b].min().item(), lengths[b].max().item()) for b in batches)
    # One chunk, no duplicates: the batches are consecutive runs of the sorted lengths.
    assert spans == [(3 + 8 * k, 10 + 8 * k) for k in range(5)]


@pytest.mark.parametrize("seed", [0, 2])
def test_pairs_left_at_a_chunks_end_join_the_next_chunk(seed):
    # Chunks of two pairs, and these seeds' shuffles put both "x" pairs in the first chunk: it
    # cannot fill a batch, so it hands them on instead of ending in two half batches.
    keys = [("x", "a"), ("x", "b"), ("c", "d"), ("e", "f")]
    assert set(torch.randperm(4, generator=torch.Generator().manual_seed(seed))[:2].tolist()) == {0, 1}
    batches = no_duplicate_batches(keys, torch.ones(4, dtype=torch.long), 2, torch.Generator().manual_seed(seed), 1)
    assert [len(b) for b in batches] == [2, 2]


def test_positive_pairs_are_duplicates_and_very_similar_sts_pairs(tiny_prepared):
    splits = {t: TaskSplit.load(split_path(tiny_prepared, t, "train")) for t in ("quora", "sts")}
    pairs = PositivePairs.from_splits(splits, sts_min=4.0)
    expected = int((splits["quora"].labels == 1).sum() + (splits["sts"].labels >= 4.0).sum())
    assert len(pairs) == expected > 0
    batch = pairs.batch(torch.tensor([0, 1]), "siamese", 32)
    # Each anchor beside its positive in one row: one forward pass for both.
    assert batch["input_ids"].shape[0] == 2
    assert (batch["sequence_ids"] == 1).sum(1).tolist() == [len(pairs.columns[0][i]) for i in (0, 1)]
    assert (batch["sequence_ids"] == 2).sum(1).tolist() == [len(pairs.columns[1][i]) for i in (0, 1)]


def train_splits(prepared, tasks) -> dict[str, TaskSplit]:
    return {t: TaskSplit.load(split_path(prepared, t, "train")) for t in tasks}


def test_positive_pairs_come_with_the_guides_embeddings_for_gist_only(tiny_prepared, tiny_params, tiny_checkpoint, one_thread):
    train = train_splits(tiny_prepared, ("sst", "quora", "sts"))
    vocab = len((tiny_checkpoint / "vocab.txt").read_text().splitlines())
    mnrl = positive_pairs(tiny_params.replace(contrastive="mnrl"), train, vocab, CPU)
    assert len(mnrl) > 0 and not mnrl.labels.any()  # MNRL needs no labels
    gist = positive_pairs(tiny_params.replace(contrastive="gist", guide=str(tiny_checkpoint)), train, vocab, CPU)
    assert gist.keys == mnrl.keys and gist.labels.shape == (len(gist), 2, 32)  # the tiny guide's width
    assert gist.labels.abs().sum(-1).min() > 0  # every text embedded
    # A stricter STS threshold keeps fewer pairs (Quora duplicates stay).
    assert len(positive_pairs(tiny_params.replace(contrastive="mnrl", contrastive_sts_min=5.0), train, vocab, CPU)) < len(mnrl)
    assert positive_pairs(tiny_params.replace(contrastive="mnrl"), {"sst": train["sst"]}, vocab, CPU) is None  # no pairs
    with pytest.raises(UserError, match="must share the trained checkpoint's vocabulary"):
        positive_pairs(tiny_params.replace(contrastive="gist", guide=str(tiny_checkpoint)), train, vocab + 1, CPU)


def test_contrastive_sts_min_must_lie_on_the_sts_scale(tiny_params):
    with pytest.raises(UserError, match=r"^param contrastive_sts_min must be in \[0, 5\], STS's scale, got 10$"):
        tiny_params.replace(contrastive_sts_min=10)


@pytest.mark.parametrize("loss", ["mnrl", "gist"])
def test_a_joint_run_trains_the_contrastive_task_beside_the_others(tmp_path, tiny_prepared, tiny_params, one_thread, loss):
    settings = tiny_params.replace(epochs=1, steps_per_epoch=3, contrastive=loss, guide=tiny_params.checkpoint)
    history = train_tiny(settings, STUDY_TASKS, "siamese", tiny_prepared, tmp_path / "run")
    assert set(history[0]["train_loss"]) == {*STUDY_TASKS, CONTRASTIVE}
    assert math.isfinite(history[0]["train_loss"][CONTRASTIVE]) and history[0]["train_loss"][CONTRASTIVE] > 0
