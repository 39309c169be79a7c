"""What packing a CPU batch's real tokens saves, against the plain padded layout, on real data.

For each kind of batch the pipeline trains on (single sentences, cross-encoded pairs, siamese
pairs), takes the run's own length-bucketed training batches of the prepared data and times a
forward and backward pass of the task's loss (the run's settings and runtime), alternating
packed and padded (the encoder's ``pack_training`` and ``pack_inference`` on, then off) and
comparing medians; then the same for inference on dev batches of ``eval_batch_size``.
``--full-run PHASE`` instead trains a whole phase with padded, then packed training batches:
what decided that training keeps the padded layout (``BertModel.pack_training`` False).
Needs `dvc repro prepare` first.

    python benchmarks/packed_tokens.py [--batches 24] [--reps 4]
    python benchmarks/packed_tokens.py --full-run mtl     # about 14 minutes on a 2-core CPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

from optiminbert.errors import run_app

ROOT = Path(__file__).resolve().parents[1]
CASES = [("specialist", "sst"), ("mtl", "quora"), ("mtl", "sts"), ("specialist", "quora"), ("specialist", "sts")]


def main() -> None:
    import torch

    from optiminbert import phases, settings
    from optiminbert.batching import sequential_batches
    from optiminbert.losses import task_loss
    from optiminbert.paths import PREPARED
    from optiminbert.prepared import TaskSplit, split_path
    from optiminbert.rundir import build_model
    from optiminbert.runtime import Runtime, autocast, seed_everything
    from optiminbert.steps.train import run_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--full-run", metavar="PHASE", help="instead, train this whole phase padded, then packed")
    args = parser.parse_args()
    tree = settings.load()
    if args.full_run:
        full_run(tree, args.full_run)
        return

    def timed(step, batches) -> float:
        started = time.perf_counter()
        for batch in batches:
            step(batch)
        return 1000 * (time.perf_counter() - started) / len(batches)

    def compare(encoder, step, batches) -> str:
        step(batches[0])  # warm-up
        ms = {True: [], False: []}
        for _ in range(args.reps):
            for pack in (True, False):
                encoder.pack_training = encoder.pack_inference = pack
                ms[pack].append(timed(step, batches))
        packed, padded = statistics.median(ms[True]), statistics.median(ms[False])
        return f"{packed:7.0f} {padded:7.0f} {padded / packed:6.2f}x"

    print(f"{'batch kind':<28}{'padding':>8} | train ms/batch: packed  padded  speed-up | inference: packed  padded  speed-up")
    for phase, task in CASES:
        run = phases.get(phase).run_for(task)
        s = run_settings(tree, run)
        seed_everything(s.seed)
        runtime = Runtime.from_settings(s)
        model = build_model(s, [task], run.pairs).to(runtime.device)
        loss = task_loss(task, run.pairs, s)
        train = TaskSplit.load(split_path(PREPARED, task, "train"))
        order = train.shuffled_batches(s.batch_size, torch.Generator().manual_seed(s.seed))
        batches = [train.batch(i, run.pairs, s.max_length) for i in order[: args.batches]]
        dev = TaskSplit.load(split_path(PREPARED, task, "dev"))
        dev_batches = [dev.batch(i, run.pairs, s.max_length) for i in sequential_batches(dev.lengths, s.eval_batch_size)]
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

        print(f"{f'{task} {run.pairs} ({phase})':<28}{padding:>8.1%} | {compare(model.encoder, train_step, batches):>40}"
              f" | {compare(model.encoder, infer_step, dev_batches[: args.batches]):>34}")


@contextmanager
def packed_training(pack: bool):
    """Every encoder run meanwhile packs (or pads) its training batches. A phase's training
    builds its models itself, so a forward pre-hook on every module sets each encoder's
    ``pack_training`` as it runs (in both layouts alike, so the hook's small cost cancels)."""
    from torch.nn.modules.module import register_module_forward_pre_hook

    from optiminbert.model import BertModel

    def hook(module, inputs):
        if isinstance(module, BertModel):
            module.pack_training = pack

    handle = register_module_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def full_run(tree: dict, phase: str) -> None:
    """The phase's whole training run with padded, then packed training batches (evaluation
    packs in both), each under a temporary root; prints the training seconds of each."""
    import tempfile

    from optiminbert import phases
    from optiminbert.paths import MODELS
    from optiminbert.rundir import RunDir
    from optiminbert.steps.train import train

    runs = phases.get(phase).select()
    seconds = {}
    for pack in (False, True):
        with tempfile.TemporaryDirectory() as root, packed_training(pack):
            train(tree, phase, root=Path(root))
            histories = [RunDir(run.path(Path(root) / MODELS)).meta()["history"] for run in runs]
            seconds[pack] = sum(h["train_seconds"] for history in histories for h in history)
        print(f"{phase}: training {'packed' if pack else 'padded'} {seconds[pack]:.1f} s", flush=True)
    print(f"{phase}: padded / packed {seconds[False] / seconds[True]:.2f}x")


if __name__ == "__main__":
    os.chdir(ROOT)  # params.yaml and data/prepared are relative to the repo root
    run_app(main)
