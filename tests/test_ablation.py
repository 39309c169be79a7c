"""The loss ablation (ablation.py, steps/ablation.py): its arithmetic and its error for a missing run
(fake run.json files), and what its training step trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optiminbert import ablation
from optiminbert.paths import ABLATION
from optiminbert.steps import ablation as ablation_step
from optiminbert.errors import UserError


def fake_run(directory: Path, task: str, scores: list[float], seconds: float = 10.0) -> None:
    directory.mkdir(parents=True)
    history = [{"dev": {task: s}, "selection": s, "train_seconds": seconds} for s in scores]
    (directory / "run.json").write_text(json.dumps({"history": history}))


def test_each_loss_is_set_beside_the_defaults_selected_epoch(tmp_path: Path) -> None:
    for task, base in (("quora", 0.80), ("sts", 0.50)):
        fake_run(tmp_path / "specialist" / task, task, [base - 0.1, base], seconds=100)  # epoch 2 selected
        fake_run(tmp_path / "ablation/mnrl/models/specialist" / task, task, [base + 0.08])
        fake_run(tmp_path / "ablation/gist/models/specialist" / task, task, [base - 0.05])
    text = ablation.write_report(tmp_path / "ablation", tmp_path / "specialist")
    results = json.loads((tmp_path / "ablation/metrics.json").read_text())
    assert results["quora"]["none"] == {"dev": 0.8}  # times are no metric: they vary with the machine
    assert json.loads((tmp_path / "ablation/timings.json").read_text())["quora"]["none"] == 200.0
    assert results["quora"]["mnrl"]["change"] == pytest.approx(0.08)
    assert results["quora"]["mnrl"]["relative_change"] == pytest.approx(0.1)
    assert results["sts"]["gist"]["relative_change"] == pytest.approx(-0.1)
    assert "| quora | paraphrase acc | 0.8000 | 0.8800 | 0.7500 | +10.0% | -6.2% |" in text
    assert (tmp_path / "ablation/report.md").read_text() == text


def test_a_missing_run_and_unknown_choices_are_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="run.json missing"):
        ablation.write_report(tmp_path / "ablation", tmp_path / "specialist")
    with pytest.raises(UserError, match="unknown contrastive loss 'none': choose one of mnrl, gist"):
        ablation_step.train_ablation({}, "none", "quora")
    # the sentiment specialist has no pairs: a contrastive task cannot change it
    with pytest.raises(UserError, match="unknown task 'sst': choose one of quora, sts"):
        ablation_step.train_ablation({}, "mnrl", "sst")


def test_an_ablation_run_is_the_default_specialist_plus_the_loss(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(ablation_step, "train", lambda *args, **kwargs: calls.append((args, kwargs)))
    tree = {"lr": 1e-4}
    ablation_step.train_ablation(tree, "gist", "sts")
    # the project's params tree, the specialist phase, one task; resumable, under ablation/gist/
    assert calls == [((tree, "specialist", "sts"), {"overrides": {"contrastive": "gist"}, "resume": True, "root": ABLATION / "gist"})]
