"""Gradient strategies for multitask training, one per file behind one interface (LibMTL's
``weighting/`` is the model): each turns the per-task losses of one step into ``.grad`` on every
parameter. A joint phase picks one with its ``surgery`` setting; a one-task run sums."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optiminbert.schema import Setting, joint
from optiminbert.surgery.base import GradientStrategy, SumLosses, hyperparameter
from optiminbert.surgery.pcgrad import PCGrad
from optiminbert.surgery.torchjd import METHODS
from optiminbert.surgery.weighting import METHODS as WEIGHTINGS

STRATEGIES: dict[str, type[GradientStrategy]] = {cls.name: cls for cls in (SumLosses, PCGrad, *METHODS, *WEIGHTINGS)}

SETTINGS: tuple[Setting, ...] = (
    Setting("surgery", "none", "how a joint run combines its tasks' gradients", choices=tuple(STRATEGIES),
            applies=joint, top_level=False),
    *(s for cls in STRATEGIES.values() for s in cls.settings),
)


def make_strategy(settings: Mapping[str, Any], tasks: int) -> GradientStrategy:
    """The run's strategy: ``surgery``'s for a joint run, the summed loss for one task (gradient
    surgery only means something between tasks)."""
    return STRATEGIES[settings["surgery"] if tasks > 1 else "none"](settings, tasks)


__all__ = ["GradientStrategy", "SumLosses", "PCGrad", "STRATEGIES", "SETTINGS", "hyperparameter", "make_strategy"]
