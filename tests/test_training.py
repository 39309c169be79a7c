"""The training machinery: round-robin batching, batching helpers, the task heads, the scores,
and the training loop end to end on a tiny random BERT and small slices of the real data."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file

from optiminbert import evaluation, phases, runtime
from optiminbert.averaging import WeightAverage
from optiminbert.batching import join_pair, length_bucketed_batches, pad, pad_side_by_side
from optiminbert.errors import UserError
from optiminbert.metrics import normalised, overall, task_score
from optiminbert.model import BertConfig, BertModel
from optiminbert.multitask import ALIGNMENT_SCALE, STS_SCALE, MultitaskBert, SentenceEmbedding, mean_pool, token_alignment
from optiminbert.params import resolve
from optiminbert.prepared import TaskSplit, split_path
from optiminbert.roundrobin import RoundRobin
from optiminbert.runtime import seed_everything
from optiminbert.train import Runtime, TrainConfig, predict

STUDY = list(phases.STUDY_TASKS)
CLS, SEP = 2, 3  # their ids in the tiny vocabulary ([PAD] [UNK] [CLS] [SEP] [MASK] first)


# -- round-robin schedule -------------------------------------------------------------------------

SIZES = {"big": 10, "mid": 4, "small": 3}  # batches per pass


def fake_orders(sizes: dict[str, int]):
    """Orders that hand out each pass as distinct one-element tensors 0..n-1 and log every pass."""
    passes: dict[str, list[list[int]]] = {task: [] for task in sizes}

    def order(task: str, n: int, generator: torch.Generator) -> list[torch.Tensor]:
        permutation = torch.randperm(n, generator=generator).tolist()
        passes[task].append(permutation)
        return [torch.tensor([k]) for k in permutation]

    return {task: partial(order, task, n) for task, n in sizes.items()}, passes


def schedule(seed: int = 0, epochs: int = 3):
    orders, passes = fake_orders(SIZES)
    rr = RoundRobin(orders, SIZES, seed)
    return [[{t: b.item() for t, b in step.items()} for step in rr.epoch()] for _ in range(epochs)], passes, rr


def test_round_robin_epoch_is_one_pass_of_the_largest_task() -> None:
    epochs, passes, rr = schedule()
    assert rr.steps_per_epoch == 10
    for steps in epochs:
        assert len(steps) == 10
        assert all(list(step) == list(SIZES) for step in steps)  # one batch of every task per step
        assert sorted(step["big"] for step in steps) == list(range(10))  # each seen exactly once
    assert len(passes["big"]) == 3  # one fresh pass per epoch, never cut

    # The smaller tasks cycle: 10 steps are 2.5 passes of 4 batches and 3⅓ passes of 3.
    first = epochs[0]
    assert sorted(Counter(s["mid"] for s in first).values()) == [2, 2, 3, 3]
    assert sorted(Counter(s["small"] for s in first).values()) == [3, 3, 4]
    everything = [step for steps in epochs for step in steps]
    assert Counter(s["mid"] for s in everything[:20]) == {k: 5 for k in range(4)}  # 20 steps: 5 passes
    assert set(Counter(s["small"] for s in everything).values()) == {10}  # 30 steps: 10 passes


def test_round_robin_reshuffles_each_pass_and_carries_it_across_epochs() -> None:
    epochs, passes, _ = schedule()
    seen = {task: [step[task] for steps in epochs for step in steps] for task in SIZES}
    for task, n in SIZES.items():
        # A new pass is drawn only when the last one ran out, and each is a full permutation ...
        assert len(passes[task]) == math.ceil(30 / n)
        assert all(sorted(p) == list(range(n)) for p in passes[task])
        # ... and the schedule is exactly those passes back to back, across epoch boundaries.
        assert seen[task] == [k for p in passes[task] for k in p][: len(seen[task])]
        assert len({tuple(p) for p in passes[task]}) > 1  # reshuffled, not one order repeated
    # Epoch 1 stops half-way through mid's third pass; epoch 2 opens with the rest of it.
    assert {s["mid"] for s in epochs[0][8:] + epochs[1][:2]} == set(range(4))
    assert passes["mid"][2][2:] == [s["mid"] for s in epochs[1][:2]]
    assert any(a != b for a, b in zip(passes["mid"], passes["mid"][1:]))


def test_round_robin_is_reproducible_per_seed() -> None:
    assert schedule(seed=5)[0] == schedule(seed=5)[0]
    assert schedule(seed=5)[0] != schedule(seed=6)[0]


# -- batching helpers -----------------------------------------------------------------------------


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


# -- the task heads -------------------------------------------------------------------------------


@pytest.fixture
def encoder(tiny_checkpoint: Path) -> BertModel:
    return BertModel.from_pretrained(tiny_checkpoint)


def random_batch(rows: int, vocab_size: int, pair: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids with rows of lengths 7, 5, 3, ... (right-padded), segment ids for pairs."""
    generator = torch.Generator().manual_seed(seed)
    width = 7
    ids = torch.randint(5, vocab_size, (rows, width), generator=generator)
    mask = torch.zeros_like(ids)
    for row in range(rows):
        mask[row, : width - 2 * (row % 3)] = 1
    batch = {"input_ids": ids * mask, "attention_mask": mask}
    if pair:
        batch["token_type_ids"] = torch.zeros_like(ids)
        batch["token_type_ids"][:, 3:] = 1
    return batch


