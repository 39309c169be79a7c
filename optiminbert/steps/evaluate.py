"""Steps ``evaluate`` (a phase's dev scores, predictions and analysis) and ``ensemble`` (the
phases' predictions averaged and scored)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from optiminbert import phases
from optiminbert.ensemble import evaluate_ensemble
from optiminbert.evaluation import evaluate_phase
from optiminbert.paths import MODELS, PREPARED
from optiminbert.settings import resolve_step


def evaluate(tree: Mapping[str, Any], phase: str) -> dict:
    if phase == "ensemble":
        return evaluate_ensemble(resolve_step(tree, "ensemble").members, PREPARED, Path("."))
    return evaluate_phase(phases.get(phase), MODELS, PREPARED, Path("."), resolve_step(tree, "evaluate"))
