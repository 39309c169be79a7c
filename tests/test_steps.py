"""The pipeline's steps (steps/): which runs `train` makes with which settings, and what it
refuses before anything is read or written. (The training itself: test_training.py; the whole
pipeline: test_pipeline.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from optiminbert import settings
from optiminbert.errors import UserError
from optiminbert.steps import train as train_step

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tree() -> dict:
    return settings.load(ROOT / "params.yaml")


def test_plan_resolves_each_run_from_its_own_sections(tree):
    phase, runs = train_step.plan(tree, "specialist")
    assert phase.name == "specialist"
    by_name = {run.name: s for run, s in runs}
    assert list(by_name) == ["specialist-sst", "specialist-quora", "specialist-sts"]
    assert (by_name["specialist-sst"].batch_size, by_name["specialist-sst"].ema) == (16, 0.995)
    assert (by_name["specialist-quora"].head_lr, by_name["specialist-quora"].online_contrastive) == (3.0e-3, 0.1)
    assert (by_name["specialist-sts"].batch_size, by_name["specialist-sts"].head_lr) == (32, 1.0e-3)
    # each run records what it reads, no more
    assert "token_alignment" in by_name["specialist-quora"].used and "token_alignment" not in by_name["specialist-sts"].used


def test_plan_applies_overrides_to_every_run_and_skips_options_not_given(tree):
    _, runs = train_step.plan(tree, "baseline", "cfimdb", "finetune", {"lr": 2e-5, "dropout": None})
    ((run, s),) = runs
    assert run.name == "baseline-cfimdb-finetune"
    assert (s.lr, s.sources["lr"], s.dropout, s.batch_size) == (2e-5, "set", 0.3, 8)
    # an override beats the run's own section too
    _, runs = train_step.plan(tree, "baseline", "sst", "pretrain", {"lr": 2e-5})
    assert runs[0][1].lr == 2e-5 and runs[0][1].epochs == 10


@pytest.mark.parametrize(
    "phase, task, mode, overrides, message",
    [
        ("mtl", None, None, {"token_alignment": False},
         "token_alignment does not apply to mtl (token_alignment: the siamese paraphrase head also reads"),
        ("specialist", "sts", None, {"surgery": "pcgrad", "pooling": "mean"},
         "surgery, pooling do not apply to specialist-sts (surgery: how a joint run combines its tasks' gradients; pooling: "),
        ("baseline", "sst", "pretrain", {"head_lr": 0.1}, "head_lr does not apply to baseline-sst-pretrain"),
        ("mtl", None, None, {"surgery": "magic"}, "unknown surgery 'magic': choose one of none, pcgrad"),
        ("mtl_embed", "sst", None, None, "mtl_embed trains sst, quora and sts in one model"),
        ("baseline", "sst", "half", None, "unknown mode 'half'"),
    ],
)
def test_plan_refuses_what_would_change_nothing_or_train_the_wrong_runs(tree, phase, task, mode, overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        train_step.plan(tree, phase, task, mode, overrides)


def test_plan_accepts_an_override_some_of_the_runs_read(tree):
    # token_alignment: read by the quora specialist, not by the other two
    _, runs = train_step.plan(tree, "specialist", overrides={"token_alignment": False})
    assert [s.token_alignment for _, s in runs] == [False, False, False]


def test_train_refuses_before_reading_or_writing_anything(tmp_path, tree):
    with pytest.raises(UserError, match="mtl_embed trains sst, quora and sts in one model"):
        train_step.train(tree, "mtl_embed", task="sst", root=tmp_path)
    with pytest.raises(UserError, match="pooling does not apply to specialist-sst"):
        train_step.train(tree, "specialist", "sst", overrides={"pooling": "mean"}, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_runs_state_is_kept_outside_models(tmp_path):
    ((run, _),) = train_step.plan({}, "specialist", "quora")[1]
    assert train_step.resume_path(run, tmp_path) == tmp_path / ".resume" / "specialist-quora.pt"