def side_by_side_batch(rows: int, vocab_size: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], list]:
    """``rows`` random sentence pairs of 3 to 7 tokens, side by side (``pad_side_by_side``), and the pairs."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 8, (rows, 2), generator=generator).tolist()
    pairs = [tuple(torch.randint(5, vocab_size, (n,), generator=generator).tolist() for n in row) for row in lengths]
    return pad_side_by_side(pairs), pairs


@pytest.mark.parametrize("pairs", ["cross", "siamese"])
def test_output_shapes_of_every_task_in_both_designs(encoder: BertModel, pairs: str) -> None:
    model = MultitaskBert(encoder, STUDY + ["cfimdb"], pairs=pairs).eval()
    vocab, rows = encoder.config.vocab_size, 3
    pair_batch = random_batch(rows, vocab, pair=True) if pairs == "cross" else side_by_side_batch(rows, vocab)[0]
    with torch.no_grad():
        assert model("sst", random_batch(rows, vocab)).shape == (rows, 5)
        assert model("cfimdb", random_batch(rows, vocab)).shape == (rows, 2)
        paraphrase = model("quora", pair_batch)
        assert model("sts", pair_batch).shape == (rows,)
    if pairs == "cross":
        assert paraphrase.shape == (rows,)
    else:  # the logit, and the embeddings it read: the very u and v whose cosine is siamese STS
        assert paraphrase.logit.shape == (rows,)
        assert paraphrase.embeddings.shape == (rows, 2, encoder.config.hidden_size)
        u, v = paraphrase.embeddings.unbind(1)
        torch.testing.assert_close(5 * torch.cosine_similarity(u, v, dim=-1), model("sts", pair_batch))
    assert ("sts" in model.heads) == (pairs == "cross")  # siamese STS is the cosine, no head


def test_siamese_sts_is_five_times_the_cosine_of_the_embeddings(encoder: BertModel) -> None:
    """Computed by hand from each sentence encoded in a row of its own."""
    model = MultitaskBert(encoder, ["sts"], pairs="siamese").eval()
    with torch.no_grad():  # move the embedding layer off the identity so it has to be applied
        model.embedding.linear.weight.add_(0.1 * torch.randn(32, 32, generator=torch.Generator().manual_seed(1)))
        model.embedding.linear.bias.fill_(0.05)
        batch, pairs = side_by_side_batch(3, encoder.config.vocab_size)
        rows = pad([a for a, _ in pairs] + [b for _, b in pairs])
        hidden = encoder(rows["input_ids"], rows["attention_mask"]).last_hidden_state
        mask = rows["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        e = pooled @ model.embedding.linear.weight.T + model.embedding.linear.bias
        u, v = e[:3], e[3:]
        expected = 5 * (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))
        torch.testing.assert_close(model("sts", batch), expected)
    assert STS_SCALE == 5


def test_sentence_embedding_starts_as_mean_pooling() -> None:
    layer = SentenceEmbedding(6)
    assert torch.equal(layer.linear.weight, torch.eye(6)) and not layer.linear.bias.any()
    hidden = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(0))
    lengths = [4, 2, 1]
    mask = torch.tensor([[1] * n + [0] * (4 - n) for n in lengths])
    by_hand = torch.stack([hidden[row, :n].mean(0) for row, n in enumerate(lengths)])
    with torch.no_grad():
        torch.testing.assert_close(layer(hidden, mask), by_hand)
        torch.testing.assert_close(mean_pool(hidden, mask), by_hand)


def test_token_alignment_features_by_hand() -> None:
    """a = [CLS] x1 x2 [SEP], b = [CLS] y1 [SEP], then padding. x1 = y1 and x2 is orthogonal to
    both: a's tokens find matches of cosine 1 and 0 (mean 0.5, worst 0), b's token finds 1 (mean
    1, worst 1). The special tokens share one vector, so counting them would match them at 1."""
    special, x1, x2, pad_state = [-1.0, -1.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]
    hidden = torch.tensor([[special, x1, x2, special, special, x1, special, pad_state]])
    sequence_ids = torch.tensor([[1, 1, 1, 1, 2, 2, 2, 0]])
    features = token_alignment(hidden, sequence_ids)
    torch.testing.assert_close(features, torch.tensor([[(0.5 + 1.0) / 2, 0.5, 0.0, 1.0]]))
    swapped = torch.tensor([[special, x1, special, special, x1, x2, special, pad_state]])
    torch.testing.assert_close(token_alignment(swapped, torch.tensor([[1, 1, 1, 2, 2, 2, 2, 0]])), features)


def test_token_alignment_widens_only_the_siamese_paraphrase_head(encoder: BertModel) -> None:
    width, rows = encoder.config.hidden_size, 3
    siamese = MultitaskBert(encoder, STUDY, pairs="siamese", token_alignment=True).eval()
    assert siamese.heads["quora"].in_features == 3 * width + 4 and siamese.heads["sst"].in_features == 2 * width
    cross = MultitaskBert(encoder, STUDY, pairs="cross", token_alignment=True)
    assert cross.heads["quora"].in_features == width  # a cross-encoded pair's tokens already meet
    batch = side_by_side_batch(rows, encoder.config.vocab_size)[0]
    with torch.no_grad():
        paraphrase = siamese("quora", batch)
        assert paraphrase.logit.shape == (rows,)
        # the head reads the scaled features: its last four weights alone move the logit by exactly that
        siamese.heads["quora"].weight[0, -4:] += 1.0
        expected = paraphrase.logit + ALIGNMENT_SCALE * token_alignment(
            encoder(**{k: batch[k] for k in ("input_ids", "attention_mask", "sequence_ids")}).last_hidden_state,
            batch["sequence_ids"],
        ).sum(-1)
        torch.testing.assert_close(siamese("quora", batch).logit, expected)


# -- scores ---------------------------------------------------------------------------------------


def test_overall_score_arithmetic() -> None:
    assert overall(0.5, 0.8, 0.6) == (0.5 + 0.8 + 0.8) / 3
    assert overall(1.0, 1.0, 1.0) == 1.0 and overall(0.0, 0.0, -1.0) == 0.0
    assert normalised("sts", 0.6) == 0.8 and normalised("sts", -1.0) == 0.0
    assert normalised("sst", 0.7) == 0.7 and normalised("quora", 0.25) == 0.25


def test_task_scores_on_tiny_arrays() -> None:
    labels = np.array([0.0, 1.0, 2.0, 1.0])
    assert task_score("sst", np.array([0, 1, 1, 1]), labels) == 0.75
    assert task_score("quora", np.array([1, 0]), np.array([1.0, 1.0])) == 0.5
    assert task_score("sts", np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])) == pytest.approx(1.0)
    assert task_score("sts", np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    # deviations (-1, 0, 1) and (-1, 1, 0): r = 1 / (√2 · √2)
    assert task_score("sts", np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])) == pytest.approx(0.5)
    assert task_score("sts", np.full(3, 2.5), np.array([1.0, 3.0, 2.0])) == 0.0  # constant: no correlation


def test_train_config_rejects_bad_values() -> None:
    # A negative grad_clip once flipped every clipped gradient's sign and trained silently;
    # a negative seed reached numpy's seeding as a traceback.
    for bad in (
        dict(lr=0), dict(lr=-1e-5), dict(batch_size=0), dict(grad_clip=-1.0), dict(seed=-5), dict(seed=2**32),
        dict(ema=1.0), dict(ema=-0.5),
    ):
        with pytest.raises(UserError, match=next(iter(bad))):
            TrainConfig(**bad)
        with pytest.raises(UserError):
            phases.train_config(resolve(bad))
    TrainConfig(grad_clip=0.0, seed=0)  # no clipping, and the smallest seed, are fine


def test_whole_number_params_reject_fractions() -> None:
    for key in ("epochs", "batch_size", "seed", "steps_per_epoch"):
        with pytest.raises(UserError, match=f"param {key} must be a whole number, got 1.5"):
            resolve({key: 1.5})
    assert resolve({"lr": 1, "dropout": 0})["lr"] == 1  # a whole number where a float goes is fine


def test_max_length_must_fit_the_checkpoints_positions() -> None:
    for bad in (2, 513, 64.0, True, "128"):
        with pytest.raises(UserError, match="param max_length must be a whole number from 3 to 512"):
            BertConfig(max_position_embeddings=512).check_length("max_length", bad)
    for good in (3, 128, 512):
        BertConfig(max_position_embeddings=512).check_length("max_length", good)


# -- the training loop, end to end ----------------------------------------------------------------

CPU = Runtime(torch.device("cpu"), None)


@dataclass
class Run:
    dir: Path
    params: dict
    history: list[dict]
    model: MultitaskBert  # the in-memory model train_run saved


def train(p: dict, tasks: list[str], pairs: str, prepared: Path, out: Path, frozen: bool = False) -> Run:
    with mock.patch.object(phases, "save_run", wraps=phases.save_run) as save:
        history = phases.train_run(p, tasks, pairs, prepared, out, f"test {out.name}", frozen=frozen)
    return Run(out, p, history, save.call_args.args[0])


def outcome(history: list[dict]) -> list[dict]:
    """A history without its wall-clock fields."""
    return [{k: h[k] for k in ("epoch", "train_loss", "dev", "selection")} for h in history]


def encoder_weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(f.relative_to(directory)): f.read_bytes() for f in sorted(directory.rglob("*")) if f.is_file()}


def dev_split(prepared: Path, task: str) -> TaskSplit:
    return TaskSplit.load(split_path(prepared, task, "dev"))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def trainer(tiny_params, tiny_prepared, runs):
    """train(name, tasks, pairs, frozen=False, **param overrides) into runs/name."""

    def run(name: str, tasks: list[str], pairs: str = "cross", frozen: bool = False, **overrides) -> Run:
        return train({**tiny_params, **overrides}, tasks, pairs, tiny_prepared, runs / name, frozen)

    return run


@pytest.fixture(scope="module")
def finetuned(trainer) -> Run:
    return trainer("finetune", ["sst"])


@pytest.fixture(scope="module")
def joint(trainer) -> Run:
    return trainer("joint", STUDY, "siamese", surgery="pcgrad")


@pytest.fixture(scope="module")
def aligned(trainer) -> Run:
    return trainer("aligned", ["quora"], "siamese", token_alignment=True)


@pytest.fixture(scope="module")
def frozen_run(trainer) -> Run:
    return trainer("frozen", ["sst"], frozen=True)


def test_frozen_mode_leaves_the_encoder_bit_for_bit(frozen_run: Run, tiny_checkpoint: Path) -> None:
    run = frozen_run
    checkpoint, saved = encoder_weights(tiny_checkpoint), encoder_weights(run.dir / "encoder")
    assert checkpoint.keys() == saved.keys()
    assert all(torch.equal(checkpoint[k], saved[k]) for k in checkpoint)
    seed_everything(run.params["seed"])  # what train_run does before building its model
    initial = phases.build_model(run.params, ["sst"], "cross", frozen=True)
    assert not torch.equal(initial.heads["sst"].weight, run.model.heads["sst"].weight)
    assert not any(p.requires_grad for p in run.model.encoder.parameters())


@pytest.mark.parametrize("freeze_words", [True, False])
def test_finetune_changes_the_encoder(trainer, tiny_checkpoint: Path, freeze_words: bool) -> None:
    run = trainer(f"finetune-words-{freeze_words}", ["sst"], freeze_word_embeddings=freeze_words)
    checkpoint, saved = encoder_weights(tiny_checkpoint), encoder_weights(run.dir / "encoder")
    words = "embeddings.word_embeddings.weight"
    assert torch.equal(checkpoint[words], saved[words]) == freeze_words
    unchanged = [k for k in checkpoint if k != words and torch.equal(checkpoint[k], saved[k])]
    assert unchanged == []


def test_frozen_layers_keep_their_weights_and_the_rest_trains(trainer, tiny_checkpoint: Path) -> None:
    run = trainer("finetune-freeze-1", ["sst"], freeze_layers=1)
    checkpoint, saved = encoder_weights(tiny_checkpoint), encoder_weights(run.dir / "encoder")
    frozen = [k for k in checkpoint if k.startswith(("embeddings.", "encoder.layer.0."))]
    assert frozen and all(torch.equal(checkpoint[k], saved[k]) for k in frozen)
    assert all(not torch.equal(checkpoint[k], saved[k]) for k in checkpoint if k not in frozen)


@pytest.mark.parametrize("layers", [-1, 3, 1.5])
def test_freeze_layers_out_of_range_is_a_clear_error(trainer, layers) -> None:
    with pytest.raises(UserError, match="freeze_layers must be an integer from 0 to 2"):
        trainer(f"freeze-{layers}", ["sst"], freeze_layers=layers)


def test_weight_average_follows_the_ema_rule_and_puts_the_trained_weights_back() -> None:
    weights = [torch.nn.Parameter(torch.tensor([0.0, 4.0]))]
    average = WeightAverage(weights, decay=0.5)
    for value in ([2.0, 0.0], [4.0, 4.0]):  # two optimizer steps
        with torch.no_grad():
            weights[0].copy_(torch.tensor(value))
        average.update()
    # 0.5 * (0.5 * [0, 4] + 0.5 * [2, 0]) + 0.5 * [4, 4]: the average starts from the first weights
    assert average.average[0].tolist() == [2.5, 3.0]
    with pytest.raises(RuntimeError), average.applied():
        assert weights[0].tolist() == [2.5, 3.0]
        raise RuntimeError  # the trained weights come back even when the block fails
    assert weights[0].tolist() == [4.0, 4.0]


def test_ema_scores_and_saves_the_average_and_trains_as_without(trainer, finetuned: Run, tiny_checkpoint: Path) -> None:
    averaged = trainer("finetune-ema", ["sst"], ema=0.5)
    # The average is only read: the same steps and losses.
    assert [(h["train_loss"], h["steps"]) for h in averaged.history] == [(h["train_loss"], h["steps"]) for h in finetuned.history]
    assert snapshot(averaged.dir / "encoder") != snapshot(finetuned.dir / "encoder")
    # A decay this close to 1 keeps the weights training started from, and that is what is saved.
    still = trainer("finetune-ema-still", ["sst"], ema=1 - 1e-9)
    checkpoint, saved = encoder_weights(tiny_checkpoint), encoder_weights(still.dir / "encoder")
    assert all(torch.allclose(saved[k], checkpoint[k], atol=1e-6) for k in checkpoint)
    trained = encoder_weights(finetuned.dir / "encoder")
    assert not all(torch.allclose(trained[k], checkpoint[k], atol=1e-6) for k in checkpoint)


def test_compiled_training_saves_the_eager_layout(trainer, finetuned: Run, tiny_checkpoint: Path) -> None:
    """compile=True compiles the encoder in place: the run trains, and its saved encoder and heads
    have exactly the eager run's keys and shapes (no torch.compile wrapper names leak into them)."""
    run = trainer("finetune-compiled", ["sst"], compile=True)
    checkpoint, eager, compiled = (
        encoder_weights(d) for d in (tiny_checkpoint, finetuned.dir / "encoder", run.dir / "encoder")
    )
    assert {k: v.shape for k, v in compiled.items()} == {k: v.shape for k, v in eager.items()}
    assert all(torch.isfinite(v).all() for v in compiled.values())
    assert not torch.equal(compiled["encoder.layer.0.output.dense.weight"], checkpoint["encoder.layer.0.output.dense.weight"])
    assert load_file(run.dir / "heads.safetensors").keys() == load_file(finetuned.dir / "heads.safetensors").keys()


