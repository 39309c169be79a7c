"""Round-robin multitask batching: every step takes one batch from each task.

An epoch is one pass over the task with the most batches; the smaller tasks cycle, each
reshuffled every time it runs out (and carried over from one epoch into the next). A single
task is the one-task case of the same schedule, so the baseline, the multitask phases and the
specialists all train through one loop.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

BatchOrder = Callable[[torch.Generator], list[torch.Tensor]]


class RoundRobin:
    def __init__(
        self, orders: dict[str, BatchOrder], num_batches: dict[str, int], seed: int, steps_per_epoch: int | None = None
    ):
        """``orders[task](generator)`` gives a freshly shuffled pass over the task as index
        batches; ``num_batches[task]`` is how many batches one pass has. ``steps_per_epoch``
        overrides the epoch length (specialists matching the multitask model's step count)."""
        self.orders = orders
        self.steps_per_epoch = steps_per_epoch or max(num_batches.values())
        self.generator = torch.Generator().manual_seed(seed)
        self._pending: dict[str, list[torch.Tensor]] = {task: [] for task in orders}

    def _next(self, task: str) -> torch.Tensor:
        if not self._pending[task]:
            self._pending[task] = self.orders[task](self.generator)[::-1]  # popped from the end
        return self._pending[task].pop()

    def epoch(self, done: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """The rest of an epoch of which ``done`` steps already ran (a resumed run)."""
        for _ in range(done, self.steps_per_epoch):
            yield {task: self._next(task) for task in self.orders}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "pending": {t: list(b) for t, b in self._pending.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._pending = {t: list(b) for t, b in state["pending"].items()}
