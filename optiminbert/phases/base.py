"""What a phase is: a named set of training runs, its params section, and how its results are
reported. Each phase is one module; ``phases/__init__.py`` registers it, and the pipeline, the
evaluation, the report and the command line all read that registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from optiminbert.errors import UserError
from optiminbert.metrics import study_metrics
from optiminbert.schema import RunShape, Setting

STUDY_TASKS = ("sst", "quora", "sts")


@dataclass(frozen=True)
class Run:
    """One trained model: its tasks and pair design, the params sections it reads (in order), its
    directory under models/, and the name its curves, resume state and progress lines go by."""

    phase: str
    name: str
    tasks: tuple[str, ...]
    pairs: str  # "cross" | "siamese"
    sections: tuple[str, ...]
    directory: str
    frozen: bool = False
    label: str | None = None  # what its results are filed under, where not its task's name

    @property
    def shape(self) -> RunShape:
        return RunShape(self.phase, self.tasks, self.pairs, self.frozen)

    def output_name(self, task: str) -> str:
        """Its predictions' file stem for ``task``: ``predictions/<phase>/<stem>-<split>.csv``."""
        return self.label or task

    def path(self, models_dir: str | Path) -> Path:
        return Path(models_dir) / self.directory


@dataclass(frozen=True)
class Phase:
    """``section``: its params section's defaults (part of the embedded defaults tree);
    ``settings``: settings only this phase reads; ``paper``: the report's dev numbers for it,
    (SST acc, paraphrase acc, STS r); ``study``: compared on the three tasks (Table 2, the
    ensemble), as every phase but the baseline is."""

    name: str
    title: str
    description: str
    pairs: str
    section: dict[str, Any] = field(default_factory=dict)
    settings: tuple[Setting, ...] = ()
    paper: tuple[float, float, float] | None = None
    study: bool = True

    def runs(self) -> list[Run]:
        raise NotImplementedError

    def select(self, task: str | None = None, mode: str | None = None) -> list[Run]:
        """The runs ``optiminbert train <phase> [--task] [--mode]`` trains."""
        if mode not in (None, "finetune"):
            raise UserError(f"--mode {mode} is for baseline runs: {self.name} always fine-tunes the encoder")
        return self.runs()

    def adjust(self, run: Run, settings, train_size: Callable[[str], int]):
        """The run's settings once the prepared data is known (``train_size(task)``: its training
        examples); a phase may derive a setting from it."""
        return settings

    def training(self, run: Run, settings, train: dict, losses: dict) -> tuple[dict, dict, dict]:
        """The run's training splits and losses, as the phase trains them (a phase may put more
        beside the gold labels), and what of them a resumed run must find unchanged."""
        return train, losses, {}

    def metrics(self, scores: dict[str, float]) -> dict:
        """metrics/<phase>.json from the dev scores by output name (a study phase: by task)."""
        return {"dev": study_metrics(scores)}

    def run_for(self, task: str) -> Run:
        """The trained run that answers ``task`` (a fine-tuned one where there are both)."""
        runs = [run for run in self.runs() if task in run.tasks]
        if not runs:
            tasks = dict.fromkeys(t for run in self.runs() for t in run.tasks)
            check_choice(f"task for {self.name}", task, tasks)
        return next((run for run in runs if not run.frozen), runs[0])


class JointPhase(Phase):
    """One model for the three study tasks, trained round-robin."""

    def runs(self) -> list[Run]:
        return [Run(self.name, self.name, STUDY_TASKS, self.pairs, (self.name,), self.name)]

    def select(self, task: str | None = None, mode: str | None = None) -> list[Run]:
        if task is not None:  # ignoring it would train all three tasks, not the run asked for
            raise UserError(f"{self.name} trains sst, quora and sts in one model: a task (--task) is for baseline and specialist runs")
        return super().select(task, mode)


def check_choice(kind: str, value: str, allowed) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise UserError(f"unknown {kind} {value!r}: choose one of {', '.join(allowed)}")
