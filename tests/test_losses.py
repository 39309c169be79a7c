"""The contrastive losses on hand-computable cases, their batches, and a tiny run with each."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from optiminbert.contrastive import CONTRASTIVE, PositivePairs, no_duplicate_batches
from optiminbert.errors import UserError
from optiminbert.losses import (
    GISTEmbedLoss,
    MultipleNegativesRankingLoss,
    OnlineContrastiveLoss,
    SiameseParaphraseLoss,
    contrastive_loss,
    loss_for,
)
from optiminbert.multitask import PairLogit
from optiminbert.phases import STUDY_TASKS, positive_pairs, train_run
from optiminbert.prepared import TaskSplit, split_path

# Three pairs of 2-d embeddings at known angles, so every cosine is written down by hand.
ANCHORS = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
POSITIVES = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
R = 1 / math.sqrt(2)
COSINES = torch.tensor(  # cos(anchor i, positive j)
    [
        [1.0, R, 0.0],
        [0.0, R, -1.0],
        [R, 1.0, -R],
    ]
)


def test_mnrl_is_cross_entropy_over_the_scaled_cosine_matrix():
    prediction = torch.stack([ANCHORS, POSITIVES], dim=1)
    loss = MultipleNegativesRankingLoss(scale=20.0)(prediction, None)
    expected = -sum(torch.log_softmax(20.0 * COSINES[i], 0)[i] for i in range(3)) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gist_masks_exactly_the_candidates_the_guide_rates_too_similar():
    guide_a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.8, 0.6]])
    guide_p = torch.tensor([[0.6, 0.8, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    # The guide's similarity of each anchor to its own positive (the threshold): 0.6, 0.8, 0.6.
    # Every candidate at or above its row's threshold is masked (ties count), worked out by hand:
    #   row 0: a0·p1 = 0.6;            p0·p1 = 1.0
    #   row 1: a1·p0 = 0.8; a1·a2 = 0.8; p1·p0 = 1.0
    #   row 2: a2·p0 = a2·p1 = 0.64; a2·a1 = 0.8
    # and the self-similarities (anchor-anchor and positive-positive diagonals) always.
    #                   a·p      a·a      p·p
    masked = torch.tensor(
        [
            [0, 1, 0, 1, 0, 0, 1, 1, 0],
            [1, 0, 0, 0, 1, 1, 1, 1, 0],
            [1, 1, 0, 0, 1, 1, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    prediction = torch.stack([ANCHORS, POSITIVES], dim=1)
    labels = torch.stack([guide_a, guide_p], dim=1)
    loss = GISTEmbedLoss(temperature=0.05, margin=0.0)(prediction, labels)

    a, p = F.normalize(ANCHORS, dim=-1), F.normalize(POSITIVES, dim=-1)
    scores = torch.cat([a @ p.T, a @ a.T, p @ p.T], dim=1) / 0.05
    expected = F.cross_entropy(scores.masked_fill(masked, float("-inf")), torch.arange(3))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # A margin of 0.3 lowers the thresholds to 0.3, 0.5, 0.3; every unmasked guide similarity
    # above is 0, so the mask, and the loss, stay the same.
    assert GISTEmbedLoss(temperature=0.05, margin=0.3)(prediction, labels).item() == pytest.approx(expected.item(), rel=1e-5)


def test_gist_with_a_guide_that_masks_nothing_is_mnrl_with_extra_candidates():
    guide = torch.eye(3)  # orthogonal texts: every candidate is less similar than ... nothing masked
    labels = torch.stack([guide, guide], dim=1)  # anchor == positive for the guide: sim 1 each
    prediction = torch.stack([ANCHORS, POSITIVES], dim=1)
    loss = GISTEmbedLoss(temperature=1 / 20, margin=0.0)(prediction, labels)
    a, p = F.normalize(ANCHORS, dim=-1), F.normalize(POSITIVES, dim=-1)
    eye = torch.eye(3, dtype=torch.bool)
    scores = torch.cat([a @ p.T, (a @ a.T).masked_fill(eye, -math.inf), (p @ p.T).masked_fill(eye, -math.inf)], 1) * 20
    assert loss.item() == pytest.approx(F.cross_entropy(scores, torch.arange(3)).item(), rel=1e-5)


# Four labelled pairs at cosine distances worked out by hand: 1 (orthogonal), 0 (the same
# direction), 1 - 1/sqrt(2) (45 degrees) and 2 (opposite).
PAIRS = torch.tensor(
    [
        [[1.0, 0.0], [0.0, 3.0]],
        [[2.0, 0.0], [1.0, 0.0]],
        [[1.0, 0.0], [1.0, 1.0]],
        [[1.0, 0.0], [-1.0, 0.0]],
    ]
)
DISTANCES = [1.0, 0.0, 1 - R, 2.0]


def test_online_contrastive_counts_only_the_hard_pairs():
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # The closest non-paraphrase is at 1 - R, the farthest paraphrase at 1: the hard pairs are
    # paraphrase 0 (1 > 1 - R) and non-paraphrase 2 (1 - R < 1); pair 1 is already together
    # and pair 3 already beyond the margin.
    expected = DISTANCES[0] ** 2 + (0.5 - DISTANCES[2]) ** 2
    assert OnlineContrastiveLoss(margin=0.5)(PAIRS, labels).item() == pytest.approx(expected, rel=1e-5)
    # A margin of 0.2 < 1 - R: the hard non-paraphrase is already beyond it.
    assert OnlineContrastiveLoss(margin=0.2)(PAIRS, labels).item() == pytest.approx(DISTANCES[0] ** 2, rel=1e-5)


def test_online_contrastive_counts_every_pair_when_the_batch_has_one_class():
    paraphrases = OnlineContrastiveLoss(margin=0.5)(PAIRS, torch.ones(4))
    assert paraphrases.item() == pytest.approx(sum(d**2 for d in DISTANCES), rel=1e-5)
    others = OnlineContrastiveLoss(margin=0.5)(PAIRS, torch.zeros(4))
    assert others.item() == pytest.approx(sum(max(0.0, 0.5 - d) ** 2 for d in DISTANCES), rel=1e-5)


def test_siamese_paraphrase_loss_is_bce_plus_the_weighted_online_contrastive_term():
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    prediction = PairLogit(torch.tensor([2.0, -1.0, 0.5, -3.0]), PAIRS)
    bce = F.binary_cross_entropy_with_logits(prediction.logit, labels)
    contrastive = OnlineContrastiveLoss(margin=0.5)(PAIRS, labels)
    assert SiameseParaphraseLoss(weight=0.0)(prediction, labels).item() == pytest.approx(bce.item(), rel=1e-6)
    combined = SiameseParaphraseLoss(weight=0.1, margin=0.5)(prediction, labels)
    assert combined.item() == pytest.approx((bce + 0.1 * contrastive).item(), rel=1e-6)
    assert isinstance(loss_for("binary", "siamese", 0.1), SiameseParaphraseLoss)
    assert not isinstance(loss_for("binary", "cross", 0.1), SiameseParaphraseLoss)  # no embeddings to shape


def test_a_siamese_run_adds_the_online_contrastive_term_from_its_params(tmp_path, tiny_prepared, tiny_params, one_thread):
    """One step from the same weights on the same batch: the logged loss is the BCE alone,
    then the BCE plus the (positive) online contrastive term."""
    runs = {
        weight: train_run({**tiny_params, "epochs": 1, "steps_per_epoch": 1, "online_contrastive": weight},
                          ["quora"], "siamese", tiny_prepared, tmp_path / str(weight), "run")
        for weight in (0.0, 1.0)
    }
    assert runs[1.0][0]["train_loss"]["quora"] > runs[0.0][0]["train_loss"]["quora"]


def test_unknown_contrastive_loss_is_named():
    with pytest.raises(Exception, match="unknown contrastive loss 'triplet'"):
        contrastive_loss("triplet", {"mnrl_scale": 20.0, "gist_temperature": 0.01})


def test_loss_params_out_of_range_are_named():
    # A negative weight made the paraphrase loss negative; a zero temperature divided by zero.
    cases = [
        (lambda: loss_for("binary", "siamese", -0.1), "param online_contrastive must be >= 0, got -0.1"),
        (lambda: loss_for("binary", "siamese", 0.1, -0.5), "param online_contrastive_margin must be >= 0"),
        (lambda: contrastive_loss("mnrl", {"mnrl_scale": 0, "gist_temperature": 0.01}), "param mnrl_scale must be positive"),
        (lambda: contrastive_loss("gist", {"mnrl_scale": 20.0, "gist_temperature": 0}), "param gist_temperature must be positive"),
        (lambda: positive_pairs({"contrastive_sts_min": 10}, "siamese", {}, None, None, None), "contrastive_sts_min must be within"),
    ]
    for make, message in cases:
        with pytest.raises(UserError, match=message):
            make()
    assert isinstance(loss_for("binary", "siamese", 0.0, 0.0), SiameseParaphraseLoss)


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


@pytest.mark.parametrize("loss", ["mnrl", "gist"])
def test_a_joint_run_trains_the_contrastive_task_beside_the_others(tmp_path, tiny_prepared, tiny_params, one_thread, loss):
    p = {**tiny_params, "epochs": 1, "steps_per_epoch": 3, "contrastive": loss, "guide": tiny_params["checkpoint"]}
    history = train_run(p, list(STUDY_TASKS), "siamese", tiny_prepared, tmp_path / "run", "run")
    assert set(history[0]["train_loss"]) == {*STUDY_TASKS, CONTRASTIVE}
    assert math.isfinite(history[0]["train_loss"][CONTRASTIVE]) and history[0]["train_loss"][CONTRASTIVE] > 0


def test_contrastive_losses_need_sentence_embeddings(tmp_path, tiny_prepared, tiny_params, one_thread):
    p = {**tiny_params, "epochs": 1, "steps_per_epoch": 2, "contrastive": "mnrl"}
    with pytest.raises(Exception, match="contrastive losses train sentence embeddings"):
        train_run(p, list(STUDY_TASKS), "cross", tiny_prepared, tmp_path / "run", "run")