def test_same_seed_same_history_other_seed_differs(trainer, finetuned: Run) -> None:
    again = trainer("finetune-again", ["sst"])
    assert outcome(again.history) == outcome(finetuned.history)
    assert snapshot(again.dir / "encoder") == snapshot(finetuned.dir / "encoder")
    other = trainer("finetune-seed-1", ["sst"], seed=1)
    assert outcome(other.history) != outcome(finetuned.history)
    assert [h["train_loss"] for h in other.history] != [h["train_loss"] for h in finetuned.history]


def test_specialists_are_independent_models(trainer, runs: Path) -> None:
    saved = {}
    for task in STUDY:
        before = {t: snapshot(runs / f"specialist-{t}") for t in saved}
        run = trainer(f"specialist-{task}", [task], "siamese")
        assert {t: snapshot(runs / f"specialist-{t}") for t in saved} == before  # others untouched
        saved[task] = encoder_weights(run.dir / "encoder")
        heads = load_file(run.dir / "heads.safetensors")
        assert {k.split(".")[0] for k in heads} == ({"heads", "embedding"} if task != "sts" else {"embedding"})
        assert all(k.startswith(("embedding.", f"heads.{task}.")) for k in heads)
    for a, b in [("sst", "quora"), ("sst", "sts"), ("quora", "sts")]:
        assert any(not torch.equal(saved[a][k], saved[b][k]) for k in saved[a]), (a, b)
    # Each starts from the checkpoint, not from the specialist trained before it.
    alone = trainer("specialist-sts-alone", ["sts"], "siamese")
    assert snapshot(alone.dir / "encoder") == snapshot(runs / "specialist-sts" / "encoder")


