"""The losses (losses/), each on hand-computable cases; the task's loss for each pair design,
and each loss's hyperparameters read from the run's settings and checked by the schema."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import train_tiny

from optiminbert.errors import UserError
from optiminbert.losses import (
    CONTRASTIVE_LOSSES,
    LOSSES,
    STS_LOSSES,
    AnglELoss,
    BinaryCrossEntropyLoss,
    CoSENTLoss,
    CosineSimilarityLoss,
    CrossEntropyLoss,
    GISTEmbedLoss,
    MSELoss,
    MultipleNegativesRankingLoss,
    OnlineContrastiveLoss,
    SiameseParaphraseLoss,
    contrastive_loss,
    task_loss,
)
from optiminbert.multitask import PairLogit
from optiminbert.rundir import RunDir

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


# PAIRS as a siamese STS prediction: 5·cos(u, v) beside u and v. Their cosines, by hand: 0, 1, R, -1.
STS_PREDICTION = PairLogit(5 * torch.tensor([0.0, 1.0, R, -1.0]), PAIRS)


def test_cosent_sums_every_pair_of_pairs_the_gold_scores_rank_by_hand():
    # Gold order 3 < 0 < 2 < 1, which the cosines -1 < 0 < R < 1 keep: each term s_i - s_j < 0.
    labels = torch.tensor([2.0, 5.0, 3.0, 0.0])
    below = [(3, 0), (3, 2), (3, 1), (0, 2), (0, 1), (2, 1)]  # (i, j) with y_i < y_j
    s = [0.0, 1.0, R, -1.0]
    for scale in (1.0, 20.0):
        expected = math.log(1 + sum(math.exp(scale * (s[i] - s[j])) for i, j in below))
        assert CoSENTLoss(scale)(STS_PREDICTION, labels).item() == pytest.approx(expected, rel=1e-5)
    # Equal scores are never compared: nothing to rank leaves log(1 + 0).
    assert CoSENTLoss(20.0)(STS_PREDICTION, torch.full((4,), 3.0)).item() == 0.0
    # The score alone, without the embeddings, gives the same loss.
    assert CoSENTLoss(20.0)(STS_PREDICTION.logit, labels).item() == pytest.approx(CoSENTLoss(20.0)(STS_PREDICTION, labels).item())


def test_angle_similarity_of_pairs_worked_out_by_hand():
    # 2-d embeddings are one complex number each, (x, y) -> x + iy; s = |cos + (b·c - a·d) / (|u| |v|)|:
    #   1 vs 3i: cos 0, sine term -3/3           -> 1 (a right angle, which the cosine calls unrelated)
    #   2 vs 1: cos 1, no sine term              -> 1
    #   1 vs 1 + i: cos R, sine term -1/sqrt(2)  -> 0
    #   1 vs -1: cos -1, no sine term            -> 1
    torch.testing.assert_close(AnglELoss().similarity(STS_PREDICTION), torch.tensor([1.0, 1.0, 0.0, 1.0]))
    labels = torch.tensor([2.0, 5.0, 3.0, 0.0])
    s = [1.0, 1.0, 0.0, 1.0]
    below = [(3, 0), (3, 2), (3, 1), (0, 2), (0, 1), (2, 1)]
    expected = math.log(1 + sum(math.exp(2.0 * (s[i] - s[j])) for i, j in below))
    assert AnglELoss(2.0)(STS_PREDICTION, labels).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "task, pairs, loss",
    [
        ("sst", "cross", CrossEntropyLoss),
        ("sst", "siamese", CrossEntropyLoss),
        ("quora", "cross", BinaryCrossEntropyLoss),  # no embeddings to shape: BCE alone
        ("quora", "siamese", SiameseParaphraseLoss),
        ("sts", "cross", MSELoss),
        ("sts", "siamese", CosineSimilarityLoss),
    ],
)
def test_each_task_trains_with_its_kinds_loss_for_the_pair_design(tiny_params, task, pairs, loss):
    assert type(task_loss(task, pairs, tiny_params)) is loss


@pytest.mark.parametrize("choice, loss", [("cosine_similarity", CosineSimilarityLoss), ("cosent", CoSENTLoss),
                                          ("angle", AnglELoss)])
def test_sts_loss_chooses_the_siamese_sts_loss_only(tiny_params, choice, loss):
    chosen = tiny_params.replace(sts_loss=choice)
    assert STS_LOSSES[choice] is loss and tiny_params["sts_loss"] == "cosine_similarity"
    assert type(task_loss("sts", "siamese", chosen)) is loss
    assert type(task_loss("sts", "cross", chosen)) is MSELoss  # a cross-encoded score has no embeddings to rank
    assert type(task_loss("quora", "siamese", chosen)) is SiameseParaphraseLoss


def test_the_ranking_sts_losses_see_the_whole_batch():
    """Each pair is ranked against the rest of its batch: data-parallel ranks gather it whole."""
    assert CoSENTLoss().in_batch and AnglELoss().in_batch and not CosineSimilarityLoss().in_batch


def test_each_loss_reads_its_declared_settings(tiny_params):
    """Every hyperparameter a loss declares (but the guide, which ``positive_pairs`` reads) reaches
    the loss ``from_settings`` builds, at a value other than its default."""
    mnrl = contrastive_loss(tiny_params.replace(contrastive="mnrl", mnrl_scale=7.0))
    gist = contrastive_loss(tiny_params.replace(contrastive="gist", gist_temperature=0.2, gist_margin=0.15))
    paraphrase = task_loss("quora", "siamese", tiny_params.replace(online_contrastive=0.3, online_contrastive_margin=0.7))
    cosent = task_loss("sts", "siamese", tiny_params.replace(sts_loss="cosent", cosent_scale=5.0))
    angle = task_loss("sts", "siamese", tiny_params.replace(sts_loss="angle", angle_scale=3.0))
    read = {
        "mnrl_scale": (type(mnrl), mnrl.scale, 7.0),
        "gist_temperature": (type(gist), gist.temperature, 0.2),
        "gist_margin": (type(gist), gist.margin, 0.15),
        "online_contrastive": (type(paraphrase), paraphrase.weight, 0.3),
        "online_contrastive_margin": (type(paraphrase), paraphrase.contrastive.margin, 0.7),
        "cosent_scale": (type(cosent), cosent.scale, 5.0),
        "angle_scale": (type(angle), angle.scale, 3.0),
    }
    declared = {s.name: cls for cls in (*LOSSES.values(), *CONTRASTIVE_LOSSES.values()) for s in cls.settings}
    assert set(declared) - {"guide"} == set(read)  # a new loss setting needs a line here
    for name, (cls, got, wanted) in read.items():
        assert cls is declared[name] and got == wanted, name
        assert tiny_params[name] != wanted, name  # not the default: it was read, not assumed
    # ... and it changes the loss: MNRL at scale 7 by hand (COSINES below).
    prediction = torch.stack([ANCHORS, POSITIVES], dim=1)
    by_hand = -sum(torch.log_softmax(7.0 * COSINES[i], 0)[i] for i in range(3)) / 3
    assert mnrl(prediction, None).item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_a_siamese_run_adds_the_online_contrastive_term_from_its_settings(tmp_path, tiny_prepared, tiny_params, one_thread):
    """One step from the same weights on the same batch: the logged loss is the BCE alone,
    then the BCE plus the (positive) online contrastive term."""
    runs = {
        weight: train_tiny(tiny_params.replace(epochs=1, steps_per_epoch=1, online_contrastive=weight),
                           ["quora"], "siamese", tiny_prepared, tmp_path / str(weight))
        for weight in (0.0, 1.0)
    }
    assert runs[1.0][0]["train_loss"]["quora"] > runs[0.0][0]["train_loss"]["quora"]


def test_a_siamese_sts_run_trains_with_the_chosen_loss(tmp_path, tiny_prepared, tiny_params, one_thread):
    """One step from the same weights on the same batch under each choice: three different
    finite losses, and the choice in the run's record."""
    losses = {}
    for choice in STS_LOSSES:
        out = tmp_path / choice
        history = train_tiny(tiny_params.replace(epochs=1, steps_per_epoch=1, sts_loss=choice), ["sts"], "siamese",
                             tiny_prepared, out)
        losses[choice] = history[0]["train_loss"]["sts"]
        assert RunDir(out).meta()["settings"]["sts_loss"] == choice
    assert all(math.isfinite(v) and v > 0 for v in losses.values()) and len(set(losses.values())) == 3


