"""The gradient-strategy interface and the plain summed loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import torch
from torch import nn

from optiminbert import distributed
from optiminbert.schema import Check, Setting, joint


class GradientStrategy:
    """Fills ``.grad`` of the shared and task parameters from one step's per-task losses.

    A loss is None where this rank's slice of that task's batch is empty (data-parallel runs);
    the gradients a strategy applies are summed over ranks (``distributed.py``).

    A strategy is built from the run's settings: ``seed``, and the hyperparameters it declares
    in ``settings`` (``hyperparameter`` makes one)."""

    name: str
    settings: tuple[Setting, ...] = ()

    def __init__(self, settings: Mapping[str, Any]):
        self.seed = settings["seed"]

    def backward(
        self,
        losses: dict[str, torch.Tensor],
        shared: list[nn.Parameter],
        task_params: dict[str, list[nn.Parameter]],
    ) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """What a resumed run needs to continue the same way (e.g. a random generator)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def hyperparameter(strategy: str, name: str, default: Any, help: str, check: Check | None = None) -> Setting:
    """A strategy's own setting: read by joint runs, recorded only where ``surgery`` names it."""
    used: Callable[[dict], bool] = lambda values: values["surgery"] == strategy
    return Setting(name, default, f"{strategy}: {help}", check=check, applies=joint, when=used)


class SumLosses(GradientStrategy):
    """The default: one backward pass of the summed task losses."""

    name = "none"

    def backward(self, losses, shared, task_params) -> None:
        present = [loss for loss in losses.values() if loss is not None]
        if present:
            torch.stack(present).sum().backward()
        distributed.all_reduce_gradients(shared + [p for own in task_params.values() for p in own])
