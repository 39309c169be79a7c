"""Turning raw model outputs into predictions and scores, and the leaderboard's overall score."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import pearsonr

from optiminbert.data import TASKS

METRIC_NAMES = {"sst": "acc", "cfimdb": "acc", "quora": "acc", "sts": "pearson"}


def to_predictions(task: str, raw: torch.Tensor) -> np.ndarray:
    """Class ids for sentiment, 0/1 for paraphrase, the 0..5 score for STS."""
    kind = TASKS[task].kind
    if kind == "classification":
        return raw.argmax(-1).numpy()
    if kind == "binary":
        return (raw > 0).long().numpy()
    return raw.float().numpy()


def confidence(task: str, raw: torch.Tensor) -> np.ndarray:
    """How sure the model is of its prediction (for 'most confident errors')."""
    kind = TASKS[task].kind
    if kind == "classification":
        return raw.float().softmax(-1).max(-1).values.numpy()
    if kind == "binary":
        p = raw.float().sigmoid()
        return torch.maximum(p, 1 - p).numpy()
    return np.ones(len(raw))


def task_score(task: str, predictions: np.ndarray, labels: np.ndarray) -> float:
    if METRIC_NAMES[task] == "pearson":
        if np.std(predictions) == 0:
            return 0.0  # constant predictions carry no correlation
        return float(pearsonr(predictions, labels).statistic)
    return float(np.mean(predictions == labels.astype(np.int64)))


def normalised(task: str, score: float) -> float:
    """Every metric on [0, 1]: Pearson r becomes (r + 1) / 2, as the CS224N leaderboard does."""
    return (score + 1) / 2 if METRIC_NAMES[task] == "pearson" else score


def overall(sst_acc: float, para_acc: float, sts_pearson: float) -> float:
    """The leaderboard's overall score: (SST acc + paraphrase acc + (STS r + 1) / 2) / 3."""
    return (sst_acc + para_acc + normalised("sts", sts_pearson)) / 3


def selection_score(scores: dict[str, float]) -> float:
    """What picks the best epoch: the mean normalised dev score over the trained tasks."""
    return float(np.mean([normalised(task, s) for task, s in scores.items()]))
