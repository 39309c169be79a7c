"""Gradient strategies for multitask training (LibMTL's ``weighting/`` is the model):
each turns the per-task losses of one step into ``.grad`` on every parameter."""

from optiminbert.errors import UserError
from optiminbert.surgery.base import GradientStrategy, SumLosses
from optiminbert.surgery.pcgrad import PCGrad

STRATEGIES = {"none": SumLosses, "pcgrad": PCGrad}


def make_strategy(name: str, seed: int, tasks: int) -> GradientStrategy:
    """The strategy ``name`` for a run of ``tasks`` tasks: one task's loss is simply summed,
    since gradient surgery only means something between tasks (the name is checked anyway,
    so that a typo in a specialist's section does not pass unseen)."""
    if name not in STRATEGIES:
        raise UserError(f"unknown surgery {name!r}: choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name if tasks > 1 else "none"](seed=seed)


__all__ = ["GradientStrategy", "SumLosses", "PCGrad", "STRATEGIES", "make_strategy"]
