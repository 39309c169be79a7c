"""A seed ensemble of specialists, against the committed specialists alone.

Trains the three specialists once per ``--seeds`` entry, each under a temporary directory
(never models/), then prints every seed's dev scores and the scores of the committed specialists
(models/specialist, from `dvc repro`) averaged with the first 1, 2, ... extra seeds: class and
paraphrase probabilities and STS scores averaged, as the `ensemble` stage averages phases.
Needs `dvc repro` first, with the params as they are now (`dvc status` clean), so that the
committed specialists and the new ones differ in their seed only; about 3.5 minutes per seed on
the project's 2-core CPU.

    python benchmarks/seed_ensemble.py --seeds 1 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from optiminbert.errors import run_app

ROOT = Path(__file__).resolve().parents[1]


def dev_probabilities(models: Path) -> dict[str, np.ndarray]:
    """The specialists' dev probabilities, from their runs under ``models``."""
    from optiminbert import phases
    from optiminbert.data import TASKS
    from optiminbert.rundir import DEV_OUTPUTS

    runs = {run.tasks[0]: run for run in phases.get("specialist").runs()}
    paths = {task: run.path(models) / DEV_OUTPUTS for task, run in runs.items()}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise SystemExit(f"error: {missing[0]} not found: run `dvc repro` first")
    return {task: TASKS[task].kind.probabilities(load_file(path)[task]) for task, path in paths.items()}


def average(members: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {task: np.mean([m[task] for m in members], axis=0) for task in members[0]}


def scores(probs: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> str:
    from optiminbert.data import TASKS
    from optiminbert.metrics import overall, task_score

    s = {task: task_score(task, TASKS[task].kind.decide(p), labels[task]) for task, p in probs.items()}
    return f"SST {s['sst']:.4f}  Quora {s['quora']:.4f}  STS {s['sts']:.4f}  overall {overall(s['sst'], s['quora'], s['sts']):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="the extra specialists' seeds")
    args = parser.parse_args()
    os.chdir(ROOT)  # params.yaml, data/prepared and models/ are relative to the repo root
    from optiminbert import settings
    from optiminbert.paths import MODELS, PREPARED
    from optiminbert.phases import STUDY_TASKS
    from optiminbert.prepared import TaskSplit, split_path
    from optiminbert.steps.train import train

    labels = {task: TaskSplit.load(split_path(PREPARED, task, "dev")).labels.numpy() for task in STUDY_TASKS}
    tree = settings.load()
    members = [dev_probabilities(MODELS)]
    lines = [f"committed ({tree['seed']})".ljust(24) + scores(members[0], labels)]
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as root:
            train(tree, "specialist", overrides={"seed": seed}, root=Path(root))
            members.append(dev_probabilities(Path(root) / MODELS))
        lines.append(f"seed {seed} alone".ljust(24) + scores(members[-1], labels))
        lines.append(f"averaged, {len(members)} seeds".ljust(24) + scores(average(members), labels))
        print(lines[-2], lines[-1], sep="\n", flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    run_app(main)
