"""The evaluation stage: dev scores, dev/test prediction files and the qualitative analysis."""

from __future__ import annotations

from pathlib import Path

import torch

from optiminbert.analysis import analysis_markdown
from optiminbert.atomic import write_csv_atomic, write_json_atomic, write_text_atomic
from optiminbert.data import TASKS
from optiminbert.inference import predict
from optiminbert.metrics import study_metrics, task_score
from optiminbert.phases import STUDY_TASKS, Phase
from optiminbert.prepared import TaskSplit, check_tokenizer, split_path
from optiminbert.rundir import RunDir
from optiminbert.runtime import Runtime
from optiminbert.settings import Settings

SPLITS = ("dev", "test")


def score_run(run_dir: RunDir, prepared_dir: Path, settings: Settings) -> dict[str, dict[str, tuple[TaskSplit, torch.Tensor]]]:
    """Raw outputs on dev and test for every task of one trained run."""
    model, meta = run_dir.load()
    check_tokenizer(prepared_dir, run_dir.encoder_path)
    runtime = Runtime.from_settings(settings)
    model.to(runtime.device)
    max_length = run_dir.settings(meta).max_length
    trained_dev = run_dir.dev_outputs(meta, runtime)
    results: dict[str, dict] = {}
    for task in meta["tasks"]:
        results[task] = {}
        for split in SPLITS:
            data = TaskSplit.load(split_path(prepared_dir, task, split))
            raw = trained_dev.get(task) if split == "dev" else None
            if raw is None or len(raw) != len(data):
                raw = predict(model, task, data, runtime, settings.eval_batch_size, max_length)
            results[task][split] = (data, raw)
    return results


def write_predictions(task: str, data: TaskSplit, raw: torch.Tensor, path: Path) -> None:
    """id, prediction, and what an ensemble averages: class probabilities (sentiment), the
    paraphrase probability, or the 0..5 score itself (STS)."""
    kind = TASKS[task].kind
    write_csv_atomic(*kind.table(data.ids, kind.probabilities(raw)), path)


def evaluate_phase(phase: Phase, models_dir: Path, prepared_dir: Path, out: Path, settings: Settings) -> dict:
    """Score a phase's runs; write predictions, metrics/<phase>.json and, for a study phase, the
    analysis and the SST confusion plot."""
    scored: dict[str, tuple[str, dict]] = {}
    for run in phase.runs():
        for task, splits in score_run(RunDir(run.path(models_dir)), prepared_dir, settings).items():
            name = run.output_name(task)
            scored[name] = (task, splits)
            for split, (data, raw) in splits.items():
                write_predictions(task, data, raw, out / "predictions" / phase.name / f"{name}-{split}.csv")
    dev_scores = {
        name: task_score(task, TASKS[task].kind.predictions(raw), data.labels.numpy())
        for name, (task, splits) in scored.items()
        for data, raw in [splits["dev"]]
    }
    metrics = phase.metrics(dev_scores)
    if phase.study:
        data, raw = scored["sst"][1]["dev"]
        write_csv_atomic(
            ["actual", "predicted"],
            zip(data.labels.long().tolist(), TASKS["sst"].kind.predictions(raw).tolist()),
            out / "plots" / "confusion" / f"{phase.name}-sst.csv",
        )
        dev = {t: scored[t][1]["dev"] for t in STUDY_TASKS}
        write_text_atomic(analysis_markdown(phase.name, dev), out / "metrics" / "analysis" / f"{phase.name}.md")
    write_json_atomic(metrics, out / "metrics" / f"{phase.name}.json")
    return metrics


__all__ = ["evaluate_phase", "score_run", "write_predictions", "study_metrics"]
