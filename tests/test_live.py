"""Live metrics (live.py): what a run's DVCLive directory holds, and that scoring dev between
epochs' ends draws the curves without changing the run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import run_weights, train_tiny

import torch

pytestmark = pytest.mark.usefixtures("one_thread")


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_a_run_logs_its_settings_losses_and_dev_scores_as_it_trains(tmp_path, tiny_prepared, tiny_params) -> None:
    settings = tiny_params.replace(epochs=2, steps_per_epoch=5, eval_every=2)
    history = train_tiny(settings, ["sst", "sts"], "siamese", tiny_prepared, tmp_path / "run",
                         live_dir=tmp_path / "live")
    live = tmp_path / "live"
    assert yaml.safe_load((live / "params.yaml").read_text()) == json.loads(json.dumps(settings.record()))
    metrics = live / "plots" / "metrics"
    # Dev every 2 steps within an epoch and at each end (the global steps 5 and 10).
    dev = _rows(metrics / "dev" / "sst.tsv")
    assert dev[0] == ["step", "sst"] and [int(r[0]) for r in dev[1:]] == [2, 4, 5, 7, 9, 10]
    assert [float(r[1]) for r in dev[1:] if r[0] in ("5", "10")] == [h["dev"]["sst"] for h in history]
    assert [r[0] for r in _rows(metrics / "dev" / "sts.tsv")[1:]] == ["2", "4", "5", "7", "9", "10"]
    # The training loss at each logged point of the history (every LOG_EVERY steps and each epoch's end).
    losses = _rows(metrics / "train" / "sts_loss.tsv")
    assert losses[1:] == [[str(p["step"]), str(p["sts"])] for h in history for p in h["steps"]]
    # The latest values, which dvc exp show reads while a run trains; no wall-clock time anywhere.
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["step"] == 10 and summary["dev"] == history[-1]["dev"]
    assert set(summary["train"]) == {"sst_loss", "sts_loss"}
    assert not any("timestamp" in p.read_text() for p in metrics.rglob("*.tsv"))


def test_scoring_dev_between_epochs_ends_changes_nothing_it_trains(tmp_path, tiny_prepared, tiny_params) -> None:
    """The scores between epochs' ends are for the curves: the weights, the kept epoch and the
    dropout masks drawn are those of a run scored at epochs' ends only."""
    settings = tiny_params.replace(epochs=2, steps_per_epoch=5, ema=0.5)
    plain = train_tiny(settings, ["sst", "quora"], "siamese", tiny_prepared, tmp_path / "plain")
    scored = train_tiny(settings.replace(eval_every=2), ["sst", "quora"], "siamese", tiny_prepared, tmp_path / "scored")
    assert [h["dev"] for h in plain] == [h["dev"] for h in scored]
    assert [len(h["evals"]) for h in scored] == [2, 2] and all(h["evals"] == [] for h in plain)
    a, b = run_weights(tmp_path / "plain"), run_weights(tmp_path / "scored")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_trained_by_hand_touches_no_repository(tmp_path, tiny_prepared, tiny_params, monkeypatch) -> None:
    """Outside a DVC stage DVCLive would look for a DVC project and `dvc init` a plain git
    repository; our runs write their files only."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    train_tiny(tiny_params.replace(epochs=1, steps_per_epoch=2), ["sst"], "cross", tiny_prepared, tmp_path / "run",
               live_dir=tmp_path / "dvclive" / "run")
    assert (tmp_path / "dvclive" / "run" / "metrics.json").is_file()
    assert not (tmp_path / ".dvc").exists()
