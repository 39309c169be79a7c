"""Step ``prepare``: clean and tokenize every task's data (data/raw/, from ``fetch``) once, into data/prepared/."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from rich.console import Console

from optiminbert import prepared
from optiminbert.checkpoints import resolve_checkpoint
from optiminbert.data import TASKS
from optiminbert.model import BertConfig
from optiminbert.paths import PREPARED, RAW
from optiminbert.settings import Settings, resolve_step


def lengths(settings: Settings) -> dict[str, int]:
    """Each task's token limit: ``max_length``, and ``cfimdb_max_length`` for the long reviews."""
    return {task: settings.cfimdb_max_length if task == "cfimdb" else settings.max_length for task in TASKS}


def checked_settings(tree: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> Settings:
    """The step's settings; a wrong checkpoint or length fails here, before any data is read or written."""
    s = resolve_step(tree, "prepare", overrides)
    config = BertConfig.from_json(resolve_checkpoint(s.checkpoint) / "config.json")
    config.check_length("max_length", s.max_length)
    config.check_length("cfimdb_max_length", s.cfimdb_max_length)
    return s


def prepare(tree: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, source: str | Path = RAW) -> None:
    """Tokenize the task files in ``source`` (the fetch step's copy unless told) into data/prepared/."""
    s = checked_settings(tree, overrides)
    skipped = prepared.prepare(source, PREPARED, s.checkpoint, lengths(s))
    Console(stderr=True).print(skipped or "no rows skipped")
