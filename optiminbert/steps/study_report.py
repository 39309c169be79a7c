"""The multitask-methods study's last steps (study/dvc.yaml): what a step of each variant costs,
and the report."""

from __future__ import annotations

from typing import Any, Mapping

from optiminbert import study
from optiminbert.atomic import write_json_atomic
from optiminbert.paths import MODELS, PREPARED, STUDY
from optiminbert.study import report, timing


def time_variants(tree: Mapping[str, Any]) -> None:
    write_json_atomic(timing.step_costs(tree, study.load(), PREPARED), STUDY / "timings.json")


def study_report() -> str:
    return report.write_report(study.load(), STUDY, MODELS / study.PHASE)