def test_joint_pcgrad_siamese_run_saves_every_task(joint: Run) -> None:
    meta = phases.load_run(joint.dir)[1]
    assert meta["tasks"] == STUDY and meta["pairs"] == "siamese" and meta["params"]["surgery"] == "pcgrad"
    assert len(joint.history) == 2 and all(set(h["dev"]) == set(STUDY) for h in joint.history)
    heads = load_file(joint.dir / "heads.safetensors")
    assert {k.rsplit(".", 1)[0] for k in heads} == {"heads.sst", "heads.quora", "embedding.linear"}


@pytest.mark.parametrize("which", ["finetuned", "joint", "aligned"])
def test_load_run_predicts_like_the_in_memory_model(which: str, request, tiny_prepared: Path) -> None:
    run: Run = request.getfixturevalue(which)
    loaded, meta = phases.load_run(run.dir)
    for task in meta["tasks"]:
        split = dev_split(tiny_prepared, task)
        ours = predict(run.model, task, split, CPU, 16, 32)
        torch.testing.assert_close(predict(loaded, task, split, CPU, 16, 32), ours, rtol=0, atol=1e-6)


def test_transformers_loads_the_saved_encoder(finetuned: Run, tiny_prepared: Path) -> None:
    hf = transformers.BertModel.from_pretrained(finetuned.dir / "encoder", attn_implementation="eager").eval()
    split = dev_split(tiny_prepared, "quora")  # pairs: padding and both segment ids
    batch = split.batch(torch.arange(16), "cross", 32)
    ours = finetuned.model.encoder.eval()
    with torch.no_grad():
        theirs = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"])
        mine = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert batch["attention_mask"].min() == 0 and batch["token_type_ids"].max() == 1
    real = batch["attention_mask"].bool()  # padded positions carry no meaning (ours are zeros on CPU)
    torch.testing.assert_close(mine.last_hidden_state[real], theirs.last_hidden_state[real], rtol=0, atol=1e-4)
    torch.testing.assert_close(mine.pooler_output, theirs.pooler_output, rtol=0, atol=1e-4)