def test_an_unknown_sts_loss_is_named(tiny_params):
    with pytest.raises(UserError, match="^unknown sts_loss 'mse': choose one of cosine_similarity, cosent, angle$"):
        tiny_params.replace(sts_loss="mse")


def test_an_unknown_contrastive_loss_is_named(tiny_params):
    with pytest.raises(UserError, match="^unknown contrastive 'triplet': choose one of none, mnrl, gist$"):
        tiny_params.replace(contrastive="triplet")


@pytest.mark.parametrize(
    "bad, message",
    [
        # A negative weight made the paraphrase loss negative; a zero temperature divided by zero.
        (dict(online_contrastive=-0.1), "param online_contrastive must be >= 0, got -0.1"),
        (dict(online_contrastive_margin=-0.5), "param online_contrastive_margin must be >= 0, got -0.5"),
        (dict(mnrl_scale=0), "param mnrl_scale must be positive, got 0"),
        (dict(gist_temperature=0), "param gist_temperature must be positive, got 0"),
        (dict(cosent_scale=0), "param cosent_scale must be positive, got 0"),
        (dict(angle_scale=-1.0), "param angle_scale must be positive, got -1.0"),
    ],
)
def test_loss_settings_out_of_range_are_named(tiny_params, bad, message):
    with pytest.raises(UserError, match=f"^{message}$"):
        tiny_params.replace(**bad)


