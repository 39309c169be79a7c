"""The study's cost harness as a step (study/dvc.yaml `timing`): its own script, so that an edit
to the report leaves the timings, the study's slowest step after the training, as they are."""

from __future__ import annotations

from typing import Any, Mapping

from optiminbert import study
from optiminbert.atomic import write_json_atomic
from optiminbert.paths import PREPARED, STUDY
from optiminbert.study import timing


def time_variants(tree: Mapping[str, Any]) -> None:
    write_json_atomic(timing.step_costs(tree, study.load(), PREPARED), STUDY / "timings.json")