@pytest.mark.parametrize("which", ["finetuned", "joint", "frozen_run"])
def test_evaluation_reuses_the_trained_dev_outputs_at_the_same_precision(which: str, request, tiny_prepared: Path, tiny_params) -> None:
    """A run saves its selected epoch's dev outputs; evaluation scores only test with them,
    unless it runs at another precision than training did."""
    run: Run = request.getfixturevalue(which)
    saved = load_file(run.dir / phases.DEV_OUTPUTS)
    loaded, meta = phases.load_run(run.dir)
    assert sorted(saved) == sorted(meta["tasks"]) and meta["dev_outputs_precision"] == "fp32"
    for task in meta["tasks"]:
        expected = predict(loaded, task, dev_split(tiny_prepared, task), CPU, 16, 32)
        torch.testing.assert_close(saved[task], expected, rtol=0, atol=1e-5)
    for precision, scored_splits in (("fp32", {"test"}), ("bf16", {"dev", "test"})):
        with mock.patch.object(evaluation, "predict", wraps=evaluation.predict) as scored:
            results = evaluation.score_run(run.dir, tiny_prepared, {**tiny_params, "precision": precision})
        assert {call.args[2].split for call in scored.call_args_list} == scored_splits
        if precision == "fp32":
            assert all(torch.equal(results[t]["dev"][1], saved[t]) for t in meta["tasks"])


