"""The report's qualitative analysis of a phase on dev: its most confident errors per task, the
SST confusion matrix and the STS residuals by gold score (``metrics/analysis/<phase>.md``)."""

from __future__ import annotations

import numpy as np
import torch

from optiminbert.data import TASKS
from optiminbert.prepared import TaskSplit

SST_LABELS = ["0 very neg", "1 neg", "2 neutral", "3 pos", "4 very pos"]


def analysis_markdown(phase: str, dev: dict[str, tuple[TaskSplit, torch.Tensor]], top: int = 5) -> str:
    lines = [f"# Error analysis: {phase} (dev)", ""]
    for task, (data, raw) in dev.items():
        kind = TASKS[task].kind
        predictions = kind.predictions(raw)
        labels = data.labels.numpy()
        lines += [f"## {task}: most confident errors", ""]
        if kind.metric == "pearson":
            error = np.abs(predictions - labels)
            order = np.argsort(-error)[:top]
            lines += ["| gold | predicted | sentence 1 | sentence 2 |", "|---|---|---|---|"]
            lines += [f"| {labels[i]:.1f} | {predictions[i]:.2f} | {_cell(data.texts[i][0])} | {_cell(data.texts[i][1])} |" for i in order]
        else:
            wrong = np.flatnonzero(predictions != labels.astype(np.int64))
            conf = kind.confidence(raw)
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
    for gold, pred in zip(sst_data.labels.long().tolist(), TASKS["sst"].kind.predictions(sst_raw).tolist()):
        matrix[gold, pred] += 1
    lines += ["## SST confusion matrix (rows gold, columns predicted)", "", "| gold \\ pred | " + " | ".join(SST_LABELS) + " |", "|---" * 6 + "|"]
    lines += [f"| {SST_LABELS[g]} | " + " | ".join(str(x) for x in matrix[g]) + " |" for g in range(5)]
    sts_data, sts_raw = dev["sts"]
    gold, pred = sts_data.labels.numpy(), TASKS["sts"].kind.predictions(sts_raw)
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
