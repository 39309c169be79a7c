"""Weight averaging: score and keep a moving average of the weights training went through,
not the last ones (Polyak & Juditsky 1992, in the exponential form common in fine-tuning).

The last steps of a short fine-tune on a few thousand examples still move the weights by
whatever their last batches asked for; the average smooths that out at the cost of one
update over the trained weights per step, a small share of a step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


class WeightAverage:
    """An exponential moving average of ``params`` that starts from their values now:
    after every optimizer step, average ← decay · average + (1 − decay) · weights.

    Only the parameters training updates are averaged (frozen ones never move)."""

    def __init__(self, params: list[nn.Parameter], decay: float):
        self.params = params
        self.average = [p.detach().clone() for p in params]
        self._update = get_ema_multi_avg_fn(decay)

    def update(self) -> None:
        self._update(self.average, self.params, None)  # torch's EMA function runs under no_grad

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model inside the block, the trained ones back after it."""
        trained = [p.detach().clone() for p in self.params]
        self._copy(self.params, self.average)
        try:
            yield
        finally:
            self._copy(self.params, trained)

    def state_dict(self) -> dict:
        return {"average": [a.cpu() for a in self.average]}

    def load_state_dict(self, state: dict) -> None:
        self._copy(self.average, state["average"])

    @staticmethod
    @torch.no_grad()
    def _copy(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
        for target, source in zip(targets, sources, strict=True):
            target.copy_(source)