@pytest.mark.parametrize("frozen", [False, True])
def test_heads_train_at_head_lr_only_beside_a_training_encoder(trainer, frozen: bool) -> None:
    with mock.patch.object(torch.optim, "AdamW", wraps=torch.optim.AdamW) as adamw:
        run = trainer(f"head-lr-{frozen}", ["sst"], frozen=frozen, lr=1e-4, head_lr=5e-3)
    groups = adamw.call_args.args[0]
    head_ids = {id(p) for p in run.model.heads["sst"].parameters()}
    if frozen:
        assert [g["initial_lr"] for g in groups] == [1e-4]  # lr itself has decayed to 0
    else:
        assert [g["initial_lr"] for g in groups] == [1e-4, 5e-3]
        assert {id(p) for p in groups[1]["params"]} == head_ids
        assert not head_ids & {id(p) for p in groups[0]["params"]}


def test_overlong_texts_are_truncated_and_counted(tiny_prepared: Path) -> None:
    summary = json.loads((tiny_prepared / "summary.json").read_text())
    cfimdb = TaskSplit.load(split_path(tiny_prepared, "cfimdb", "train"))
    at_limit = int((cfimdb.lengths >= 32).sum())  # the fixture prepares with max_length 32
    assert summary["cfimdb-train"]["truncated"] == at_limit > 0  # reviews run to hundreds of tokens
    assert int(cfimdb.lengths.max()) == 32


