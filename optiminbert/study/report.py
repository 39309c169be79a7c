"""The study's report: each variant's dev scores beside the default's, with what a step of it
costs (``timing.py``), and the paired variants' changes over their seeds: ``study/metrics.json``
(for ``dvc metrics diff``) and ``study/report.md``."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from optiminbert.atomic import write_json_atomic, write_text_atomic
from optiminbert.errors import UserError
from optiminbert.metrics import study_metrics
from optiminbert.report import markdown_table
from optiminbert.rundir import RunDir
from optiminbert.study import DEFAULT, PHASE, Study, run_root
from optiminbert.study.timing import SUMMED, read_costs
from optiminbert.surgery import STRATEGIES


def describe(changes: dict[str, Any]) -> str:
    """A variant in words, from what it changes in the default run."""
    words = []
    for key, value in changes.items():
        if key == "surgery":
            strategy = STRATEGIES[value]
            words.append(strategy.family if value == SUMMED else f"{strategy.family} {value}")
        elif key == "sts_loss":
            words.append(f"STS loss {value}")
        elif key == "smart_weight":
            words.append(f"SMART regulariser, weight {value:g}")
        else:
            words.append(f"{key}={value}")
    return "; ".join(words)


def dev_scores(run_dir: Path) -> dict[str, float]:
    """A trained run's dev metrics, of its kept epoch (as evaluation reports them)."""
    history = RunDir(run_dir).meta()["history"]
    return study_metrics(max(history, key=lambda h: h["selection"])["dev"])


def collect(study: Study, study_dir: Path, baseline_dir: Path) -> dict[str, dict[str, float]]:
    base = dev_scores(baseline_dir)
    results = {DEFAULT: base}
    for variant in study.variants:
        scores = dev_scores(run_root(study_dir, variant) / "models" / PHASE)
        results[variant] = {**scores, "overall_change": round(scores["overall"] - base["overall"], 4)}
    return results


def collect_paired(study: Study, study_dir: Path, baseline_dir: Path,
                   results: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per paired variant: its overall change against the default on each seed (the default
    seed's from ``results``), and their mean and standard error."""
    default_seed = RunDir(baseline_dir).meta()["settings"]["seed"]
    if default_seed in study.seeds:
        raise UserError(f"study/params.yaml: seeds lists {default_seed}, the default run's own seed; list others")
    base = {seed: dev_scores(run_root(study_dir, DEFAULT, seed) / "models" / PHASE)["overall"] for seed in study.seeds}
    paired = {}
    for variant in study.paired:
        changes = {default_seed: results[variant]["overall_change"]}
        for seed in study.seeds:
            changes[seed] = round(dev_scores(run_root(study_dir, variant, seed) / "models" / PHASE)["overall"] - base[seed], 4)
        values = list(changes.values())
        paired[variant] = {**{f"seed_{seed}": change for seed, change in changes.items()},
                           "mean_change": round(statistics.fmean(values), 4),
                           "standard_error": round(statistics.stdev(values) / math.sqrt(len(values)), 4)}
    return paired


def render(study: Study, results: dict[str, dict[str, float]], costs: dict[str, dict[str, Any]],
           paired: dict[str, dict[str, float]]) -> str:
    order = sorted(results, key=lambda v: -results[v]["overall"])
    rows = [
        [f"`{v}`", describe(study.overrides(v)) or "the default run (params.yaml)",
         *(f"{results[v][k]:.4f}" for k in ("sst_acc", "para_acc", "sts_pearson", "overall")),
         f"{results[v].get('overall_change', 0.0):+.4f}", f"{costs[v]['ms_per_step']:.0f}",
         f"{costs[v]['ratio_to_summed']:.2f}x ({costs[v]['ratio_range'][0]:.2f}–{costs[v]['ratio_range'][1]:.2f})",
         f"{costs[v]['peak_mib']:.0f}"]
        for v in order
    ]
    seeds = [key for key in next(iter(paired.values()), {}) if key.startswith("seed_")]
    paired_rows = [
        [f"`{v}`", *(f"{100 * p[key]:+.2f}" for key in seeds), f"{100 * p['mean_change']:+.2f} ± {100 * p['standard_error']:.2f}",
         "yes" if p["mean_change"] > p["standard_error"] else "no"]
        for v, p in paired.items()
    ]
    rounds = max(cost["rounds"] for cost in costs.values())
    return "\n".join([
        "# The multitask-methods study",
        "",
        f"`{PHASE}` trained once per variant, each the default run with the changes it names "
        "(study/params.yaml); dev scores of the kept epoch, one seed. The baseline is the default run "
        f"(`{DEFAULT}`), the main pipeline's model. Cost: milliseconds per training step (median of "
        f"{rounds} rounds, each in a fresh process), its ratio to the summed loss's (`{SUMMED}`) in the "
        "same round (median, and the range over the rounds), and the processes' peak memory (MiB; RSS "
        "on a CPU).",
        "",
        *markdown_table(["variant", "what", "SST acc", "para acc", "STS r", "overall", "vs default",
                         "ms/step", "cost", "peak MiB"], rows),
        "",
        "## Paired seeds",
        "",
        "Each paired variant trained again on more seeds, beside the default on the same seeds: its "
        "overall change against the default, in points, per seed, and their mean ± standard error. It "
        "beats the default where the mean exceeds one standard error.",
        "",
        *markdown_table(["variant", *(key.replace("_", " ") for key in seeds), "mean ± SE", "beats the default"],
                        paired_rows),
        "",
    ])


def write_report(study: Study, study_dir: Path, baseline_dir: Path) -> str:
    results = collect(study, study_dir, baseline_dir)
    costs = read_costs(study_dir / "timings.json", [*results, SUMMED])
    paired = collect_paired(study, study_dir, baseline_dir, results)
    write_json_atomic({**results, "paired": paired}, study_dir / "metrics.json")
    text = render(study, results, costs, paired)
    write_text_atomic(text, study_dir / "report.md")
    return text
