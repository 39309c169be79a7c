"""What PCGrad costs per training step, against the summed loss, on real data.

Runs the `mtl_embed` phase's real training loop (``phases.train_run``: default checkpoint,
prepared data, length-bucketed round-robin batches) for a few steps from a fresh model, once
with each gradient strategy, and prints the time per step and the ratio.
Needs `dvc repro prepare` (or `optiminbert prepare`) first.

    python benchmarks/pcgrad_cost.py [--steps 30]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from optiminbert import params
    from optiminbert.bench import time_run
    from optiminbert.pipeline import PREPARED, run_params

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    loaded = params.load()
    ms = {s: time_run(loaded, "mtl_embed", None, args.steps, PREPARED, surgery=s)["ms_per_step"] for s in ("none", "pcgrad")}
    p = run_params(loaded, "mtl_embed")  # the settings time_run trained with
    print(f"mtl_embed, device {p['device']}, precision {p['precision']}, batch {p['batch_size']} per task, {args.steps} steps each")
    print(f"summed loss: {ms['none']:,.0f} ms/step")
    print(f"PCGrad:      {ms['pcgrad']:,.0f} ms/step")
    print(f"PCGrad / summed: {ms['pcgrad'] / ms['none']:.2f}x")


if __name__ == "__main__":
    os.chdir(ROOT)  # params.yaml and data/prepared are relative to the repo root
    main()
