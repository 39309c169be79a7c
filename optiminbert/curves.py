"""Learning curves for `dvc plots`, from a run's per-epoch history."""

from __future__ import annotations

from pathlib import Path

from optiminbert.atomic import write_csv_atomic


def write_curves(history: list[dict], plots_dir: str | Path, name: str) -> None:
    """Per epoch (train loss, dev score per task) into ``curves/<name>.csv``, and the training
    loss every few steps into ``steps/<name>.csv``."""
    tasks = list(history[0]["dev"])
    header = ["epoch"] + [f"{t}_loss" for t in tasks] + [f"{t}_dev" for t in tasks]
    rows = [
        [h["epoch"]] + [round(h["train_loss"][t], 5) for t in tasks] + [round(h["dev"][t], 5) for t in tasks]
        for h in history
    ]
    write_csv_atomic(header, rows, Path(plots_dir) / "curves" / f"{name}.csv")
    trained = list(history[0]["train_loss"])  # the dev tasks, and the contrastive task if any
    steps = [[s["step"]] + [round(s[t], 5) for t in trained] for h in history for s in h["steps"]]
    write_csv_atomic(["step"] + [f"{t}_loss" for t in trained], steps, Path(plots_dir) / "steps" / f"{name}.csv")
