"""The prepared (tokenized) data (prepared.py): byte-identical on every run, and over-long texts
cut to the length asked for and counted."""

from __future__ import annotations

import json
from pathlib import Path

from optiminbert.data import TASKS
from optiminbert.prepared import TaskSplit, prepare, split_path


def test_prepare_writes_the_same_bytes_every_time(tiny_data: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """DVC hashes data/prepared: a re-run that changed a byte would re-run every stage after it."""
    for run in ("first", "second"):
        prepare(tiny_data, tmp_path / run, str(tiny_checkpoint), {task: 32 for task in TASKS})
    first = sorted(p.name for p in (tmp_path / "first").iterdir())
    assert first == sorted(p.name for p in (tmp_path / "second").iterdir()) and any(n.endswith(".pt") for n in first)
    for name in first:
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes(), name


def test_overlong_texts_are_truncated_and_counted(tiny_prepared: Path) -> None:
    summary = json.loads((tiny_prepared / "summary.json").read_text())
    cfimdb = TaskSplit.load(split_path(tiny_prepared, "cfimdb", "train"))
    at_limit = int((cfimdb.lengths >= 32).sum())  # the fixture prepares with max_length 32
    assert summary["cfimdb-train"]["truncated"] == at_limit > 0  # reviews run to hundreds of tokens
    assert int(cfimdb.lengths.max()) == 32
