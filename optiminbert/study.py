"""The multitask-methods study: which gradient method, loss weighting or STS loss closes the gap?

``dvc repro study/dvc.yaml`` trains the ``mtl_embed`` phase once per variant, each the default
run (its params.yaml sections) with one change, and sets their dev scores beside the default's
(PCGrad with the cosine STS loss: the main pipeline's ``models/mtl_embed``), with each method's
cost per training step measured in one harness: ``study/metrics.json`` (for ``dvc metrics diff``),
``study/timings.json`` and ``study/report.md``.

A variant is one entry of ``VARIANTS``: every gradient strategy but the default's, each other STS
loss, and SMART. Those in ``PAIRED`` (the ones that beat the default on its seed) are trained
again on ``PAIRED_SEEDS``, as is the default, for paired changes over three seeds.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import statistics
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Mapping

import torch

from optiminbert.atomic import write_json_atomic, write_text_atomic
from optiminbert.errors import UserError
from optiminbert.losses import STS_LOSSES
from optiminbert.metrics import study_metrics
from optiminbert.report import markdown_table
from optiminbert.surgery import STRATEGIES

PHASE = "mtl_embed"
BASELINE = "pcgrad"  # mtl_embed's default: the main pipeline's model is the study's baseline row
# name -> the overrides of mtl_embed's default run it trains with
VARIANTS: dict[str, dict[str, Any]] = {
    **{name: {"surgery": name} for name in STRATEGIES if name != BASELINE},
    **{name: {"sts_loss": name} for name in STS_LOSSES if name != "cosine_similarity"},
    "smart": {"smart_weight": 1.0},
}
# Re-run with more seeds, each paired with the default on the same seed (study/dvc.yaml's
# `paired` stage lists the same): the variants that beat the default on its own seed by more than
# a rounding (uncertainty weighting's +0.0003 overall is left out: docs/experiments.md).
PAIRED: tuple[str, ...] = ("cagrad", "nash_mtl", "imtl_g")
PAIRED_SEEDS: tuple[int, ...] = (1, 2)
COST_KEYS = {"ms_per_step", "peak_mib", "ratio_to_summed"}


def describe(variant: str) -> str:
    if variant == BASELINE:
        return "PCGrad, cosine STS loss (the default)"
    ((key, value),) = VARIANTS[variant].items()
    if key == "surgery":
        strategy = STRATEGIES[value]
        return strategy.family if value == "none" else f"{strategy.family} {value}"
    if key == "sts_loss":
        return f"STS loss {value}"
    return f"SMART regulariser, weight {value:g} (with PCGrad)"


def overrides(variant: str) -> dict[str, Any]:
    """What the variant changes in the default run (the default: nothing)."""
    return {} if variant == BASELINE else VARIANTS[variant]


def seeded(study_dir: Path, variant: str, seed: int) -> Path:
    """Where a variant's run on another seed lives (its models/ and dvclive/ under it)."""
    return study_dir / "seeds" / f"{variant}-{seed}"


# -- what one training step costs, each variant in a fresh process ------------------------------


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _time_child(tree: Mapping[str, Any], overrides: dict[str, Any], steps: int, prepared_dir: str) -> dict[str, float]:
    """In a fresh process (so its peak memory is its own): ``steps`` timed steps of the phase's
    real training run, after 3 warm-up steps."""
    from optiminbert import phases
    from optiminbert.runtime import resolve_device
    from optiminbert.steps.train import run_settings
    from optiminbert.training import time_steps

    (run,) = phases.get(PHASE).runs()
    settings = run_settings(tree, run, overrides)
    timed = time_steps(run, settings, steps, prepared_dir, warmup=3)
    return {"ms_per_step": round(timed["ms_per_step"], 1), "peak_mib": round(_peak_mib(resolve_device(settings.device)), 1)}


def step_costs(tree: Mapping[str, Any], steps: int, prepared_dir: str | Path) -> dict[str, dict[str, float]]:
    """Per variant (the summed loss and the default too): milliseconds per step, its ratio to the
    summed loss's, and the process's peak memory (RSS on a CPU, allocated on a GPU)."""
    variants = {"none": {"surgery": "none"}, BASELINE: {}, **VARIANTS}
    costs = {}
    spawn = multiprocessing.get_context("spawn")
    for name, overrides in variants.items():
        started = time.perf_counter()
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            costs[name] = pool.submit(_time_child, dict(tree), overrides, steps, str(prepared_dir)).result()
        print(f"{name}: {costs[name]['ms_per_step']:.0f} ms/step ({time.perf_counter() - started:.0f} s)", flush=True)
    for cost in costs.values():
        cost["ratio_to_summed"] = round(cost["ms_per_step"] / costs["none"]["ms_per_step"], 2)
    return costs


