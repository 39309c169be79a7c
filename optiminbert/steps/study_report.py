"""The multitask-methods study's report as a step (study/dvc.yaml `report`)."""

from __future__ import annotations

from optiminbert import study
from optiminbert.paths import MODELS, STUDY
from optiminbert.study import report


def study_report() -> str:
    return report.write_report(study.load(), STUDY, MODELS / study.PHASE)
