"""One setting, declared once: its name, type, default, meaning, valid values and which runs read it.

``settings.py`` gathers every ``Setting``: the core ones it declares itself, and those of each
gradient strategy and loss (declared beside the code that reads them), so a method's
hyperparameter is one declaration that reaches params.yaml, the CLI and the run's record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from optiminbert.errors import UserError


@dataclass(frozen=True)
class RunShape:
    """What a setting's applicability depends on: the run's phase, the tasks it trains, the pair
    design, whether the encoder is frozen."""

    phase: str
    tasks: tuple[str, ...]
    pairs: str  # "cross" | "siamese"
    frozen: bool = False

    @property
    def joint(self) -> bool:
        return len(self.tasks) > 1


Applies = Callable[[RunShape], bool]
Check = Callable[[Any], "str | None"]  # the problem with a value, or None


def training(shape: RunShape) -> bool:
    return True


def joint(shape: RunShape) -> bool:
    return shape.joint


def fine_tuning(shape: RunShape) -> bool:
    return not shape.frozen


def siamese(shape: RunShape) -> bool:
    return shape.pairs == "siamese"


@dataclass(frozen=True)
class Setting:
    """``applies``: whether a run of that shape reads it (structurally, whatever the values; a
    training stage in dvc.yaml lists exactly these). ``when``: a further condition on the run's
    other values (e.g. ``contrastive`` is ``gist``): only then is it recorded as used.
    ``top_level`` False: set per phase, in its params section (``surgery``); ``sections``: the
    only sections it may stand in (``prepare`` for ``cfimdb_max_length``)."""

    name: str
    default: Any
    help: str
    check: Check | None = None
    choices: tuple[str, ...] | None = None
    applies: Applies | None = training
    when: Callable[[dict], bool] | None = None
    top_level: bool = True
    sections: tuple[str, ...] = ()

    @property
    def kind(self) -> type:
        return type(self.default)

    def validate(self, value: Any, where: str = "") -> Any:
        """The value, checked; a one-line ``UserError`` naming the setting (and ``where``) if not."""
        label = f"param {self.name}{where}"
        kind = self.kind
        if kind is bool and not isinstance(value, bool):
            raise UserError(f"{label} must be true or false, got {value!r}")
        if kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{label} must be a number, got {value!r}")
            if kind is int and not isinstance(value, int):
                raise UserError(f"{label} must be a whole number, got {value!r}")
            if not math.isfinite(value):
                raise UserError(f"{label} must be a finite number, got {value!r}")
        if kind is str and not isinstance(value, str):
            raise UserError(f"{label} must be text, got {value!r}")
        if kind is list and not isinstance(value, list):
            raise UserError(f"{label} must be a list, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise UserError(f"unknown {self.name} {value!r}{where}: choose one of {', '.join(self.choices)}")
        problem = self.check(value) if self.check else None
        if problem:
            raise UserError(f"{label} must be {problem}, got {value!r}")
        return value


def positive(value: float) -> str | None:
    return None if value > 0 else "positive"


def _bound(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def at_least(low: float) -> Check:
    return lambda value: None if value >= low else f">= {_bound(low)}"


def within(low: float, high: float, high_open: bool = True, note: str = "") -> Check:
    def check(value: float) -> str | None:
        inside = low <= value < high if high_open else low <= value <= high
        return None if inside else f"in [{_bound(low)}, {_bound(high)}{')' if high_open else ']'}{note}"

    return check
