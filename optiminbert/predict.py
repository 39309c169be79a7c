"""Scoring new text with a trained run: sentiment, paraphrase, similarity."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from optiminbert.batching import TokenizedTexts
from optiminbert.data import TASKS, clean_text
from optiminbert.errors import UserError
from optiminbert.metrics import probabilities, to_predictions
from optiminbert.phases import load_run, runtime_for
from optiminbert.prepared import TaskSplit
from optiminbert.tokenizer import load_tokenizer
from optiminbert.train import predict

SENTIMENT_NAMES = {
    "sst": ["very negative", "negative", "neutral", "positive", "very positive"],
    "cfimdb": ["negative", "positive"],
}


def read_inputs(path: str | Path, task: str) -> tuple[list[str], list[tuple[str, ...]]]:
    """ids and texts from a CSV/TSV with the task's text columns (and optionally ``id``)."""
    path = Path(path)
    columns = TASKS[task].text_columns
    try:
        # Tab-separated when the header has a tab (the CS224N files), else comma-separated: pandas'
        # sniffing (sep=None) takes a letter of a one-column header such as "sentence" for the separator.
        with path.open(encoding="utf-8-sig") as f:
            sep = "\t" if "\t" in f.readline() else ","
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"{path}: cannot read as CSV ({exc})".replace("\n", " ")) from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: needs column(s) {', '.join(missing)} for task {task}; found {', '.join(frame.columns)}")
    if frame.empty:
        raise UserError(f"{path}: no rows to score below the header")
    frame = frame.fillna("")  # a row short of fields leaves NaN even with keep_default_na=False
    texts = [tuple(clean_text(text) for text in row) for row in frame[list(columns)].itertuples(index=False)]
    for row, t in enumerate(texts, 1):
        empty = [c for c, text in zip(columns, t) if not text]
        if empty:
            raise UserError(f"{path} row {row}: empty {', '.join(empty)}")
    ids = frame["id"].tolist() if "id" in frame.columns else [str(i) for i in range(len(texts))]
    return ids, texts


def predict_texts(run_dir: str | Path, task: str, ids: list[str], texts: list[tuple[str, ...]], params: dict) -> pd.DataFrame:
    model, meta = load_run(run_dir)
    if task not in meta["tasks"]:
        raise UserError(f"{run_dir} was trained for {', '.join(meta['tasks'])}, not {task}")
    max_length = meta["params"]["max_length"]
    tokenizer = load_tokenizer(Path(run_dir) / "encoder", max_length)
    columns = [
        TokenizedTexts.from_lists([e.ids for e in tokenizer.encode_batch([t[c] for t in texts])])
        for c in range(len(texts[0]))
    ]
    split = TaskSplit(task, "input", ids, texts, None, columns)
    runtime = runtime_for(params)
    raw = predict(model.to(runtime.device), task, split, runtime, params["eval_batch_size"], max_length)
    out = pd.DataFrame({"id": ids, "prediction": to_predictions(task, raw)})
    kind = TASKS[task].kind
    if kind == "classification":
        out["label"] = [SENTIMENT_NAMES[task][i] for i in out["prediction"]]
        out["probability"] = probabilities(task, raw).max(-1).round(4)
    elif kind == "binary":
        out["probability"] = probabilities(task, raw).round(4)
    else:
        out["prediction"] = out["prediction"].round(4)
    return out