def test_zero_weight_and_margin_are_valid(tiny_params):
    loss = task_loss("quora", "siamese", tiny_params.replace(online_contrastive=0.0, online_contrastive_margin=0.0))
    assert type(loss) is SiameseParaphraseLoss and loss.weight == 0.0 and loss.contrastive.margin == 0.0


# -- against sentence-transformers (the test oracle), on the same embeddings -------------------


class FeedsEmbeddings(torch.nn.Module):
    """Stands in for a SentenceTransformer: a column's features carry its embeddings ready-made,
    so both implementations score exactly the same numbers."""

    def __init__(self, key: str, tokenizer):
        super().__init__()
        self.key, self.tokenizer, self.max_seq_length = key, tokenizer, 32

    def forward(self, features: dict) -> dict:
        return {"sentence_embedding": features[self.key]}


@pytest.fixture(scope="module")
def st_losses(tiny_checkpoint):
    losses = pytest.importorskip("sentence_transformers.losses")
    import transformers

    tokenizer = transformers.BertTokenizerFast(vocab_file=str(tiny_checkpoint / "vocab.txt"))
    return losses, FeedsEmbeddings("model", tokenizer), FeedsEmbeddings("guide", tokenizer)


def columns(prediction: torch.Tensor, guide: torch.Tensor | None = None) -> list[dict]:
    return [{"model": prediction[:, i], **({"guide": guide[:, i]} if guide is not None else {})} for i in range(2)]


