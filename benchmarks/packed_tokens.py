"""What packing a CPU batch's real tokens saves, against the plain padded layout, on real data.

For each kind of batch the pipeline trains on (single sentences, cross-encoded pairs, siamese
pairs), takes the phase's own length-bucketed training batches of the prepared data and times a
forward and backward pass of the task's loss (the default checkpoint, the runtime's autocast),
alternating packed and padded (``model.packed_rows`` switched off) and comparing medians; then
the same for inference on dev batches of ``eval_batch_size``. ``--full-run PHASE`` instead
trains a whole phase with padded, then packed training batches: what decided that training
keeps the padded layout (``model.PACK_TRAINING``). Needs `dvc repro prepare` first.

    python benchmarks/packed_tokens.py [--batches 24] [--reps 4]
    python benchmarks/packed_tokens.py --full-run mtl     # about 14 minutes on a 2-core CPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [("specialist", "sst", "siamese"), ("mtl", "quora", "cross"), ("mtl", "sts", "cross"),
         ("specialist", "quora", "siamese"), ("specialist", "sts", "siamese")]


def main() -> None:
    import torch

    from optiminbert import model as model_module
    from optiminbert import params, phases
    from optiminbert.batching import sequential_batches
    from optiminbert.data import TASKS
    from optiminbert.losses import loss_for
    from optiminbert.pipeline import PREPARED, run_params
    from optiminbert.prepared import TaskSplit, split_path
    from optiminbert.runtime import autocast, seed_everything

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--full-run", metavar="PHASE", help="instead, train this whole phase padded, then packed")
    args = parser.parse_args()
    loaded, packed_rows = params.load(), model_module.packed_rows
    if args.full_run:
        full_run(loaded, args.full_run)
        return

    def timed(step, batches, pack: bool) -> float:
        model_module.packed_rows = packed_rows if pack else (lambda mask: None)
        model_module.PACK_TRAINING = pack
        started = time.perf_counter()
        for batch in batches:
            step(batch)
        return 1000 * (time.perf_counter() - started) / len(batches)

    def compare(step, batches) -> str:
        step(batches[0])  # warm-up
        ms = {True: [], False: []}
        for _ in range(args.reps):
            for pack in (True, False):
                ms[pack].append(timed(step, batches, pack))
        packed, padded = statistics.median(ms[True]), statistics.median(ms[False])
        return f"{packed:7.0f} {padded:7.0f} {padded / packed:6.2f}x"

    print(f"{'batch kind':<28}{'padding':>8} | train ms/batch: packed  padded  speed-up | inference: packed  padded  speed-up")
    for phase, task, pairs in CASES:
        p = run_params(loaded, phase, task if phase == "specialist" else None)
        seed_everything(p["seed"])
        runtime = phases.runtime_for(p)
        model = phases.build_model(p, [task], pairs, frozen=False).to(runtime.device)
        loss = loss_for(TASKS[task].kind, pairs, p["online_contrastive"], p["online_contrastive_margin"])
        train = TaskSplit.load(split_path(PREPARED, task, "train"))
        order = train.shuffled_batches(p["batch_size"], torch.Generator().manual_seed(p["seed"]))
        batches = [train.batch(i, pairs, p["max_length"]) for i in order[: args.batches]]
        dev = TaskSplit.load(split_path(PREPARED, task, "dev"))
        dev_batches = [dev.batch(i, pairs, p["max_length"]) for i in sequential_batches(dev.lengths, p["eval_batch_size"])]
        masks = [b["attention_mask"] for b in batches]
        padding = 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)

        def train_step(batch):
            with autocast(runtime.device, runtime.dtype):
                value = loss(model.train()(task, batch), batch["labels"])
            value.backward()
            model.zero_grad(set_to_none=True)

        @torch.inference_mode()
        def infer_step(batch):
            with autocast(runtime.device, runtime.dtype):
                model.eval()(task, batch)

        print(f"{f'{task} {pairs} ({phase})':<28}{padding:>8.1%} | {compare(train_step, batches):>40} | {compare(infer_step, dev_batches[: args.batches]):>34}")
    model_module.packed_rows = packed_rows


def full_run(loaded: dict, phase: str) -> None:
    """The phase's whole training run with padded, then packed training batches (evaluation
    packs in both), each under a temporary root; prints the training seconds of each."""
    import json
    import tempfile

    from optiminbert import model as model_module
    from optiminbert.pipeline import train_phase

    seconds = {}
    for pack in (False, True):
        model_module.PACK_TRAINING = pack
        with tempfile.TemporaryDirectory() as root:
            train_phase(loaded, phase, root=Path(root))
            runs = Path(root).glob("models/**/run.json")
            seconds[pack] = sum(h["train_seconds"] for run in runs for h in json.loads(run.read_text())["history"])
        print(f"{phase}: training {'packed' if pack else 'padded'} {seconds[pack]:.1f} s", flush=True)
    print(f"{phase}: padded / packed {seconds[False] / seconds[True]:.2f}x")


if __name__ == "__main__":
    os.chdir(ROOT)  # params.yaml and data/prepared are relative to the repo root
    main()