def read_costs(path: Path, variants: list[str]) -> dict[str, dict[str, float]]:
    try:
        costs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the step costs ({exc}); run `dvc repro study/dvc.yaml:timing`") from None
    missing = [v for v in variants if not isinstance(costs.get(v), dict) or set(costs[v]) != COST_KEYS]
    if missing:
        raise UserError(f"{path}: no step cost for {', '.join(missing)}; run `dvc repro study/dvc.yaml:timing`")
    return costs


# -- the report -------------------------------------------------------------------------------


def _read_run(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: no trained model here (run.json missing); run `dvc repro study/dvc.yaml`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserError(f"{path}: not a run record ({exc}); run `dvc repro study/dvc.yaml` again") from None


def dev_scores(run_dir: Path) -> dict[str, float]:
    """A trained run's dev metrics, of its kept epoch (as evaluation reports them)."""
    history = _read_run(run_dir)["history"]
    return study_metrics(max(history, key=lambda h: h["selection"])["dev"])


def collect(study_dir: Path, baseline_dir: Path) -> dict[str, dict[str, float]]:
    base = dev_scores(baseline_dir)
    results = {BASELINE: base}
    for variant in VARIANTS:
        scores = dev_scores(study_dir / variant / "models" / PHASE)
        results[variant] = {**scores, "overall_change": round(scores["overall"] - base["overall"], 4)}
    return results


def collect_paired(study_dir: Path, baseline_dir: Path, results: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per ``PAIRED`` variant: its overall change against the default on each seed (the default
    seed's from ``results``), and their mean and standard error."""
    default_seed = _read_run(baseline_dir)["settings"]["seed"]
    paired = {}
    for variant in PAIRED:
        changes = {default_seed: results[variant]["overall_change"]}
        for seed in PAIRED_SEEDS:
            mine, base = (dev_scores(seeded(study_dir, v, seed) / "models" / PHASE)["overall"] for v in (variant, BASELINE))
            changes[seed] = round(mine - base, 4)
        values = list(changes.values())
        paired[variant] = {**{f"seed_{seed}": change for seed, change in changes.items()},
                           "mean_change": round(statistics.fmean(values), 4),
                           "standard_error": round(statistics.stdev(values) / math.sqrt(len(values)), 4)}
    return paired


def render(results: dict[str, dict[str, float]], costs: dict[str, dict[str, float]],
           paired: dict[str, dict[str, float]]) -> str:
    order = sorted(results, key=lambda v: -results[v]["overall"])
    rows = [
        [f"`{v}`", describe(v), *(f"{results[v][k]:.4f}" for k in ("sst_acc", "para_acc", "sts_pearson", "overall")),
         f"{results[v].get('overall_change', 0.0):+.4f}", f"{costs[v]['ms_per_step']:.0f}",
         f"{costs[v]['ratio_to_summed']:.2f}x", f"{costs[v]['peak_mib']:.0f}"]
        for v in order
    ]
    seeds = [key for key in next(iter(paired.values()), {}) if key.startswith("seed_")]
    paired_rows = [
        [f"`{v}`", *(f"{100 * p[key]:+.2f}" for key in seeds), f"{100 * p['mean_change']:+.2f} ± {100 * p['standard_error']:.2f}",
         "yes" if p["mean_change"] > p["standard_error"] else "no"]
        for v, p in paired.items()
    ]
    return "\n".join([
        "# The multitask-methods study",
        "",
        f"`{PHASE}` trained once per variant, each the default run with one change; dev scores of the kept "
        f"epoch, one seed. The baseline is the default (`{BASELINE}`), the main pipeline's model. Cost: "
        "milliseconds per training step, its ratio to the summed loss's (`none`) measured in the same "
        "harness, and the process's peak memory (MiB; RSS on a CPU).",
        "",
        *markdown_table(["variant", "what", "SST acc", "para acc", "STS r", "overall", "vs default",
                         "ms/step", "cost", "peak MiB"], rows),
        "",
        "## Paired seeds",
        "",
        "Each variant that beat the default on its seed, trained again on more seeds beside the default on the "
        "same seeds: its overall change against the default, in points, per seed, and their mean ± standard "
        "error. It beats the default where the mean exceeds one standard error.",
        "",
        *markdown_table(["variant", *(key.replace("_", " ") for key in seeds), "mean ± SE", "beats the default"],
                        paired_rows),
        "",
    ])


def write_report(study_dir: Path, baseline_dir: Path) -> str:
    results = collect(study_dir, baseline_dir)
    costs = read_costs(study_dir / "timings.json", [*results, "none"])
    paired = collect_paired(study_dir, baseline_dir, results)
    write_json_atomic({**results, "paired": paired}, study_dir / "metrics.json")
    text = render(results, costs, paired)
    write_text_atomic(text, study_dir / "report.md")
    return text
