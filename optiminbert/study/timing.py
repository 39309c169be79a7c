"""What a training step of each study variant costs, against the summed loss, in one harness.

Each variant (the summed loss ``none`` and the default among them) is timed ``rounds`` times,
each time in a fresh process, so that its peak memory is its own: 3 untimed warm-up steps, then
``steps`` timed steps of the phase's real training run (``training.time_steps``). Successive
rounds run the variants in opposite orders (A..Z, Z..A, ...): a drift in the machine's speed
over the harness weighs on the first variants and the last alike. A variant's milliseconds per
step are its median over the rounds, its cost the median of its per-round ratios to the summed
loss's time in the same round, and the spread of those ratios is kept beside it: a machine shared
with other work shows there.

The timed runs score 64 dev examples per task, not the whole dev sets: scoring follows the steps
and is not timed, and a full pass over the paraphrase dev set would take longer than the steps.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Mapping

import torch

from optiminbert import phases
from optiminbert.errors import UserError
from optiminbert.prepared import short_dev_copy
from optiminbert.runtime import resolve_device
from optiminbert.steps.train import run_settings
from optiminbert.study import DEFAULT, PHASE, Study
from optiminbert.training import time_steps

SUMMED = "none"
DEV_EXAMPLES = 64
COST_KEYS = {"ms_per_step", "ratio_to_summed", "ratio_range", "peak_mib", "rounds"}


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _time_child(tree: Mapping[str, Any], overrides: dict[str, Any], steps: int, prepared_dir: str) -> dict[str, float]:
    (run,) = phases.get(PHASE).runs()
    settings = run_settings(tree, run, overrides)
    timed = time_steps(run, settings, steps, prepared_dir, warmup=3)
    return {"ms": timed["ms_per_step"], "peak_mib": _peak_mib(resolve_device(settings.device))}


def timed_variants(study: Study) -> dict[str, dict[str, Any]]:
    """The variants the harness times, each with its changes: the summed loss, the default, the study's."""
    return {SUMMED: {"surgery": "none"}, DEFAULT: {}, **{v: c for v, c in study.variants.items() if v != SUMMED}}


def step_costs(tree: Mapping[str, Any], study: Study, prepared_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Per variant: median milliseconds per step, the median and range of its ratio to the summed
    loss, the largest peak memory of its processes (MiB: RSS on a CPU, allocated on a GPU)."""
    variants = timed_variants(study)
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    peaks: dict[str, list[float]] = {name: [] for name in names}
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as quick:
        short_dev_copy(prepared_dir, quick, DEV_EXAMPLES)
        for round_ in range(study.timing_rounds):
            for name in names if round_ % 2 == 0 else reversed(names):
                started = time.perf_counter()
                with ProcessPoolExecutor(1, mp_context=spawn) as pool:
                    timed = pool.submit(_time_child, dict(tree), variants[name], study.timing_steps, quick).result()
                times[name].append(timed["ms"])
                peaks[name].append(timed["peak_mib"])
                print(f"round {round_ + 1}/{study.timing_rounds} {name}: {timed['ms']:.0f} ms/step "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    costs = {}
    for name in names:
        ratios = [mine / summed for mine, summed in zip(times[name], times[SUMMED])]
        costs[name] = {"ms_per_step": round(statistics.median(times[name]), 1),
                       "ratio_to_summed": round(statistics.median(ratios), 2),
                       "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
                       "peak_mib": round(max(peaks[name]), 1), "rounds": len(ratios)}
    return costs


def read_costs(path: Path, variants: list[str]) -> dict[str, dict[str, Any]]:
    """The costs the timing stage wrote, one for each of ``variants``."""
    try:
        costs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the step costs ({exc}); run `dvc repro study/dvc.yaml:timing`") from None
    if not isinstance(costs, dict):
        raise UserError(f"{path}: not the step costs the timing stage writes; run `dvc repro study/dvc.yaml:timing`")
    missing = [v for v in variants if not isinstance(costs.get(v), dict) or set(costs[v]) != COST_KEYS]
    if missing:
        raise UserError(f"{path}: no step cost for {', '.join(missing)}; run `dvc repro study/dvc.yaml:timing`")
    return costs
