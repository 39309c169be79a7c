"""The evaluation stage: dev scores, dev/test prediction files and the qualitative analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from optiminbert.atomic import write_csv_atomic, write_json_atomic, write_text_atomic
from optiminbert.data import TASKS
from optiminbert.errors import UserError
from optiminbert.metrics import METRIC_NAMES, confidence, decide, overall, probabilities, task_score, to_predictions
from optiminbert.phases import BASELINE_MODES, BASELINE_TASKS, PHASES, STUDY_TASKS, load_dev_outputs, load_run, runtime_for
from optiminbert.prepared import TaskSplit, split_path
from optiminbert.train import predict

METRIC_KEYS = {"sst": "sst_acc", "quora": "para_acc", "sts": "sts_pearson"}
SST_LABELS = ["0 very neg", "1 neg", "2 neutral", "3 pos", "4 very pos"]


def run_dirs(models_dir: str | Path, phase: str) -> dict[str, Path]:
    """Where each run of a phase lives, by the name its results are reported under."""
    models_dir = Path(models_dir)
    if phase == "baseline":
        return {f"{t}-{m}": models_dir / "baseline" / f"{t}-{m}" for t in BASELINE_TASKS for m in BASELINE_MODES}
    if PHASES[phase].joint:
        return {phase: models_dir / phase}
    return {task: models_dir / phase / task for task in STUDY_TASKS}


def score_run(run_dir: Path, prepared_dir: Path, p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Raw outputs on dev and test for every task of one trained run."""
    model, meta = load_run(run_dir)
    runtime = runtime_for(p)
    model.to(runtime.device)
    max_length = meta["params"]["max_length"]
    trained_dev = load_dev_outputs(run_dir, meta, runtime)
    results = {}
    for task in meta["tasks"]:
        results[task] = {}
        for split in ("dev", "test"):
            data = TaskSplit.load(split_path(prepared_dir, task, split))
            raw = trained_dev.get(task) if split == "dev" else None
            if raw is None or len(raw) != len(data):
                raw = predict(model, task, data, runtime, p["eval_batch_size"], max_length)
            results[task][split] = (data, raw)
    return results


def write_predictions(task: str, data: TaskSplit, raw: torch.Tensor, path: Path) -> None:
    """id, prediction, and what an ensemble averages: class probabilities (sentiment), the
    paraphrase probability, or the 0..5 score itself (STS)."""
    write_csv_atomic(*prediction_table(task, data.ids, probabilities(task, raw)), path)


def prediction_table(task: str, ids: list[str], probs: np.ndarray) -> tuple[list[str], list[list]]:
    predictions = decide(task, probs)
    kind = TASKS[task].kind
    if kind == "classification":
        header = ["id", "prediction"] + [f"prob_{c}" for c in range(probs.shape[1])]
        rows = [[i, int(y), *(f"{q:.5f}" for q in row)] for i, y, row in zip(ids, predictions, probs)]
    elif kind == "binary":
        header = ["id", "prediction", "probability"]
        rows = [[i, int(y), f"{q:.5f}"] for i, y, q in zip(ids, predictions, probs)]
    else:
        header = ["id", "prediction"]
        rows = [[i, f"{y:.4f}"] for i, y in zip(ids, predictions)]
    return header, rows


def read_probabilities(task: str, path: Path) -> tuple[list[str], np.ndarray]:
    if not path.is_file():
        raise UserError(f"{path}: predictions not found; evaluate that phase first (dvc repro evaluate)")
    frame = pd.read_csv(path, dtype={"id": str})
    kind = TASKS[task].kind
    columns = [c for c in frame.columns if c.startswith("prob_")] if kind == "classification" else (
        ["probability"] if kind == "binary" else ["prediction"]
    )
    if not columns or any(c not in frame.columns for c in columns):
        raise UserError(f"{path}: no probability columns; re-run its evaluation stage")
    values = frame[columns].to_numpy(dtype=np.float64)
    return frame["id"].tolist(), values if kind == "classification" else values[:, 0]


def evaluate_ensemble(members: list[str], prepared_dir: Path, out: Path) -> dict:
    """Average the phases' predictions (class and paraphrase probabilities, STS scores) and
    score the average like a phase: metrics/ensemble.json and predictions/ensemble/."""
    if not isinstance(members, list) or not all(isinstance(m, str) and m in PHASES for m in members) or len(set(members)) < 2:
        raise UserError(f"param ensemble.members must list two or more different phases of {', '.join(PHASES)}, got {members!r}")
    # Every member's file is read before anything is written: a missing or stale one leaves no
    # ensemble half made of this run's predictions and half of the last one's.
    averaged = {}
    for task in STUDY_TASKS:
        for split in ("dev", "test"):
            read = [read_probabilities(task, out / "predictions" / m / f"{task}-{split}.csv") for m in members]
            ids = read[0][0]
            if any(other_ids != ids for other_ids, _ in read[1:]):
                raise UserError(f"predictions of {', '.join(members)} for {task}-{split} list different ids; re-run their evaluation")
            averaged[task, split] = ids, np.mean([values for _, values in read], axis=0)
    dev_scores = {}
    for (task, split), (ids, probs) in averaged.items():
        write_csv_atomic(*prediction_table(task, ids, probs), out / "predictions" / "ensemble" / f"{task}-{split}.csv")
        if split == "dev":
            labels = TaskSplit.load(split_path(prepared_dir, task, "dev")).labels.numpy()
            dev_scores[task] = task_score(task, decide(task, probs), labels)
    dev = {METRIC_KEYS[t]: round(dev_scores[t], 4) for t in STUDY_TASKS}
    dev["overall"] = round(overall(dev_scores["sst"], dev_scores["quora"], dev_scores["sts"]), 4)
    metrics = {"dev": dev, "members": members}
    write_json_atomic(metrics, out / "metrics" / "ensemble.json")
    return metrics


