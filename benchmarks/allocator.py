"""What keeping freed memory in glibc's malloc saves (``runtime.keep_freed_memory``), on real data.

Each measurement runs in a fresh process, because malloc's settings hold for a process's whole
life: one with glibc's defaults, one with the settings every pipeline stage makes, alternated
(ABBA) ``--reps`` times. Each process times inference on the SST dev set as evaluation batches
it, first pass (what an evaluation stage meets) and warm, then a phase's own training loop
(``bench.time_run``: ``training.train_run`` for ``--steps`` steps from a fresh model, the
prepared train data), and counts the page faults of each.
Prints the medians and the ratio default / kept. ``--set key=value`` overrides a setting of
the training run (e.g. ``freeze_word_embeddings=false``). Needs `dvc repro prepare` first.

    python benchmarks/allocator.py [--phase mtl] [--steps 40] [--reps 4] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from optiminbert.errors import run_app

ROOT = Path(__file__).resolve().parents[1]
MODES = ("glibc default", "kept")
PARTS = (("first", "inference, first pass"), ("warm", "inference, warm"), ("train", "training"))
# A malloc tunable at its default value: glibc's malloc behaves as untuned, and every stage's
# configure_cpu leaves it so, as it leaves malloc alone wherever the user tuned it.
UNTUNED = {"GLIBC_TUNABLES": "glibc.malloc.perturb=0"}


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def child(mode: str, phase: str, steps: int, overrides: dict) -> dict:
    import bench

    from optiminbert import phases, runtime, settings
    from optiminbert.model import BertModel
    from optiminbert.paths import PREPARED
    from optiminbert.prepared import TaskSplit, split_path

    if runtime.keep_freed_memory() != (mode == "kept"):
        if mode == "kept":
            raise SystemExit("error: this C library did not take the malloc settings (not glibc, or MALLOC_* set)")
        raise SystemExit(f"error: malloc took the pipeline's settings: a {mode!r} process is started with {UNTUNED}")
    tree = settings.load()
    config = bench.BenchConfig(tree)
    machine = runtime.Runtime.from_settings(config.settings)
    model = BertModel.from_pretrained(config.settings.checkpoint).to(machine.device).eval()
    batches = bench.evaluation_batches(TaskSplit.load(split_path(PREPARED, "sst", "dev")), "cross", config)
    one_pass = bench.inference_pass(model, bench.on_device(batches, machine.device), machine.device, machine.dtype)

    def infer() -> tuple[float, int]:
        before, started = faults(), time.perf_counter()
        one_pass()
        return time.perf_counter() - started, faults() - before

    # The first pass is what an evaluation stage meets: a fresh process scoring each split once.
    first, first_faults = infer()
    warm = [infer() for _ in range(3)]
    before = faults()
    (run,) = phases.get(phase).runs()
    trained = bench.time_run(tree, run, steps, PREPARED, overrides)
    return {
        "mode": mode, "first_s": first, "first_faults": first_faults,
        "warm_s": statistics.median(t for t, _ in warm), "warm_faults": statistics.median(f for _, f in warm),
        "train_s": trained["seconds"], "train_faults": faults() - before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", default="mtl", choices=["mtl", "mtl_embed"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a param of the training run")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from optiminbert.settings import parse_assignments

    overrides = parse_assignments(args.set)
    if args.child:
        print(json.dumps(child(args.child, args.phase, args.steps, overrides)))
        return

    runs = {mode: [] for mode in MODES}
    for rep in range(args.reps):
        for mode in MODES if rep % 2 == 0 else MODES[::-1]:
            command = [sys.executable, __file__, "--child", mode, "--phase", args.phase, "--steps", str(args.steps)]
            command += [f"--set={item}" for item in args.set]
            env = {**os.environ, **UNTUNED} if mode == MODES[0] else None
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"error: the {mode} process failed:\n{done.stderr[-2000:]}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            runs[mode].append(run)
            print(f"rep {rep + 1} {mode:<13} " + "  ".join(
                f"{label} {run[key + '_s']:6.2f} s ({run[key + '_faults']:>9,.0f} faults)" for key, label in PARTS
            ), flush=True)
    shown = f" with {', '.join(args.set)}" if args.set else ""
    print(f"\n{args.phase}{shown}: {args.steps} training steps; inference on the SST dev set; "
          f"medians of {args.reps} processes each")
    for key, label in PARTS:
        default, kept = (statistics.median(r[key + "_s"] for r in runs[mode]) for mode in MODES)
        print(f"{label:<24} glibc default {default:7.3f} s  kept {kept:7.3f} s  default / kept {default / kept:.2f}x")


if __name__ == "__main__":
    run_app(main)
