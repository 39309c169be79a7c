"""The contrastive-loss ablation's steps (ablation/dvc.yaml): a specialist trained with a
contrastive loss, and the ablation's report."""

from __future__ import annotations

from typing import Any, Mapping

from optiminbert import ablation
from optiminbert.paths import ABLATION, MODELS
from optiminbert.phases import check_choice
from optiminbert.steps.train import train


def train_ablation(tree: Mapping[str, Any], loss: str, task: str) -> None:
    """One specialist: the defaults plus ``loss`` as its extra round-robin task, into ablation/<loss>/."""
    check_choice("contrastive loss", loss, ablation.LOSSES)
    check_choice("task", task, ablation.PAIR_TASKS)
    train(tree, "specialist", task, overrides={"contrastive": loss}, resume=True, root=ABLATION / loss)


def ablation_report() -> str:
    return ablation.write_report(ABLATION, MODELS / "specialist")
