"""The multitask-methods study's training step (study/dvc.yaml): ``mtl_embed`` trained with one
variant. Its costs and its report are ``study_timing.py``'s and ``study_report.py``'s, which
training does not import (DVC re-trains no variant when either changes)."""

from __future__ import annotations

from typing import Any, Mapping

from optiminbert import study
from optiminbert.paths import STUDY
from optiminbert.phases import check_choice
from optiminbert.steps.train import train


def train_variant(tree: Mapping[str, Any], variant: str, seed: int | None = None) -> None:
    """The default mtl_embed run with the variant's changes, into study/runs/<variant>/; on
    another ``seed``, into study/seeds/<variant>-<seed>/ (the default too: the pairs' other half)."""
    declared = study.load()
    if seed is None:
        check_choice("variant", variant, declared.variants)
        overrides = declared.variants[variant]
    else:
        check_choice("variant to re-seed", variant, (study.DEFAULT, *declared.paired))
        overrides = {**declared.overrides(variant), "seed": seed}
    train(tree, study.PHASE, overrides=overrides, resume=True, root=study.run_root(STUDY, variant, seed))