def evaluate_phase(phase: str, models_dir: Path, prepared_dir: Path, out: Path, p: dict[str, Any]) -> dict:
    """Score a phase's runs; write predictions, metrics/<phase>.json and the analysis."""
    scored: dict[str, dict] = {}
    for name, run_dir in run_dirs(models_dir, phase).items():
        for task, splits in score_run(run_dir, prepared_dir, p).items():
            scored[name if phase == "baseline" else task] = splits
            for split, (data, raw) in splits.items():
                write_predictions(task, data, raw, out / "predictions" / phase / f"{name if phase == 'baseline' else task}-{split}.csv")
    dev_scores = {
        key: task_score(key.split("-")[0], to_predictions(key.split("-")[0], raw), data.labels.numpy())
        for key, splits in scored.items()
        for data, raw in [splits["dev"]]
    }
    if phase == "baseline":
        metrics = {
            task: {mode: {"dev_acc": round(dev_scores[f"{task}-{mode}"], 4)} for mode in BASELINE_MODES}
            for task in BASELINE_TASKS
        }
    else:
        dev = {METRIC_KEYS[t]: round(dev_scores[t], 4) for t in STUDY_TASKS}
        dev["overall"] = round(overall(dev_scores["sst"], dev_scores["quora"], dev_scores["sts"]), 4)
        metrics = {"dev": dev}
        data, raw = scored["sst"]["dev"]
        write_csv_atomic(
            ["actual", "predicted"],
            zip(data.labels.long().tolist(), to_predictions("sst", raw).tolist()),
            out / "plots" / "confusion" / f"{phase}-sst.csv",
        )
        write_text_atomic(analysis_markdown(phase, {t: scored[t]["dev"] for t in STUDY_TASKS}), out / "metrics" / "analysis" / f"{phase}.md")
    write_json_atomic(metrics, out / "metrics" / f"{phase}.json")
    return metrics


def analysis_markdown(phase: str, dev: dict[str, tuple[TaskSplit, torch.Tensor]], top: int = 5) -> str:
    """The report's qualitative analysis: confident errors, SST confusion, STS residuals."""
    lines = [f"# Error analysis: {phase} (dev)", ""]
    for task, (data, raw) in dev.items():
        predictions = to_predictions(task, raw)
        labels = data.labels.numpy()
        lines += [f"## {task}: most confident errors", ""]
        if METRIC_NAMES[task] == "pearson":
            error = np.abs(predictions - labels)
            order = np.argsort(-error)[:top]
            lines += ["| gold | predicted | sentence 1 | sentence 2 |", "|---|---|---|---|"]
            lines += [f"| {labels[i]:.1f} | {predictions[i]:.2f} | {_cell(data.texts[i][0])} | {_cell(data.texts[i][1])} |" for i in order]
        else:
            wrong = np.flatnonzero(predictions != labels.astype(np.int64))
            conf = confidence(task, raw)
            order = wrong[np.argsort(-conf[wrong], kind="stable")][:top]
            header = "| gold | predicted | confidence | " + " | ".join(TASKS[task].text_columns) + " |"
            lines += [header, "|" + "---|" * (3 + len(data.texts[0]))]
            lines += [
                f"| {int(labels[i])} | {predictions[i]} | {conf[i]:.2f} | " + " | ".join(_cell(t) for t in data.texts[i]) + " |"
                for i in order
            ]
        lines.append("")
    sst_data, sst_raw = dev["sst"]
    matrix = np.zeros((5, 5), dtype=int)
    for gold, pred in zip(sst_data.labels.long().tolist(), to_predictions("sst", sst_raw).tolist()):
        matrix[gold, pred] += 1
    lines += ["## SST confusion matrix (rows gold, columns predicted)", "", "| gold \\ pred | " + " | ".join(SST_LABELS) + " |", "|---" * 6 + "|"]
    lines += [f"| {SST_LABELS[g]} | " + " | ".join(str(x) for x in matrix[g]) + " |" for g in range(5)]
    sts_data, sts_raw = dev["sts"]
    gold, pred = sts_data.labels.numpy(), to_predictions("sts", sts_raw)
    lines += ["", "## STS residuals (predicted − gold) by gold score", "", "| gold | n | mean residual | mean |residual| |", "|---|---|---|---|"]
    for low in range(5):
        sel = (gold >= low) & ((gold < low + 1) if low < 4 else (gold <= 5))
        if sel.any():
            r = pred[sel] - gold[sel]
            lines.append(f"| {low}–{low + 1} | {sel.sum()} | {r.mean():+.2f} | {np.abs(r).mean():.2f} |")
    return "\n".join(lines) + "\n"


def _cell(text: str, limit: int = 160) -> str:
    text = text.replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"