# -- the host allocator ---------------------------------------------------------------------------


class FakeLibc:
    """Records mallopt calls; refuses mmap thresholds above ``mmap_cap`` as older glibc does."""

    def __init__(self, mmap_cap: int):
        self.mmap_cap, self.calls = mmap_cap, []

    def mallopt(self, option: int, value: int) -> int:
        self.calls.append((option, value))
        return int(option != runtime.M_MMAP_THRESHOLD or value <= self.mmap_cap)


@pytest.mark.parametrize(
    "mmap_cap, expected_calls, took",
    [
        (1 << 40, [(runtime.M_MMAP_THRESHOLD, runtime.KEEP_BYTES), (runtime.M_TRIM_THRESHOLD, runtime.KEEP_BYTES)], True),
        (32 << 20, [(runtime.M_MMAP_THRESHOLD, runtime.KEEP_BYTES), (runtime.M_MMAP_THRESHOLD, 32 << 20), (runtime.M_TRIM_THRESHOLD, runtime.KEEP_BYTES)], True),
        # A refused threshold must leave the trim limit alone: setting it would freeze the
        # threshold at 128 KiB.
        (1 << 20, [(runtime.M_MMAP_THRESHOLD, runtime.KEEP_BYTES), (runtime.M_MMAP_THRESHOLD, 32 << 20)], False),
    ],
)
def test_keep_freed_memory_raises_the_mmap_threshold_before_the_trim_limit(monkeypatch, mmap_cap, expected_calls, took) -> None:
    for name in runtime.MALLOC_ENV + ("GLIBC_TUNABLES",):
        monkeypatch.delenv(name, raising=False)
    libc = FakeLibc(mmap_cap)
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda name: libc)
    assert runtime.keep_freed_memory() is took
    assert libc.calls == expected_calls


@pytest.mark.parametrize("env", [{"MALLOC_TRIM_THRESHOLD_": "0"}, {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}])
def test_keep_freed_memory_leaves_a_user_tuned_malloc_alone(monkeypatch, env) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    libc = FakeLibc(1 << 40)
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda name: libc)
    assert runtime.keep_freed_memory() is False
    assert libc.calls == []
