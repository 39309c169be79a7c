"""Dev scores: a task's score from its predictions, the leaderboard's overall score, and what
picks a run's best epoch."""

from __future__ import annotations

import numpy as np

from optiminbert.data import TASKS

# The metrics files' key for each study task's dev score.
METRIC_KEYS = {"sst": "sst_acc", "quora": "para_acc", "sts": "sts_pearson"}


def task_score(task: str, predictions: np.ndarray, labels: np.ndarray) -> float:
    return TASKS[task].kind.score(predictions, labels)


def overall(sst_acc: float, para_acc: float, sts_pearson: float) -> float:
    """The leaderboard's overall score: (SST acc + paraphrase acc + (STS r + 1) / 2) / 3."""
    return (sst_acc + para_acc + TASKS["sts"].kind.normalised(sts_pearson)) / 3


def selection_score(scores: dict[str, float]) -> float:
    """What picks the best epoch: the mean normalised dev score over the trained tasks."""
    return float(np.mean([TASKS[task].kind.normalised(s) for task, s in scores.items()]))


def study_metrics(scores: dict[str, float]) -> dict[str, float]:
    """A study phase's metrics: each task's dev score and the overall score, rounded as committed."""
    dev = {METRIC_KEYS[t]: round(scores[t], 4) for t in METRIC_KEYS}
    dev["overall"] = round(overall(scores["sst"], scores["quora"], scores["sts"]), 4)
    return dev
