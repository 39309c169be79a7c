"""Step ``teach``: the teacher phases' raw outputs on every training example, once, into
data/teachers/ (what the distilled student learns from)."""

from __future__ import annotations

from typing import Any, Mapping

from rich.console import Console

from optiminbert import phases
from optiminbert.inference import predict
from optiminbert.paths import MODELS, PREPARED, TEACHERS
from optiminbert.phases import STUDY_TASKS
from optiminbert.prepared import TaskSplit, check_tokenizer, split_path
from optiminbert.rundir import RunDir
from optiminbert.runtime import Runtime
from optiminbert.settings import Settings, resolve, section_values
from optiminbert.teachers import save_predictions, teachers_path

READS = ("device", "precision", "eval_batch_size", "teachers")


def teach_settings(tree: Mapping[str, Any]) -> Settings:
    """The top level's device, precision and batch size, and ``distill.teachers``: only the
    teachers, so that the student's own settings never make the teachers score again."""
    teachers = section_values(tree, "distill").get("teachers")
    settings = resolve(tree, (), {"teachers": teachers})
    return Settings(dict(settings), READS, settings.sources)


def teach(tree: Mapping[str, Any]) -> None:
    s = teach_settings(tree)
    runtime = Runtime.from_settings(s)
    console = Console(stderr=True)
    for task in STUDY_TASKS:
        split = TaskSplit.load(split_path(PREPARED, task, "train"))
        raw = []
        for teacher in s.teachers:
            run_dir = RunDir(phases.get(teacher).run_for(task).path(MODELS))
            model, meta = run_dir.load()
            check_tokenizer(PREPARED, run_dir.encoder_path)
            model.to(runtime.device)
            raw.append(predict(model, task, split, runtime, s.eval_batch_size, run_dir.settings(meta).max_length))
        save_predictions(raw, list(s.teachers), split, teachers_path(TEACHERS, task))
        console.print(f"teach: {task}: {len(split)} training examples scored by {', '.join(s.teachers)}")
