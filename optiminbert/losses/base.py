"""What every loss shares: one ``forward(prediction, labels)`` signature, where ``prediction`` is
what ``MultitaskBert.forward`` returns for the task, and its hyperparameters read from the run's
settings (each loss declares its own in ``settings``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from optiminbert.schema import Setting


class Loss(nn.Module):
    settings: tuple[Setting, ...] = ()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "Loss":
        return cls()

    def at_step(self, step: int, total: int) -> None:
        """Called before each of a run's ``total`` steps (``step`` from 0), for a loss that
        changes over training (teacher annealing)."""
