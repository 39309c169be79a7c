"""The multitask-methods study: which gradient method, loss weighting, STS loss or regulariser
closes the gap? ``dvc repro study/dvc.yaml``.

Each variant is ``mtl_embed``'s default run (its params.yaml sections) with the changes it names,
trained into ``study/runs/<variant>/``. The study is declared in ``study/params.yaml``, beside its
pipeline, so that DVC re-runs only what an edit reaches (a variant added trains that variant):

- ``variants``: name -> the settings it changes, as ``optiminbert train --set`` would;
- ``paired``: the variants trained again on ``seeds``, each beside the default run on the same
  seed (``study/seeds/<variant>-<seed>/``), for changes paired over several seeds;
- ``timing``: the cost harness's ``rounds`` and ``steps`` (``timing.py``).

The baseline is the default run itself, the main pipeline's ``models/mtl_embed`` on its seed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optiminbert import phases
from optiminbert.errors import UserError
from optiminbert.paths import STUDY
from optiminbert.settings import SCHEMA, read_params_file, unused_overrides

PHASE = "mtl_embed"
DEFAULT = "default"  # the baseline's name: mtl_embed's run as params.yaml sets it
PARAMS = STUDY / "params.yaml"
_NAME = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class Study:
    variants: dict[str, dict[str, Any]]
    paired: tuple[str, ...]
    seeds: tuple[int, ...]
    timing_rounds: int
    timing_steps: int

    def overrides(self, variant: str) -> dict[str, Any]:
        """What the variant changes in the default run (the default: nothing)."""
        return {} if variant == DEFAULT else self.variants[variant]


def run_root(study_dir: Path, variant: str, seed: int | None = None) -> Path:
    """Where a variant's run keeps its models/ and dvclive/: on the default seed, or another."""
    return study_dir / "runs" / variant if seed is None else study_dir / "seeds" / f"{variant}-{seed}"


def load(path: Path = PARAMS) -> Study:
    """study/params.yaml, checked: each variant's changes are settings the default run reads,
    with valid values; the paired variants are variants; seeds and timing are whole numbers."""
    if not path.is_file():
        raise UserError(f"{path}: the study's params file not found")
    raw = read_params_file(path)
    unknown = sorted(set(raw) - {"variants", "paired", "seeds", "timing"})
    if unknown:
        raise UserError(f"{path}: unknown key {', '.join(unknown)}; known: variants, paired, seeds, timing")
    variants = raw.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise UserError(f"{path}: variants must map each variant's name to the settings it changes")
    shapes = [run.shape for run in phases.get(PHASE).runs()]
    for name, changes in variants.items():
        where = f"{path}: variant {name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name == DEFAULT:
            raise UserError(f"{where}: a name is lower-case letters, digits and _ (and not {DEFAULT!r})")
        if not isinstance(changes, dict) or not changes:
            raise UserError(f"{where}: expected the settings it changes, e.g. {{surgery: cagrad}}")
        for key, value in changes.items():
            if key not in SCHEMA:
                raise UserError(f"{where}: unknown setting {key}")
            try:
                SCHEMA[key].validate(value)
            except UserError as exc:
                raise UserError(f"{where}: {exc}") from None
        unused = unused_overrides(changes, shapes)
        if unused:
            raise UserError(f"{where}: {PHASE} does not read {', '.join(unused)}")
    paired, seeds, timing = raw.get("paired", []), raw.get("seeds", []), raw.get("timing", {})
    if not isinstance(paired, list) or not set(paired) <= set(variants) or len(set(paired)) < len(paired):
        raise UserError(f"{path}: paired must list variants, each once; known: {', '.join(variants)}")
    if not isinstance(seeds, list) or not all(map(_whole, seeds)) or len(set(seeds)) < len(seeds):
        raise UserError(f"{path}: seeds must list whole numbers, each once")
    if paired and not seeds:
        raise UserError(f"{path}: paired variants need seeds to be trained on")
    if not isinstance(timing, dict) or set(timing) != {"rounds", "steps"} or not all(_whole(v, 1) for v in timing.values()):
        raise UserError(f"{path}: timing must set rounds and steps, each a whole number from 1")
    return Study({n: dict(c) for n, c in variants.items()}, tuple(paired), tuple(seeds), timing["rounds"], timing["steps"])


def _whole(value: Any, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least
