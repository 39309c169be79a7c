"""Are the defaults tuned? Seed-replicated settings for one specialist, against the defaults.

Trains the specialist of ``--task`` once per (setting, seed) in this process, each run under a
temporary directory (never models/), and prints each run as a JSON line, then every setting's
dev score per seed, its mean and its change against the ``default`` setting on the same seeds. A setting
is ``default`` or comma-separated param overrides on top of the specialist stage's params, e.g.
``lr=2e-4,epochs=2``. One seed says little: SST dev moves by about two points with the seed
alone (README). Needs `dvc repro prepare` first; a GPU makes it practical (about 6 s a run on
an H200, about two minutes on a 2-core CPU).

    python benchmarks/specialist_sweep.py --task sst --seeds 11711 1 2 \\
        --setting default --setting lr=2e-4 --setting freeze_layers=2 --jsonl runs.jsonl
    python benchmarks/specialist_sweep.py --summary runs.jsonl   # the table again, from saved runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

from optiminbert import settings
from optiminbert.errors import run_app


def overrides(setting: str) -> dict:
    if setting == "default":
        return {}
    parsed = {}
    for item in setting.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: setting {setting!r}: expected key=value items, got {item!r}")
        parsed[key.strip()] = settings.parse_value(value)
    return parsed


def train(task: str, setting: str, seed: int) -> dict:
    from optiminbert import phases
    from optiminbert.paths import MODELS
    from optiminbert.rundir import RunDir
    from optiminbert.steps.train import train as train_step

    (run,) = phases.get("specialist").select(task)
    with tempfile.TemporaryDirectory() as root:
        train_step(settings.load(), "specialist", task, overrides={**overrides(setting), "seed": seed}, root=Path(root))
        history = RunDir(run.path(Path(root) / MODELS)).meta()["history"]
    return {
        "task": task, "setting": setting, "seed": seed,
        "dev": [h["dev"][task] for h in history],  # per epoch; the run keeps its best epoch
        "train_seconds": round(sum(h["train_seconds"] for h in history), 1),
    }


def summary(runs: list[dict]) -> str:
    scores: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for run in runs:
        scores[run["task"], run["setting"]][run["seed"]] = max(run["dev"])
    lines = [f"{'task':<6} {'setting':<34} {'dev per seed':<46} {'mean':>6} {'vs default':>11}"]
    for (task, setting), by_seed in sorted(scores.items(), key=lambda kv: (kv[0][0], kv[0][1] != "default", kv[0][1])):
        mean = statistics.mean(by_seed.values())
        default = scores.get((task, "default"), {})
        paired = [v - default[s] for s, v in by_seed.items() if s in default]  # same seeds only
        change = f"{100 * statistics.mean(paired):+.2f} pt" if paired and setting != "default" else ""
        seeds = " ".join(f"{s}:{v:.4f}" for s, v in sorted(by_seed.items()))
        lines.append(f"{task:<6} {setting:<34} {seeds:<46} {mean:6.4f} {change:>11}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["sst", "quora", "sts"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11711, 1, 2])
    parser.add_argument("--setting", action="append", default=[], help="default, or key=value[,key=value...]")
    parser.add_argument("--jsonl", type=Path, help="also append each run here")
    parser.add_argument("--summary", type=Path, help="print the table of runs saved with --jsonl, train nothing")
    args = parser.parse_args()
    if args.summary:
        print(summary([json.loads(line) for line in args.summary.read_text().splitlines() if line.strip()]))
        return
    if not args.task or not args.setting:
        parser.error("--task and at least one --setting are needed (or --summary)")
    runs = []
    for setting in args.setting:
        overrides(setting)  # a malformed setting fails before any training
    for seed in args.seeds:
        for setting in args.setting:
            runs.append(train(args.task, setting, seed))
            print(json.dumps(runs[-1]), flush=True)
            if args.jsonl:
                with args.jsonl.open("a") as f:
                    f.write(json.dumps(runs[-1]) + "\n")
    print(summary(runs))


if __name__ == "__main__":
    run_app(main)
