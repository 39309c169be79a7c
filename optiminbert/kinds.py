"""Task kinds: what a task's raw model output means, declared once per kind.

A kind turns raw outputs into predictions, probabilities (what prediction files hold and an
ensemble averages) and a dev score, and names the loss each pair design trains it with. The
tasks (``data.TASKS``) each name their kind: sentiment is ``classification``, paraphrase
``binary``, similarity ``regression``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr


class TaskKind:
    name: str
    metric: str  # "acc" | "pearson"
    losses: dict[str, str]  # pair design -> loss name (losses.LOSSES)

    def label_range(self, num_classes: int) -> tuple[float, float, bool]:
        """Valid gold labels: lowest, highest, and whether they must be whole numbers."""
        raise NotImplementedError

    def probabilities(self, raw: torch.Tensor) -> np.ndarray:
        """What prediction files hold and an ensemble averages."""
        raise NotImplementedError

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Predictions from ``probabilities`` (or from an ensemble's mean of them)."""
        raise NotImplementedError

    def predictions(self, raw: torch.Tensor) -> np.ndarray:
        return self.decide(self.probabilities(raw))

    def confidence(self, raw: torch.Tensor) -> np.ndarray:
        """How sure the model is of its prediction (for 'most confident errors')."""
        return np.ones(len(raw))

    def score(self, predictions: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(predictions == labels.astype(np.int64)))

    def normalised(self, score: float) -> float:
        """The score on [0, 1], as the CS224N leaderboard averages it."""
        return score

    def table(self, ids: list[str], probs: np.ndarray) -> tuple[list[str], list[list]]:
        """A prediction file's header and rows: id, prediction, and the probabilities."""
        raise NotImplementedError

    def read(self, frame: pd.DataFrame) -> np.ndarray | None:
        """``probabilities`` back from a prediction file's columns; None if it lacks them."""
        raise NotImplementedError

    def readable(self, raw: torch.Tensor, class_names: tuple[str, ...]) -> dict[str, object]:
        """What ``optiminbert predict`` shows for each input beside its id."""
        raise NotImplementedError

    def soft_targets(self, raw: torch.Tensor, temperature: float) -> torch.Tensor:
        """Several teachers' raw outputs (teachers, examples, ...) as one soft target per example,
        (examples, k): their mean in probability space, as an ensemble averages."""
        raise NotImplementedError

    def distillation_loss(self, raw: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
        """How far a student's raw outputs are from the teachers' soft targets."""
        raise NotImplementedError

    def divergence(self, raw: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """How far apart two raw outputs for the same examples are, averaged over them (SMART's
        ℓ_s, ``smart.py``): symmetric in its arguments, zero where they agree."""
        raise NotImplementedError


class Classification(TaskKind):
    name, metric = "classification", "acc"
    losses = {"cross": "cross_entropy", "siamese": "cross_entropy"}

    def label_range(self, num_classes: int) -> tuple[float, float, bool]:
        return 0.0, float(num_classes - 1), True

    def probabilities(self, raw: torch.Tensor) -> np.ndarray:
        return raw.float().softmax(-1).numpy()

    def decide(self, probs: np.ndarray) -> np.ndarray:
        return probs.argmax(-1)

    def predictions(self, raw: torch.Tensor) -> np.ndarray:
        return raw.argmax(-1).numpy()  # the logits' argmax: no softmax rounding between close classes

    def confidence(self, raw: torch.Tensor) -> np.ndarray:
        return self.probabilities(raw).max(-1)

    def table(self, ids, probs):
        header = ["id", "prediction"] + [f"prob_{c}" for c in range(probs.shape[1])]
        return header, [[i, int(y), *(f"{q:.5f}" for q in row)] for i, y, row in zip(ids, self.decide(probs), probs)]

    def read(self, frame):
        columns = [c for c in frame.columns if c.startswith("prob_")]
        return frame[columns].to_numpy(dtype=np.float64) if columns else None

    def readable(self, raw, class_names):
        predictions = self.predictions(raw)
        return {"prediction": predictions, "label": [class_names[i] for i in predictions],
                "probability": self.probabilities(raw).max(-1).round(4)}

    def soft_targets(self, raw, temperature):
        return (raw.float() / temperature).softmax(-1).mean(0)

    def distillation_loss(self, raw, targets, temperature):
        # Soft cross-entropy; T² keeps its gradients' scale as the temperature softens both sides.
        log_probs = (raw.float() / temperature).log_softmax(-1)
        return -(targets * log_probs).sum(-1).mean() * temperature**2

    def divergence(self, raw, other):
        # KL(p‖q) + KL(q‖p) = Σ_c (p_c − q_c)(log p_c − log q_c), and the log-probabilities differ
        # from the logits by a per-row constant that Σ_c (p_c − q_c) = 0 cancels.
        raw, other = raw.float(), other.float()
        return ((raw.softmax(-1) - other.softmax(-1)) * (raw - other)).sum(-1).mean()


class Binary(TaskKind):
    name, metric = "binary", "acc"
    losses = {"cross": "binary_cross_entropy", "siamese": "siamese_paraphrase"}

    def label_range(self, num_classes: int) -> tuple[float, float, bool]:
        return 0.0, 1.0, True

    def probabilities(self, raw: torch.Tensor) -> np.ndarray:
        return raw.float().sigmoid().numpy()

    def decide(self, probs: np.ndarray) -> np.ndarray:
        return (probs > 0.5).astype(np.int64)

    def predictions(self, raw: torch.Tensor) -> np.ndarray:
        return (raw > 0).long().numpy()  # the logit's sign: exact where a probability rounds to 0.5

    def confidence(self, raw: torch.Tensor) -> np.ndarray:
        probs = self.probabilities(raw)
        return np.maximum(probs, 1 - probs)

    def table(self, ids, probs):
        return ["id", "prediction", "probability"], [[i, int(y), f"{q:.5f}"] for i, y, q in zip(ids, self.decide(probs), probs)]

    def read(self, frame):
        return frame["probability"].to_numpy(dtype=np.float64) if "probability" in frame.columns else None

    def readable(self, raw, class_names):
        return {"prediction": self.predictions(raw), "probability": self.probabilities(raw).round(4)}

    def soft_targets(self, raw, temperature):
        return raw.float().sigmoid().mean(0)[:, None]  # the probability itself: no temperature

    def distillation_loss(self, raw, targets, temperature):
        return F.binary_cross_entropy_with_logits(raw.float(), targets[:, 0])

    def divergence(self, raw, other):
        # The symmetric KL of two Bernoulli distributions is (p − q)(logit p − logit q).
        raw, other = raw.float(), other.float()
        return ((raw.sigmoid() - other.sigmoid()) * (raw - other)).mean()


class Regression(TaskKind):
    name, metric = "regression", "pearson"
    losses = {"cross": "mse", "siamese": "cosine_similarity"}  # siamese: sts_loss's default (losses.STS_LOSSES)

    def label_range(self, num_classes: int) -> tuple[float, float, bool]:
        return 0.0, 5.0, False  # STS-B similarity is annotated on a 0-5 scale

    def probabilities(self, raw: torch.Tensor) -> np.ndarray:
        return raw.float().numpy()  # the score itself

    def decide(self, probs: np.ndarray) -> np.ndarray:
        return probs

    def score(self, predictions: np.ndarray, labels: np.ndarray) -> float:
        if np.std(predictions) == 0:
            return 0.0  # constant predictions carry no correlation
        return float(pearsonr(predictions, labels).statistic)

    def normalised(self, score: float) -> float:
        return (score + 1) / 2

    def table(self, ids, probs):
        return ["id", "prediction"], [[i, f"{y:.4f}"] for i, y in zip(ids, self.decide(probs))]

    def read(self, frame):
        return frame["prediction"].to_numpy(dtype=np.float64) if "prediction" in frame.columns else None

    def readable(self, raw, class_names):
        return {"prediction": self.predictions(raw).round(4)}

    def soft_targets(self, raw, temperature):
        return raw.float().mean(0)[:, None]  # the score itself: no temperature

    def distillation_loss(self, raw, targets, temperature):
        high = self.label_range(1)[1]  # on the 0..1 scale, as the gold loss measures it
        return F.mse_loss(raw.float() / high, targets[:, 0] / high)

    def divergence(self, raw, other):
        high = self.label_range(1)[1]  # the paper's squared loss, on the 0..1 scale the gold loss measures
        return F.mse_loss(raw.float() / high, other.float() / high)


KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (Classification(), Binary(), Regression())}
