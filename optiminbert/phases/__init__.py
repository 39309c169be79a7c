"""The study's phases, registered once: the pipeline, evaluation, report, plots and command line
read this table, so a phase added here (one module) is trained, scored and reported everywhere."""

from __future__ import annotations

from optiminbert.phases.base import STUDY_TASKS, JointPhase, Phase, Run, check_choice
from optiminbert.phases.baseline import BASELINE
from optiminbert.phases.distill import DISTILL
from optiminbert.phases.mtl import MTL
from optiminbert.phases.mtl_embed import MTL_EMBED
from optiminbert.phases.specialist import SPECIALIST
from optiminbert.schema import Setting

PHASES: dict[str, Phase] = {phase.name: phase for phase in (BASELINE, MTL, MTL_EMBED, SPECIALIST, DISTILL)}
STUDY_PHASES: tuple[str, ...] = tuple(name for name, phase in PHASES.items() if phase.study)
SETTINGS: tuple[Setting, ...] = tuple(s for phase in PHASES.values() for s in phase.settings)


def get(name: str) -> Phase:
    """A phase by name (``mtl-embed`` as ``mtl_embed``)."""
    name = name.replace("-", "_")
    check_choice("phase", name, PHASES)
    return PHASES[name]


__all__ = ["PHASES", "STUDY_PHASES", "STUDY_TASKS", "SETTINGS", "Phase", "JointPhase", "Run", "get", "check_choice"]