def random_pairs(seed: int, batch: int = 12, width: int = 16) -> torch.Tensor:
    return torch.randn(batch, 2, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mnrl_agrees_with_sentence_transformers(st_losses, seed):
    losses, model, _ = st_losses
    prediction = random_pairs(seed)
    theirs = losses.MultipleNegativesRankingLoss(model, scale=20.0)(columns(prediction), None)
    torch.testing.assert_close(MultipleNegativesRankingLoss(20.0)(prediction), theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("margin", [0.0, 0.1])
def test_gist_agrees_with_sentence_transformers_without_exact_ties(st_losses, margin):
    losses, model, guide_model = st_losses
    prediction, guide = random_pairs(3), random_pairs(4, width=8)
    theirs = losses.GISTEmbedLoss(model, guide_model, temperature=0.01, margin=margin)(columns(prediction, guide), None)
    torch.testing.assert_close(GISTEmbedLoss(0.01, margin)(prediction, guide), theirs, rtol=1e-5, atol=1e-5)


def test_gist_masks_a_duplicate_of_the_positive_which_sentence_transformers_keeps(st_losses):
    """A candidate the guide rates exactly as similar as the positive: masked here (>=), a
    negative there (>); the same as theirs with the cut an epsilon lower."""
    losses, model, guide_model = st_losses
    prediction, guide = random_pairs(5), random_pairs(6, width=8)
    prediction[1, 1], guide[1, 1] = prediction[0, 1], guide[0, 1]  # row 1's positive duplicates row 0's
    ours = GISTEmbedLoss(0.01, 0.0)(prediction, guide)
    theirs = losses.GISTEmbedLoss(model, guide_model, temperature=0.01, margin=0.0)(columns(prediction, guide), None)
    lowered = losses.GISTEmbedLoss(model, guide_model, temperature=0.01, margin=1e-6)(columns(prediction, guide), None)
    assert not torch.allclose(ours, theirs, rtol=1e-4)
    torch.testing.assert_close(ours, lowered, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("labels", [[1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
                         ids=["both-classes", "one-paraphrase"])
def test_online_contrastive_agrees_with_sentence_transformers_on_binary_two_class_batches(st_losses, labels):
    losses, model, _ = st_losses
    prediction, labels = random_pairs(7), torch.tensor(labels, dtype=torch.float32)
    theirs = losses.OnlineContrastiveLoss(model, margin=0.5)(columns(prediction), labels)
    torch.testing.assert_close(OnlineContrastiveLoss(0.5)(prediction, labels), theirs, rtol=1e-5, atol=1e-5)


def test_online_contrastive_counts_every_pair_of_a_one_class_batch_where_sentence_transformers_counts_the_far_half(st_losses):
    losses, model, _ = st_losses
    prediction, labels = random_pairs(8), torch.ones(12)
    distance = 1 - F.cosine_similarity(prediction[:, 0], prediction[:, 1])
    theirs = losses.OnlineContrastiveLoss(model, margin=0.5)(columns(prediction), labels)
    torch.testing.assert_close(OnlineContrastiveLoss(0.5)(prediction, labels), distance.pow(2).sum())
    torch.testing.assert_close(theirs, distance[distance > distance.mean()].pow(2).sum())


def test_the_cosine_similarity_loss_agrees_with_sentence_transformers_on_scores_scaled_to_one(st_losses):
    losses, model, _ = st_losses
    prediction, scores = random_pairs(9), torch.rand(12, generator=torch.Generator().manual_seed(9)) * 5
    u, v = prediction.unbind(1)
    theirs = losses.CosineSimilarityLoss(model)(columns(prediction), scores / 5)
    ours = CosineSimilarityLoss()(5 * F.cosine_similarity(u, v), scores)  # the STS head's 5·cos(u, v)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def sts_scores(seed: int, batch: int = 12) -> torch.Tensor:
    """Gold scores on 0..5 in steps of 0.2, with a tie at least (pairs 0 and 1)."""
    scores = torch.randint(0, 26, (batch,), generator=torch.Generator().manual_seed(seed)).float() / 5
    scores[1] = scores[0]
    return scores


@pytest.mark.parametrize("scale", [20.0, 1000.0])
@pytest.mark.parametrize("ours, theirs, width", [(CoSENTLoss, "CoSENTLoss", 16), (AnglELoss, "AnglELoss", 16),
                                                 (AnglELoss, "AnglELoss", 15)],  # an odd width: a zero last coordinate
                         ids=["cosent", "angle", "angle-odd-width"])
@pytest.mark.parametrize("seed", [10, 11])
def test_the_ranking_sts_losses_agree_with_sentence_transformers(st_losses, ours, theirs, width, scale, seed):
    """The loss and its gradient in the embeddings, on our 0..5 scores and their 0..1 (only the
    order counts); at scale 1000 both stay finite (logsumexp)."""
    losses, model, _ = st_losses
    scores = sts_scores(seed)
    pair_ours = random_pairs(seed, width=width).requires_grad_()
    pair_theirs = pair_ours.detach().clone().requires_grad_()
    u, v = pair_ours.unbind(1)
    mine = ours(scale)(PairLogit(5 * F.cosine_similarity(u, v), pair_ours), scores)
    reference = getattr(losses, theirs)(model, scale=scale)(columns(pair_theirs), scores / 5)
    torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-5)
    (grad_ours,), (grad_theirs,) = torch.autograd.grad(mine, pair_ours), torch.autograd.grad(reference, pair_theirs)
    assert torch.isfinite(grad_ours).all()
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=1e-4, atol=1e-5 * scale / 20)
