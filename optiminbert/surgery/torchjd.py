"""Multitask gradient methods from TorchJD (Quinton & Rey 2024, "Jacobian Descent for
Multi-Objective Optimization"; each method's own paper is cited in its TorchJD docstring).

TorchJD's weightings act on the tasks' Gramian, which our ``GramianStrategy`` already builds
from the global (all-reduced) per-task gradients, so each method here is data-parallel as PCGrad
is. The methods that need the whole Jacobian (GradDrop, Nash-MTL) are given it. A method's
randomness (GradDrop's, for one) is drawn from the run's seed and resumes with the run, without
touching the global random stream (which draws the dropout masks).

    upgrad       UPGrad (Quinton & Rey 2024): each task's gradient projected onto the dual cone
    mgda         MGDA (Désidéri 2012; Sener & Koltun 2018): the minimum-norm convex combination
    cagrad       CAGrad (Liu et al. 2021): the mean gradient, conflict-averse within radius c
    nash_mtl     Nash-MTL (Navon et al. 2022): the Nash bargaining solution
    aligned_mtl  Aligned-MTL (Senushkin et al. 2023): the Gramian's condition number aligned
    gradvac      GradVac (Wang et al. 2021): gradients pushed towards a running cosine target
    imtl_g       IMTL-G (Liu et al. 2021): equal projections of the update on every task
    dual_proj    DualProj: the mean gradient projected onto the dual cone
    graddrop     GradDrop (Chen et al. 2020): each coordinate keeps one sign, at random
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

from optiminbert.errors import UserError, first_line
from optiminbert.schema import positive, within
from optiminbert.surgery.base import GramianStrategy, JacobianStrategy, hyperparameter

_SOLVERS = "pip install 'optiminbert[solvers]'"


def _build(name: str, make: Callable[[], object]):
    try:
        return make()
    except ImportError as exc:  # TorchJD names the solver it lacks (cvxpy, quadprog...)
        missing = first_line(exc).split(". Install")[0]
        raise UserError(f"surgery {name} needs an optional solver ({missing}): {_SOLVERS}") from None


class _Seeded:
    """A TorchJD method, run with the global generator seeded from the run's own and put back."""

    def __init__(self, settings, tasks: int = 0):
        super().__init__(settings, tasks)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.method = _build(self.name, lambda: self.make(settings))

    def make(self, settings):
        """The TorchJD weighting or aggregator."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        # A stateful method (GradVac's running targets) keeps its state in its module's.
        return {"generator": self.generator.get_state(), "method": self.method.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.method.load_state_dict(state["method"])

    def seeded(self, matrix: torch.Tensor) -> torch.Tensor:
        seed = int(torch.randint(2**62, (1,), generator=self.generator))
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # cvxpy's advice on re-solving, every step
            torch.manual_seed(seed)
            return self.method(matrix)


class TorchJDWeighting(_Seeded, GramianStrategy):
    """A TorchJD ``Weighting`` of the Gramian."""

    def weights(self, gramian: torch.Tensor) -> torch.Tensor:
        return self.seeded(gramian)


class TorchJDAggregator(_Seeded, JacobianStrategy):
    """A TorchJD ``Aggregator`` of the whole Jacobian."""

    def combine(self, jacobian: torch.Tensor) -> torch.Tensor:
        return self.seeded(jacobian)


def _aggregation():
    import torchjd.aggregation

    return torchjd.aggregation


class UPGrad(TorchJDWeighting):
    name = "upgrad"

    def make(self, settings):
        return _aggregation().UPGradWeighting()


class MGDA(TorchJDWeighting):
    name = "mgda"

    def make(self, settings):
        return _aggregation().MGDAWeighting()


class CAGrad(TorchJDWeighting):
    name = "cagrad"
    settings = (hyperparameter("cagrad", "cagrad_c", 0.5, "radius of the ball around the mean gradient (0: the mean)",
                               check=within(0, 1, high_open=False)),)

    def make(self, settings):
        return _aggregation().CAGradWeighting(c=settings["cagrad_c"])


class AlignedMTL(TorchJDWeighting):
    name = "aligned_mtl"

    def make(self, settings):
        return _aggregation().AlignedMTLWeighting()


class GradVac(TorchJDWeighting):
    name = "gradvac"
    settings = (hyperparameter("gradvac", "gradvac_beta", 0.5, "decay of the running cosine targets",
                               check=within(0, 1, high_open=False)),)

    def make(self, settings):
        return _aggregation().GradVacWeighting(beta=settings["gradvac_beta"])

    def load_state_dict(self, state: dict) -> None:
        # The running targets are a buffer TorchJD creates on the first call, and re-creates
        # unless its (tasks, dtype) key matches: both are restored (TorchJD 0.18's layout).
        self.generator.set_state(state["generator"])
        targets = state["method"].get("_phi_t")
        if targets is not None:
            self.method._phi_t, self.method._state_key = targets, (targets.shape[0], targets.dtype)


class IMTLG(TorchJDWeighting):
    name = "imtl_g"

    def make(self, settings):
        return _aggregation().IMTLGWeighting()


class DualProj(TorchJDWeighting):
    name = "dual_proj"

    def make(self, settings):
        return _aggregation().DualProjWeighting()


class NashMTL(TorchJDAggregator):
    name = "nash_mtl"
    settings = (hyperparameter("nash_mtl", "nash_mtl_max_norm", 1.0, "the update's largest norm", check=positive),)

    def make(self, settings):
        return _aggregation().NashMTL(n_tasks=self.tasks, max_norm=settings["nash_mtl_max_norm"])


class GradDrop(TorchJDAggregator):
    name = "graddrop"

    def make(self, settings):
        return _aggregation().GradDrop()


METHODS = (UPGrad, MGDA, CAGrad, NashMTL, AlignedMTL, GradVac, IMTLG, DualProj, GradDrop)
