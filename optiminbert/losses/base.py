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
    # A loss that compares each example with the rest of its batch (in-batch negatives, the batch's
    # hard pairs): data-parallel ranks gather the whole batch for it instead of each scoring a slice.
    in_batch: bool = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "Loss":
        return cls()

    def at_step(self, step: int, total: int) -> None:
        """Called before each of a run's ``total`` steps (``step`` from 0), for a loss that
        changes over training (teacher annealing)."""
