"""Specialists: the sentence-embeddings architecture, one model per task trained on that task
alone, at equal data per task with the multitask phases (``match_multitask_steps``)."""

from __future__ import annotations

from typing import Callable

from optiminbert.phases.base import Phase, Run, STUDY_TASKS, check_choice
from optiminbert.schema import Setting


class SpecialistPhase(Phase):
    def runs(self) -> list[Run]:
        return [
            Run(self.name, f"{self.name}-{task}", (task,), self.pairs, (self.name, f"{self.name}.{task}"), f"{self.name}/{task}")
            for task in STUDY_TASKS
        ]

    def select(self, task: str | None = None, mode: str | None = None) -> list[Run]:
        runs = super().select(None, mode)
        if task is None:
            return runs
        check_choice("task", task, STUDY_TASKS)
        return [run for run in runs if run.tasks == (task,)]

    def adjust(self, run: Run, settings, train_size: Callable[[str], int]):
        if not settings["match_multitask_steps"] or settings["steps_per_epoch"]:
            return settings
        largest = max(train_size(t) for t in STUDY_TASKS)
        # One round-robin epoch of the joint phases: one pass over the largest task.
        return settings.replace(steps_per_epoch=-(-largest // settings["batch_size"]))


SPECIALIST = SpecialistPhase(
    name="specialist",
    title="Specialists",
    description="the embeddings architecture, one model per task",
    pairs="siamese",
    section={
        "match_multitask_steps": True,
        "contrastive": "none",
        "sts_loss": "cosine_similarity",
        "sst": {"batch_size": 16, "ema": 0.995},
        "quora": {"head_lr": 3.0e-3, "online_contrastive": 0.1},
    },
    settings=(
        Setting("match_multitask_steps", False,
                "one epoch is one pass over the largest task at the run's batch size: the examples one multitask epoch shows each task",
                applies=lambda shape: shape.phase == "specialist", top_level=False, sections=("specialist",)),
    ),
    paper=(0.518, 0.743, 0.616),
)
