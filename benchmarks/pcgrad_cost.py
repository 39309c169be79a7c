"""What PCGrad costs per training step, against the summed loss, on real data.

Runs the `mtl_embed` phase's real training loop (``bench.time_run``: its run's settings,
``training.train_run``, the prepared data, length-bucketed round-robin batches) for a few steps
from a fresh model, once with each gradient strategy, and prints the time per step and the ratio.
Needs `dvc repro prepare` (or `optiminbert prepare`) first.

    python benchmarks/pcgrad_cost.py [--steps 30]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from optiminbert.errors import run_app

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from bench import time_run

    from optiminbert import phases, settings
    from optiminbert.paths import PREPARED
    from optiminbert.steps.train import run_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    tree = settings.load()
    (run,) = phases.get("mtl_embed").runs()
    ms = {s: time_run(tree, run, args.steps, PREPARED, {"surgery": s})["ms_per_step"] for s in ("none", "pcgrad")}
    s = run_settings(tree, run)  # the settings time_run trained with, but for the strategy
    print(f"mtl_embed, device {s.device}, precision {s.precision}, batch {s.batch_size} per task, {args.steps} steps each")
    print(f"summed loss: {ms['none']:,.0f} ms/step")
    print(f"PCGrad:      {ms['pcgrad']:,.0f} ms/step")
    print(f"PCGrad / summed: {ms['pcgrad'] / ms['none']:.2f}x")


if __name__ == "__main__":
    os.chdir(ROOT)  # params.yaml and data/prepared are relative to the repo root
    run_app(main)
