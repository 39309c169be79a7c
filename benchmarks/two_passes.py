"""Siamese pair batches in one pass or in two, in CPU training: time per step of a real run.

CPU training encodes a siamese batch's rows in the two passes that pad least
(``batching.two_passes``, split at multiples of 16 rows). This times the Quora specialist's own
training loop (``bench.time_run``: ``phases.train_run`` on the prepared data, from a fresh model)
for ``--steps`` steps with one pass (``two_passes`` switched off) and with two, alternating
(one, two, two, one, ...) after one untimed warm-up run, and prints each run and the medians.
``--checkpoint`` takes any BERT directory: padding costs more of a step the more of it the
matmuls take, so a larger encoder shows the saving more. Needs `dvc repro prepare` first.

    python benchmarks/two_passes.py --runs 8 --steps 60 --checkpoint /path/to/bert-base-uncased
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    import torch

    from optiminbert import bench, multitask, params
    from optiminbert.pipeline import PREPARED

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["quora", "sts"], default="quora")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--runs", type=int, default=8, help="timed runs, half of each layout")
    parser.add_argument("--checkpoint", default="default")
    args = parser.parse_args(argv)

    loaded = params.load(ROOT / "params.yaml")
    layouts = {"one pass": lambda lengths: [torch.arange(len(lengths))], "two passes": multitask.two_passes}
    abba = ("one pass", "two passes", "two passes", "one pass")
    order = ["one pass"] + [abba[i % 4] for i in range(args.runs)]  # a warm-up run, then ABBA
    seconds: dict[str, list[float]] = {name: [] for name in layouts}
    try:
        for i, name in enumerate(order):
            multitask.two_passes = layouts[name]
            run = bench.time_run(loaded, "specialist", args.task, args.steps, ROOT / PREPARED, checkpoint=args.checkpoint)
            label = "warm-up, not counted" if i == 0 else ""
            print(f"{name:<11} {run['seconds']:7.1f} s  {run['ms_per_step']:7.1f} ms/step  {label}", flush=True)
            if i:
                seconds[name].append(run["seconds"])
    finally:
        multitask.two_passes = layouts["two passes"]
    one, two = (statistics.median(seconds[name]) for name in layouts)
    print(f"{args.task} specialist, {args.steps} steps, checkpoint {args.checkpoint}: median {one:.1f} s one pass, "
          f"{two:.1f} s two passes: two passes " + (f"{one / two:.2f}x as fast" if two else "as fast (too short to time)"))


if __name__ == "__main__":
    main()
