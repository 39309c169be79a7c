"""Scoring new text with a trained run: sentiment, paraphrase, similarity."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from optiminbert.batching import TokenizedTexts
from optiminbert.data import TASKS, clean_text
from optiminbert.errors import UserError
from optiminbert.inference import predict
from optiminbert.paths import MODELS
from optiminbert.phases import check_choice, get
from optiminbert.prepared import TaskSplit
from optiminbert.rundir import ENCODER, RunDir
from optiminbert.runtime import Runtime
from optiminbert.settings import Settings
from optiminbert.tokenizer import load_tokenizer


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


def run_dir_for(phase: str, task: str) -> Path:
    """The trained run that answers ``task`` for ``phase`` (a directory path is taken as is)."""
    if Path(phase).is_dir():
        check_choice("task", task, TASKS)  # the run's own tasks are checked once it is loaded
        return Path(phase)
    return get(phase).run_for(task).path(MODELS)


def predict_texts(run_dir: str | Path, task: str, ids: list[str], texts: list[tuple[str, ...]], settings: Settings) -> pd.DataFrame:
    """Predictions for new texts; ``settings`` gives the device, precision and batch size."""
    run = RunDir(run_dir)
    model, meta = run.load()
    if task not in meta["tasks"]:
        raise UserError(f"{run_dir} was trained for {', '.join(meta['tasks'])}, not {task}")
    max_length = run.settings(meta).max_length
    tokenizer = load_tokenizer(run.path / ENCODER, max_length)
    columns = [
        TokenizedTexts.from_lists([e.ids for e in tokenizer.encode_batch([t[c] for t in texts])])
        for c in range(len(texts[0]))
    ]
    split = TaskSplit(task, "input", ids, texts, None, columns)
    runtime = Runtime.from_settings(settings)
    raw = predict(model.to(runtime.device), task, split, runtime, settings.eval_batch_size, max_length)
    return pd.DataFrame({"id": ids, **TASKS[task].kind.readable(raw, TASKS[task].class_names)})
