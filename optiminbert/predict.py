"""Scoring new text with a trained run: sentiment, paraphrase, similarity."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from optiminbert.batching import TokenizedTexts
from optiminbert.data import TASKS, clean_text
from optiminbert.errors import UserError
from optiminbert.inference import predict
from optiminbert.paths import MODELS
from optiminbert.phases import check_choice, get
from optiminbert.prepared import TaskSplit
from optiminbert.rundir import RunDir
from optiminbert.runtime import Runtime, configure_cpu, resolve_device, resolve_precision
from optiminbert.settings import Settings
from optiminbert.tokenizer import load_tokenizer


def read_inputs(path: str | Path, task: str) -> tuple[list[str], list[tuple[str, ...]]]:
    """ids and texts from a CSV/TSV with the task's text columns (and optionally ``id``).

    Tab-separated when the header has a tab (the CS224N files), else comma-separated. A row with
    more fields than the header is refused, not read: an unquoted comma in a text would
    otherwise shift every column after it (the text's first words read as an id)."""
    path = Path(path)
    columns = TASKS[task].text_columns
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            first = handle.readline()
            handle.seek(0)
            rows = list(csv.reader(handle, delimiter="\t" if "\t" in first else ",", strict=True))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read as CSV ({exc})".replace("\n", " ")) from exc
    header = [cell.strip() for cell in rows[0]] if rows else []
    missing = [c for c in columns if c not in header]
    if missing:
        raise UserError(f"{path}: needs column(s) {', '.join(missing)} for task {task}; found {', '.join(header)}")
    body = [row for row in rows[1:] if row]  # blank lines are no rows
    if not body:
        raise UserError(f"{path}: no rows to score below the header")
    ids, texts = [], []
    for number, row in enumerate(body, 1):
        if len(row) > len(header):
            raise UserError(f"{path} row {number}: {len(row)} fields, the header has {len(header)}; "
                            "quote a text that holds the separator")
        fields = dict(zip(header, row))  # a row short of fields leaves the rest empty
        text = tuple(clean_text(fields.get(c, "")) for c in columns)
        empty = [c for c, t in zip(columns, text) if not t]
        if empty:
            raise UserError(f"{path} row {number}: empty {', '.join(empty)}")
        ids.append(fields["id"].strip() if "id" in header else str(number - 1))
        texts.append(text)
    return ids, texts


def run_dir_for(phase: str, task: str) -> Path:
    """The trained run that answers ``task`` for ``phase`` (a directory path is taken as is)."""
    if Path(phase).is_dir():
        check_choice("task", task, TASKS)  # the run's own tasks are checked once it is loaded
        return Path(phase)
    return get(phase).run_for(task).path(MODELS)


class Predictor:
    """A trained run loaded once, for ``predict`` on new texts as often as needed. It touches no
    process-wide setting (threads, the allocator), unlike a pipeline step.

    >>> predictor = Predictor("models/specialist/sst")
    >>> predictor.predict("sst", ["A gorgeous, witty movie."])
    """

    def __init__(self, run_dir: str | Path, device: str = "auto", precision: str = "auto", batch_size: int = 128):
        self.run_dir = RunDir(run_dir)
        self.model, meta = self.run_dir.load()
        self.tasks = tuple(meta["tasks"])
        self.max_length = self.run_dir.settings(meta).max_length
        self.tokenizer = load_tokenizer(self.run_dir.encoder_path, self.max_length)
        target = resolve_device(device)
        self.runtime = Runtime(target, resolve_precision(precision, target))
        self.model.to(target)
        self.batch_size = batch_size

    def predict(self, task: str, texts: list[str] | list[tuple[str, ...]], ids: list[str] | None = None) -> pd.DataFrame:
        """One row per text (a pair task: a pair of texts): id, prediction and what it means."""
        if task not in self.tasks:
            raise UserError(f"{self.run_dir.path} was trained for {', '.join(self.tasks)}, not {task}")
        texts = [(t,) if isinstance(t, str) else tuple(t) for t in texts]
        width = len(TASKS[task].text_columns)
        if not texts or any(len(t) != width for t in texts):
            raise UserError(f"task {task} scores {'pairs of texts' if width == 2 else 'single texts'}: give {width} text(s) per item")
        ids = [str(i) for i in range(len(texts))] if ids is None else list(ids)
        columns = [
            TokenizedTexts.from_lists([e.ids for e in self.tokenizer.encode_batch([t[c] for t in texts])])
            for c in range(width)
        ]
        split = TaskSplit(task, "input", ids, texts, None, columns)
        raw = predict(self.model, task, split, self.runtime, self.batch_size, self.max_length)
        return pd.DataFrame({"id": ids, **TASKS[task].kind.readable(raw, TASKS[task].class_names)})


def predict_texts(run_dir: str | Path, task: str, ids: list[str], texts: list[tuple[str, ...]], settings: Settings) -> pd.DataFrame:
    """``optiminbert predict``: the run's predictions for new texts, at the settings' device,
    precision and batch size (the CPU configured for speed, as a pipeline step is)."""
    configure_cpu()
    predictor = Predictor(run_dir, settings.device, settings.precision, settings.eval_batch_size)
    return predictor.predict(task, texts, ids)
