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


def probabilities(task: str, raw: torch.Tensor) -> np.ndarray:
    """Class probabilities (sentiment), the paraphrase probability, or the STS score itself:
    what prediction files hold and an ensemble averages."""
    kind = TASKS[task].kind
    if kind == "classification":
        return raw.float().softmax(-1).numpy()
    if kind == "binary":
        return raw.float().sigmoid().numpy()
    return raw.float().numpy()


def decide(task: str, probs: np.ndarray) -> np.ndarray:
    """``to_predictions`` for what ``probabilities`` returns (e.g. an ensemble's mean)."""
    kind = TASKS[task].kind
    if kind == "classification":
        return probs.argmax(-1)
    return (probs > 0.5).astype(np.int64) if kind == "binary" else probs


def confidence(task: str, raw: torch.Tensor) -> np.ndarray:
    """How sure the model is of its prediction (for 'most confident errors')."""
    kind = TASKS[task].kind
    if kind == "regression":
        return np.ones(len(raw))
    probs = probabilities(task, raw)
    return probs.max(-1) if kind == "classification" else np.maximum(probs, 1 - probs)


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
