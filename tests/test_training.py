"""Training one run end to end (training.train_run) on a tiny random BERT and small slices of
the real data: what each mode trains and leaves alone, reproducibility per seed, independent
specialists, a joint PCGrad run, and the errors a run's settings can raise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import train_tiny
from safetensors.torch import load_file

from optiminbert.errors import UserError
from optiminbert.phases import STUDY_TASKS
from optiminbert.rundir import HEADS, RunDir, build_model
from optiminbert.runtime import seed_everything

STUDY = list(STUDY_TASKS)

pytestmark = pytest.mark.usefixtures("one_thread")


def outcome(history: list[dict]) -> list[dict]:
    """A history without its wall-clock fields."""
    return [{k: h[k] for k in ("epoch", "train_loss", "dev", "selection")} for h in history]


def encoder_weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(f.relative_to(directory)): f.read_bytes() for f in sorted(directory.rglob("*")) if f.is_file()}


def test_frozen_mode_leaves_the_encoder_bit_for_bit(frozen_run, tiny_checkpoint: Path) -> None:
    run = frozen_run
    checkpoint, saved = encoder_weights(tiny_checkpoint), encoder_weights(run.dir / "encoder")
    assert checkpoint.keys() == saved.keys()
    assert all(torch.equal(checkpoint[k], saved[k]) for k in checkpoint)
    seed_everything(run.settings.seed)  # what train_run does before building its model
    initial = build_model(run.settings, ["sst"], "cross", frozen=True)
    assert not torch.equal(initial.heads["sst"].weight, run.model.heads["sst"].weight)  # the head trained
    assert not any(p.requires_grad for p in run.model.encoder.parameters())


@pytest.mark.parametrize("freeze_words", [True, False])
def test_finetune_changes_the_encoder(trained, tiny_checkpoint: Path, freeze_words: bool) -> None:
    run = trained(f"finetune-words-{freeze_words}", ["sst"], freeze_word_embeddings=freeze_words)
    checkpoint, saved = encoder_weights(tiny_checkpoint), encoder_weights(run.dir / "encoder")
    words = "embeddings.word_embeddings.weight"
    assert torch.equal(checkpoint[words], saved[words]) == freeze_words
    unchanged = [k for k in checkpoint if k != words and torch.equal(checkpoint[k], saved[k])]
    assert unchanged == []


def test_frozen_layers_keep_their_weights_and_the_rest_trains(trained, tiny_checkpoint: Path) -> None:
    run = trained("finetune-freeze-1", ["sst"], freeze_layers=1)
    checkpoint, saved = encoder_weights(tiny_checkpoint), encoder_weights(run.dir / "encoder")
    frozen = [k for k in checkpoint if k.startswith(("embeddings.", "encoder.layer.0."))]
    assert frozen and all(torch.equal(checkpoint[k], saved[k]) for k in frozen)
    assert all(not torch.equal(checkpoint[k], saved[k]) for k in checkpoint if k not in frozen)


@pytest.mark.parametrize(
    "layers, message",
    [
        (-1, "param freeze_layers must be >= 0, got -1"),  # refused by the settings, before training
        (1.5, "param freeze_layers must be a whole number, got 1.5"),
        (3, r"param freeze_layers must be an integer from 0 to 2, got 3"),  # the tiny encoder's 2 layers: by the model
    ],
    ids=["negative", "fraction", "too-many"],
)
def test_freeze_layers_out_of_range_is_a_clear_error(tiny_params, tiny_prepared: Path, tmp_path: Path, layers, message) -> None:
    with pytest.raises(UserError, match=f"^{message}$"):
        train_tiny(tiny_params.replace(freeze_layers=layers), ["sst"], "cross", tiny_prepared, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_compiled_training_saves_the_eager_layout(trained, finetuned_run, tiny_checkpoint: Path) -> None:
    """compile=True compiles the encoder in place: the run trains, and its saved encoder and heads
    have exactly the eager run's keys and shapes (no torch.compile wrapper names leak into them)."""
    run = trained("finetune-compiled", ["sst"], compile=True)
    checkpoint, eager, compiled = (
        encoder_weights(d) for d in (tiny_checkpoint, finetuned_run.dir / "encoder", run.dir / "encoder")
    )
    assert {k: v.shape for k, v in compiled.items()} == {k: v.shape for k, v in eager.items()}
    assert all(torch.isfinite(v).all() for v in compiled.values())
    assert not torch.equal(compiled["encoder.layer.0.output.dense.weight"], checkpoint["encoder.layer.0.output.dense.weight"])
    assert load_file(run.dir / HEADS).keys() == load_file(finetuned_run.dir / HEADS).keys()


def test_same_seed_same_history_other_seed_differs(trained, finetuned_run) -> None:
    again = trained("finetune-again", ["sst"])
    assert outcome(again.history) == outcome(finetuned_run.history)
    assert snapshot(again.dir / "encoder") == snapshot(finetuned_run.dir / "encoder")
    other = trained("finetune-seed-1", ["sst"], seed=1)
    assert outcome(other.history) != outcome(finetuned_run.history)
    assert [h["train_loss"] for h in other.history] != [h["train_loss"] for h in finetuned_run.history]


def test_specialists_are_independent_models(trained, trained_runs: Path) -> None:
    saved = {}
    for task in STUDY:
        before = {t: snapshot(trained_runs / f"specialist-{t}") for t in saved}
        run = trained(f"specialist-{task}", [task], "siamese")
        assert {t: snapshot(trained_runs / f"specialist-{t}") for t in saved} == before  # others untouched
        saved[task] = encoder_weights(run.dir / "encoder")
        heads = load_file(run.dir / HEADS)
        assert {k.split(".")[0] for k in heads} == ({"heads", "embedding"} if task != "sts" else {"embedding"})
        assert all(k.startswith(("embedding.", f"heads.{task}.")) for k in heads)
    for a, b in [("sst", "quora"), ("sst", "sts"), ("quora", "sts")]:
        assert any(not torch.equal(saved[a][k], saved[b][k]) for k in saved[a]), (a, b)
    # Each starts from the checkpoint, not from the specialist trained before it.
    alone = trained("specialist-sts-alone", ["sts"], "siamese")
    assert snapshot(alone.dir / "encoder") == snapshot(trained_runs / "specialist-sts" / "encoder")


def test_joint_pcgrad_siamese_run_saves_every_task(joint_run) -> None:
    meta = RunDir(joint_run.dir).meta()
    assert meta["tasks"] == STUDY and meta["pairs"] == "siamese" and meta["settings"]["surgery"] == "pcgrad"
    assert len(joint_run.history) == 2 and all(set(h["dev"]) == set(STUDY) for h in joint_run.history)
    heads = load_file(joint_run.dir / HEADS)
    assert {k.rsplit(".", 1)[0] for k in heads} == {"heads.sst", "heads.quora", "embedding.linear"}


def test_contrastive_losses_need_sentence_embeddings(tmp_path: Path, tiny_prepared: Path, tiny_params) -> None:
    settings = tiny_params.replace(epochs=1, steps_per_epoch=2, contrastive="mnrl")
    with pytest.raises(UserError, match="^contrastive losses train sentence embeddings: use them in a siamese phase"):
        train_tiny(settings, STUDY, "cross", tiny_prepared, tmp_path / "run")
    assert not (tmp_path / "run").exists()
