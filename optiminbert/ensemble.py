"""The ensemble: the phases' predictions averaged (class and paraphrase probabilities, STS
scores) and scored like a phase, into metrics/ensemble.json and predictions/ensemble/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from optiminbert.atomic import write_csv_atomic, write_json_atomic
from optiminbert.data import TASKS
from optiminbert.errors import UserError
from optiminbert.metrics import study_metrics, task_score
from optiminbert.phases import STUDY_TASKS
from optiminbert.prepared import TaskSplit, split_path

SPLITS = ("dev", "test")


def read_probabilities(task: str, path: Path) -> tuple[list[str], np.ndarray]:
    if not path.is_file():
        raise UserError(f"{path}: predictions not found; evaluate that phase first (dvc repro evaluate)")
    frame = pd.read_csv(path, dtype={"id": str})
    values = TASKS[task].kind.read(frame)
    if values is None:
        raise UserError(f"{path}: no probability columns; re-run its evaluation stage")
    return frame["id"].tolist(), values


def evaluate_ensemble(members: list[str], prepared_dir: Path, out: Path) -> dict:
    # Every member's file is read before anything is written: a missing or stale one leaves no
    # ensemble half made of this run's predictions and half of the last one's.
    averaged = {}
    for task in STUDY_TASKS:
        for split in SPLITS:
            read = [read_probabilities(task, out / "predictions" / m / f"{task}-{split}.csv") for m in members]
            ids = read[0][0]
            if any(other_ids != ids for other_ids, _ in read[1:]):
                raise UserError(f"predictions of {', '.join(members)} for {task}-{split} list different ids; re-run their evaluation")
            averaged[task, split] = ids, np.mean([values for _, values in read], axis=0)
    dev_scores = {}
    for (task, split), (ids, probs) in averaged.items():
        kind = TASKS[task].kind
        write_csv_atomic(*kind.table(ids, probs), out / "predictions" / "ensemble" / f"{task}-{split}.csv")
        if split == "dev":
            labels = TaskSplit.load(split_path(prepared_dir, task, "dev")).labels.numpy()
            dev_scores[task] = task_score(task, kind.decide(probs), labels)
    metrics = {"dev": study_metrics(dev_scores), "members": members}
    write_json_atomic(metrics, out / "metrics" / "ensemble.json")
    return metrics
