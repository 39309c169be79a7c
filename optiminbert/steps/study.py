"""The multitask-methods study's steps (study/dvc.yaml): ``mtl_embed`` trained with one variant,
the step costs of them all, and the study's report."""

from __future__ import annotations

from typing import Any, Mapping

from optiminbert import study
from optiminbert.atomic import write_json_atomic
from optiminbert.paths import MODELS, PREPARED, STUDY
from optiminbert.phases import check_choice
from optiminbert.steps.train import train


def train_variant(tree: Mapping[str, Any], variant: str, seed: int | None = None) -> None:
    """The default mtl_embed run with the variant's one change, into study/<variant>/; on another
    ``seed``, into study/seeds/<variant>-<seed>/ (the default too: the pairs' other half)."""
    if seed is None:
        check_choice("variant", variant, study.VARIANTS)
        train(tree, study.PHASE, overrides=study.VARIANTS[variant], resume=True, root=STUDY / variant)
        return
    check_choice("variant to re-seed", variant, (study.BASELINE, *study.PAIRED))
    train(tree, study.PHASE, overrides={**study.overrides(variant), "seed": seed}, resume=True,
          root=study.seeded(STUDY, variant, seed))


def time_variants(tree: Mapping[str, Any], steps: int) -> None:
    write_json_atomic(study.step_costs(tree, steps, PREPARED), STUDY / "timings.json")


def study_report() -> str:
    return study.write_report(STUDY, MODELS / study.PHASE)
