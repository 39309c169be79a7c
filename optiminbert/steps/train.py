"""Step ``train``: a phase's runs, each with its settings, into models/ and dvclive/."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Mapping

from optiminbert import distributed, phases
from optiminbert.errors import UserError
from optiminbert.paths import LIVE, MODELS, PREPARED, RESUME
from optiminbert.phases import Phase, Run
from optiminbert.prepared import TaskSplit, split_path
from optiminbert.settings import SCHEMA, Settings, resolve, unused_overrides
from optiminbert.training import train_run


def resume_path(run: Run, root: Path = Path(".")) -> Path:
    return root / RESUME / f"{run.name}.pt"


def run_settings(tree: Mapping[str, Any], run: Run, overrides: Mapping[str, Any] | None = None) -> Settings:
    """One training run's settings: the top level, its sections in order, the overrides."""
    return resolve(tree, run.sections, overrides, run.shape)


def plan(tree: Mapping[str, Any], phase: str, task: str | None = None, mode: str | None = None,
         overrides: Mapping[str, Any] | None = None) -> tuple[Phase, list[tuple[Run, Settings]]]:
    """The runs ``optiminbert train`` would make, each with its settings; an override that none of
    them reads is refused (it would change nothing)."""
    chosen = phases.get(phase)
    runs = chosen.select(task, mode)
    unused = unused_overrides(overrides or {}, [run.shape for run in runs])
    if unused:
        names = ", ".join(run.name for run in runs)
        meanings = "; ".join(f"{k}: {SCHEMA[k].help}" for k in unused)
        raise UserError(f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply to {names} ({meanings})")
    return chosen, [(run, run_settings(tree, run, overrides)) for run in runs]


def train(tree: Mapping[str, Any], phase: str, task: str | None = None, mode: str | None = None,
          overrides: Mapping[str, Any] | None = None, resume: bool = False, root: Path = Path(".")) -> None:
    """A phase's runs (a baseline run: sst finetune unless told; a joint phase: its one model; the
    specialists: all three unless ``task``) into ``root``'s models/ and dvclive/ (the loss ablation
    trains under ablation/<loss>/); the prepared data is the project's."""
    chosen, runs = plan(tree, phase, task, mode, overrides)

    @cache
    def train_size(task: str) -> int:
        return len(TaskSplit.load(split_path(PREPARED, task, "train")))

    for run, settings in runs:
        settings = chosen.adjust(run, settings, train_size)
        train_run(run, settings, PREPARED, run.path(root / MODELS), resume_path(run, root), resume, chosen,
                  root / LIVE / run.name)
    # Only now: an interrupted stage re-run by DVC (which first clears models/) skips finished runs.
    if distributed.is_main():
        for run, _ in runs:
            resume_path(run, root).unlink(missing_ok=True)
