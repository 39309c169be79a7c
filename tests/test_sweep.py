"""benchmarks/specialist_sweep.py: settings parsing, the paired summary, and a tiny real sweep;
benchmarks/seed_ensemble.py: its averaging and scoring; benchmarks/cpu_attention.py: a tiny run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks import cpu_attention, seed_ensemble
from benchmarks import specialist_sweep as sweep


def test_settings_parse_to_typed_overrides() -> None:
    assert sweep.overrides("default") == {}
    assert sweep.overrides("lr=2e-4,epochs=2,match_multitask_steps=false,pooling=mean") == {
        "lr": 2e-4, "epochs": 2, "match_multitask_steps": False, "pooling": "mean",
    }
    with pytest.raises(SystemExit, match="expected key=value"):
        sweep.overrides("lr")


def test_summary_compares_each_setting_on_the_defaults_seeds_only() -> None:
    runs = [
        {"task": "sst", "setting": "default", "seed": 1, "dev": [0.50]},
        {"task": "sst", "setting": "default", "seed": 2, "dev": [0.40]},
        {"task": "sst", "setting": "default", "seed": 3, "dev": [0.60]},
        {"task": "sst", "setting": "lr=1e-3", "seed": 1, "dev": [0.30, 0.55]},  # the run keeps its best epoch
        {"task": "sst", "setting": "lr=1e-3", "seed": 2, "dev": [0.42]},
        {"task": "sst", "setting": "lr=1e-3", "seed": 9, "dev": [0.10]},  # no default run to pair with
    ]
    rows = {line.split()[1]: line for line in sweep.summary(runs).splitlines()[1:]}
    assert "0.5000" in rows["default"] and "pt" not in rows["default"]
    # Paired on seeds 1 and 2: (+0.05 + 0.02) / 2; the unpaired means would say -17.7 points.
    assert "+3.50 pt" in rows["lr=1e-3"] and "0.3567" in rows["lr=1e-3"]


@pytest.mark.usefixtures("one_thread")
def test_a_sweep_run_trains_in_a_temporary_directory(tiny_checkpoint: Path, tiny_prepared: Path, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prepared").symlink_to(tiny_prepared)
    params = {"checkpoint": str(tiny_checkpoint), "batch_size": 8, "eval_batch_size": 16, "max_length": 32}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    run = sweep.train("sts", "epochs=2,lr=1e-3", seed=3)
    assert run["task"] == "sts" and run["setting"] == "epochs=2,lr=1e-3" and run["seed"] == 3
    assert len(run["dev"]) == 2 and all(-1 <= r <= 1 for r in run["dev"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "params.yaml"]  # nothing written here


def test_seed_ensemble_averages_probabilities_then_scores_them() -> None:
    labels = {"sst": np.array([0.0, 1.0]), "quora": np.array([1.0, 0.0]), "sts": np.array([0.0, 5.0, 2.5])}
    a = {"sst": np.array([[0.6, 0.4, 0, 0, 0]] * 2), "quora": np.array([0.9, 0.6]), "sts": np.array([1.0, 4.0, 2.0])}
    b = {"sst": np.array([[0.2, 0.8, 0, 0, 0]] * 2), "quora": np.array([0.3, 0.2]), "sts": np.array([0.0, 5.0, 3.0])}
    # Mean SST probabilities [0.4, 0.6, ...] -> class 1 twice: 1 of 2 right. Mean paraphrase
    # probabilities 0.6 / 0.4 -> both right (a alone gets 1 of 2). Mean STS 0.5 / 4.5 / 2.5: r = 1.
    # Overall (0.5 + 1 + (1 + 1) / 2) / 3.
    assert seed_ensemble.scores(seed_ensemble.average([a, b]), labels) == "SST 0.5000  Quora 1.0000  STS 1.0000  overall 0.8333"
    assert seed_ensemble.scores(a, labels).startswith("SST 0.5000  Quora 0.5000")


def test_seed_ensemble_without_committed_specialists_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"specialist.sst.dev_outputs.safetensors not found: run `dvc repro` first"):
        seed_ensemble.dev_probabilities(tmp_path)


def test_cpu_attention_benchmark_times_every_shape(monkeypatch, capsys) -> None:
    tiny = "--batch 2 --heads 2 --head-dim 4 --lengths 5 9 --reps 2 --calls 1"
    monkeypatch.setattr(sys, "argv", ["cpu_attention.py", *tiny.split()])
    cpu_attention.main()
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[:2] for row in rows] == [["bf16", "5"], ["bf16", "9"], ["fp32", "5"], ["fp32", "9"]]
    assert all(float(x.rstrip("x")) > 0 for row in rows for x in row[2:6])  # times and SDPA/chunked
    assert all(float(x) >= 0 for row in rows for x in row[6:]) and all(len(row) == 9 for row in rows)  # errors
