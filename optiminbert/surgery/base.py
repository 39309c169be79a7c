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

    A step may come in micro-batches (``accumulate``): ``accumulate`` takes each micro-batch's
    losses and sums their gradients, per task where the method needs them apart; ``apply`` then
    combines the step's gradients once, as one whole batch's would be. A loss is None where a
    micro-batch, or this rank's slice of the batch, holds none of that task's examples; the
    gradients a strategy combines are summed over ranks first (``distributed.py``).

    A strategy is built from the run's settings (``seed``, and the hyperparameters it declares
    in ``settings``: ``hyperparameter`` makes one) and its number of tasks."""

    name: str
    family = "gradient method"  # what the study's report calls it
    settings: tuple[Setting, ...] = ()
    # A method that reads the losses' values (not only their gradients) says so: under fp16 the
    # loop then sets ``loss_scale``, what the gradient scaler multiplied them by, for it to divide
    # by (reading the scale waits for the device, so only such a method pays for it).
    reads_losses: bool = False
    loss_scale: float = 1.0

    def __init__(self, settings: Mapping[str, Any], tasks: int = 0):
        self.seed, self.tasks = settings["seed"], tasks

    def accumulate(
        self,
        losses: dict[str, torch.Tensor | None],
        shared: list[nn.Parameter],
        task_params: dict[str, list[nn.Parameter]],
    ) -> None:
        raise NotImplementedError

    def apply(self, shared: list[nn.Parameter], task_params: dict[str, list[nn.Parameter]]) -> None:
        """The step's ``.grad`` from what ``accumulate`` summed (here: summed over ranks as it is)."""
        distributed.all_reduce_gradients(shared + [p for own in task_params.values() for p in own])

    def backward(self, losses, shared, task_params) -> None:
        """A step of one batch."""
        self.accumulate(losses, shared, task_params)
        self.apply(shared, task_params)

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
    family = "summed loss"

    def accumulate(self, losses, shared, task_params) -> None:
        present = [loss for loss in losses.values() if loss is not None]
        if present:
            torch.stack(present).sum().backward()


class JacobianStrategy(GradientStrategy):
    """A method that combines the tasks' whole gradients on the shared parameters: each task's
    flattened gradient is one row of the Jacobian J (T, P), summed over micro-batches and ranks
    before ``combine`` sees it (methods act on the whole batch's global gradients, which conflict
    differently from a slice's). Each task's own head gets its own gradient, untouched."""

    jacobian: torch.Tensor | None = None  # the step's rows so far

    def combine(self, jacobian: torch.Tensor) -> torch.Tensor:
        """The update of the shared parameters (P,) from J (T, P)."""
        raise NotImplementedError

    def accumulate(self, losses, shared, task_params) -> None:
        # One (T, P) fp32 buffer that each task's flattened gradient is added into (a task that
        # does not reach a shared parameter adds zeros there).
        if self.jacobian is None:
            self.jacobian = torch.zeros(len(losses), sum(p.numel() for p in shared), device=shared[0].device)
        names = [task for task, loss in losses.items() if loss is not None]
        for row, task in zip(self.jacobian, losses):
            if losses[task] is None:
                continue
            own = task_params.get(task, [])
            grads = torch.autograd.grad(
                losses[task], shared + own, retain_graph=task != names[-1], allow_unused=True
            )
            distributed.flatten_grads(grads[: len(shared)], shared, out=row)
            for p, g in zip(own, grads[len(shared) :]):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g

    def apply(self, shared, task_params) -> None:
        jacobian, self.jacobian = self.jacobian, None
        distributed.all_reduce_gradients([p for own in task_params.values() for p in own])
        distributed.all_reduce_(jacobian)
        distributed.set_grads(shared, self.combine(jacobian))


class GramianStrategy(JacobianStrategy):
    """A method that needs only the tasks' Gramian G = J Jᵀ (T, T): it weighs the tasks, and the
    update is w @ J. T x T numbers instead of T full gradients keep the method itself cheap."""

    def weights(self, gramian: torch.Tensor) -> torch.Tensor:
        """w (T,) from G (T, T), in float64 on the CPU."""
        raise NotImplementedError

    def combine(self, jacobian: torch.Tensor) -> torch.Tensor:
        gramian = (jacobian @ jacobian.T).double().cpu()
        return self.weights(gramian).to(jacobian) @ jacobian
