"""Reading params.yaml: shared hyperparameters at the top level, per-stage sections on top.

A stage's effective settings are the top-level values overlaid by its sections, in order
(e.g. ``baseline.pretrain`` then ``baseline.cfimdb``), so ``dvc exp run -S lr=2e-5`` reaches
every stage that does not set its own ``lr``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from optiminbert.errors import UserError

# The embedded defaults: what a run uses when params.yaml does not say otherwise.
DEFAULTS: dict[str, Any] = {
    "checkpoint": "default",
    "data": "../shared/data/cs224n",
    "device": "auto",
    "precision": "auto",
    "seed": 11711,
    "max_length": 128,
    "lr": 5e-5,
    "head_lr": 0.0,
    "epochs": 1,
    "batch_size": 32,
    "eval_batch_size": 128,
    "dropout": 0.3,
    "warmup": 0.1,
    "grad_clip": 1.0,
    "ema": 0.0,  # decay of the weights' moving average that is scored and saved (0: the last weights)
    "freeze_word_embeddings": True,
    "freeze_layers": 0,  # embeddings and the bottom N transformer layers get no gradient
    "compile": False,  # torch.compile the encoder for training (see the README: it pays on a GPU only)
    "surgery": "none",
    "pooling": "cls",
    "steps_per_epoch": 0,
    "contrastive": "none",  # none | mnrl | gist: an extra round-robin task on positive pairs
    "contrastive_sts_min": 4.0,  # STS pairs scored at least this count as positives
    "mnrl_scale": 20.0,
    "gist_temperature": 0.01,
    "gist_margin": 0.0,
    "guide": "default",  # GISTEmbed's frozen guide: 'default' or a BERT directory with the same vocabulary
    "online_contrastive": 0.0,  # siamese paraphrase loss: + this x OnlineContrastiveLoss on (u, v)
    "online_contrastive_margin": 0.5,
    "token_alignment": False,  # siamese paraphrase head: also read how well each question's tokens are matched in the other
}


# The sections params.yaml may hold, with their subsections. Stages read only these, so any
# other mapping (a typo such as ``specialst``) would be silently ignored: load() rejects it.
SECTIONS: dict[str, dict] = {
    "prepare": {},
    "baseline": {"pretrain": {}, "finetune": {}, "sst": {}, "cfimdb": {}},
    "mtl": {},
    "mtl_embed": {},
    "specialist": {"sst": {}, "quora": {}, "sts": {}},
    "evaluate": {},
    "ensemble": {},
}


class _Loader(yaml.SafeLoader):
    """YAML 1.2 floats on top of PyYAML's YAML 1.1: there 2e-05 (no dot), which is what
    ``dvc exp run -S lr=2e-5`` writes into params.yaml, would be read as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """One value as params.yaml would hold it (``2e-4`` a float, ``true`` a bool), for overrides
    given as ``key=value`` text."""
    return yaml.load(text, Loader=_Loader)


def load(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from exc
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: expected a mapping of params at the top level")
    _check_sections(loaded, SECTIONS, path)
    return loaded


def _check_sections(node: dict, known: dict, path: Path, prefix: str = "") -> None:
    for name, value in node.items():
        if not isinstance(value, dict):
            continue
        if name not in known:
            choices = ", ".join(prefix + k for k in known) if known else f"none ({prefix.rstrip('.')} takes params only)"
            raise UserError(f"{path}: unknown section {prefix}{name}; known: {choices}")
        _check_sections(value, known[name], path, f"{prefix}{name}.")


def resolve(params: dict[str, Any], *sections: str) -> dict[str, Any]:
    """Top-level values (over the embedded defaults), then each dotted section on top."""
    merged = dict(DEFAULTS)
    merged.update({k: v for k, v in params.items() if not isinstance(v, dict)})
    for section in sections:
        node: Any = params
        for part in section.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if not isinstance(node, dict):
            raise UserError(f"params section {section!r} must be a mapping")
        merged.update({k: v for k, v in node.items() if not isinstance(v, dict)})
    unknown = sorted(set(merged) - set(DEFAULTS) - _STAGE_ONLY)
    if unknown:
        raise UserError(f"unknown param(s) {', '.join(unknown)}; known: {', '.join(sorted(set(DEFAULTS) | _STAGE_ONLY))}")
    for key, default in DEFAULTS.items():
        value = merged[key]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise UserError(f"param {key} must be true or false, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            raise UserError(f"param {key} must be a number, got {value!r}")
        if isinstance(default, int) and not isinstance(default, bool) and not isinstance(value, int):
            raise UserError(f"param {key} must be a whole number, got {value!r}")
    return merged


# Params that only make sense inside a stage's section.
_STAGE_ONLY = {"cfimdb_max_length", "match_multitask_steps"}
