"""Step ``fetch``: the task files from the ``data`` source into data/raw/, inside the project."""

from __future__ import annotations

from typing import Any, Mapping

from optiminbert import data
from optiminbert.paths import RAW
from optiminbert.settings import resolve_step


def fetch(tree: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> None:
    s = resolve_step(tree, "fetch", overrides)
    data.fetch(s.data, RAW)
