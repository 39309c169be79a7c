"""Dev scores (metrics.py): a task's score from its predictions, the leaderboard's overall score,
and the score that picks a run's best epoch, on arrays worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from optiminbert.metrics import overall, selection_score, study_metrics, task_score


def test_overall_and_selection_score_arithmetic() -> None:
    assert overall(0.5, 0.8, 0.6) == (0.5 + 0.8 + 0.8) / 3
    assert overall(1.0, 1.0, 1.0) == 1.0 and overall(0.0, 0.0, -1.0) == 0.0
    # The best epoch: the mean of the trained tasks' scores on [0, 1] (STS r 0.6 counts 0.8).
    assert selection_score({"sst": 0.5, "sts": 0.6}) == pytest.approx((0.5 + 0.8) / 2)
    assert selection_score({"quora": 0.25}) == 0.25
    metrics = study_metrics({"sst": 0.51234, "quora": 0.8, "sts": 0.6})
    assert metrics == {"sst_acc": 0.5123, "para_acc": 0.8, "sts_pearson": 0.6, "overall": round((0.51234 + 0.8 + 0.8) / 3, 4)}


def test_task_scores_on_tiny_arrays() -> None:
    labels = np.array([0.0, 1.0, 2.0, 1.0])
    assert task_score("sst", np.array([0, 1, 1, 1]), labels) == 0.75
    assert task_score("quora", np.array([1, 0]), np.array([1.0, 1.0])) == 0.5
    assert task_score("sts", np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])) == pytest.approx(1.0)
    assert task_score("sts", np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    # deviations (-1, 0, 1) and (-1, 1, 0): r = 1 / (√2 · √2)
    assert task_score("sts", np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])) == pytest.approx(0.5)
    assert task_score("sts", np.full(3, 2.5), np.array([1.0, 3.0, 2.0])) == 0.0  # constant: no correlation
