"""The multitask-methods study: which gradient method, loss weighting or STS loss closes the gap?

``dvc repro study/dvc.yaml`` trains the ``mtl_embed`` phase once per variant, each the default
run (its params.yaml sections) with one change, and sets their dev scores beside the default's
(PCGrad with the cosine STS loss: the main pipeline's ``models/mtl_embed``), with each method's
cost per training step measured in one harness: ``study/metrics.json`` (for ``dvc metrics diff``),
``study/timings.json`` and ``study/report.md``.

A variant is one entry of ``VARIANTS``: every gradient strategy but the default's, and each other
STS loss.
"""

from __future__ import annotations

import json
import multiprocessing
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
}
KINDS = {"surgery": "gradient method", "sts_loss": "STS loss"}
COST_KEYS = {"ms_per_step", "peak_mib", "ratio_to_summed"}


def describe(variant: str) -> str:
    if variant == BASELINE:
        return "PCGrad, cosine STS loss (the default)"
    ((key, value),) = VARIANTS[variant].items()
    return f"{KINDS[key]} {value}"


# -- what one training step costs, each variant in a fresh process ------------------------------


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _time_child(tree: Mapping[str, Any], overrides: dict[str, Any], steps: int, prepared_dir: str) -> dict[str, float]:
    """In a fresh process (so its peak memory is its own): a few warm-up steps, then ``steps``
    steps of the phase's real training run; the loop's own seconds (scoring and saving excluded)."""
    import tempfile

    from optiminbert import phases
    from optiminbert.runtime import resolve_device
    from optiminbert.steps.train import run_settings
    from optiminbert.training import train_run

    (run,) = phases.get(PHASE).runs()
    settings = run_settings(tree, run, overrides).replace(epochs=1, eval_every=0)
    device = resolve_device(settings.device)
    seconds = 0.0
    for count in (3, steps):  # the first steps pay for allocations and thread pools: not counted
        with tempfile.TemporaryDirectory() as out:
            history = train_run(run, settings.replace(steps_per_epoch=count), prepared_dir, out)
        seconds = history[0]["train_seconds"]
    return {"ms_per_step": round(1000 * seconds / steps, 1), "peak_mib": round(_peak_mib(device), 1)}


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


def dev_scores(run_dir: Path) -> dict[str, float]:
    """A trained run's dev metrics, of its kept epoch (as evaluation reports them)."""
    path = run_dir / "run.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: no trained model here (run.json missing); run `dvc repro study/dvc.yaml`")
    history = json.loads(path.read_text(encoding="utf-8"))["history"]
    return study_metrics(max(history, key=lambda h: h["selection"])["dev"])


def collect(study_dir: Path, baseline_dir: Path) -> dict[str, dict[str, float]]:
    base = dev_scores(baseline_dir)
    results = {BASELINE: base}
    for variant in VARIANTS:
        scores = dev_scores(study_dir / variant / "models" / PHASE)
        results[variant] = {**scores, "overall_change": round(scores["overall"] - base["overall"], 4)}
    return results


def render(results: dict[str, dict[str, float]], costs: dict[str, dict[str, float]]) -> str:
    order = sorted(results, key=lambda v: -results[v]["overall"])
    rows = [
        [f"`{v}`", describe(v), *(f"{results[v][k]:.4f}" for k in ("sst_acc", "para_acc", "sts_pearson", "overall")),
         f"{results[v].get('overall_change', 0.0):+.4f}", f"{costs[v]['ms_per_step']:.0f}",
         f"{costs[v]['ratio_to_summed']:.2f}x", f"{costs[v]['peak_mib']:.0f}"]
        for v in order
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
    ])


def write_report(study_dir: Path, baseline_dir: Path) -> str:
    results = collect(study_dir, baseline_dir)
    costs = read_costs(study_dir / "timings.json", [*results, "none"])
    write_json_atomic(results, study_dir / "metrics.json")
    text = render(results, costs)
    write_text_atomic(text, study_dir / "report.md")
    return text
