"""Siamese pairs side by side in one row against stacked as two rows, on real data.

The pipeline encodes a siamese pair as one row, a then b, each sentence attending only to
itself (``batching.pad_side_by_side``). Before, a and b went into two rows of the batch, each
padded to the batch's longest sentence. Both layouts give every sentence the same states
(tests/test_model.py); they cost differently: side by side pads far less, but its rows are
twice as long, so attention does about twice the work and needs a mask per query.

For the Quora and STS train pairs this takes length-bucketed batches of the specialist's batch
size, each layout bucketed by what it pads to (len(a) + len(b), or the longer of the two), and
times our encoder's training step (forward, backward, AdamW) on them; then inference on the
whole dev split, sorted by length and cut into ``eval_batch_size`` pairs as the evaluation
stage cuts it. The layouts alternate (ABBA) and medians are compared, in real tokens per second.
Needs `dvc repro prepare` first.

    python benchmarks/siamese_layout.py [--batches 40] [--reps 5] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from optiminbert.errors import run_app

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import bench
    import torch

    from optiminbert import phases, settings
    from optiminbert.batching import length_bucketed_batches, pad, pad_side_by_side, sequential_batches
    from optiminbert.model import BertModel
    from optiminbert.paths import PREPARED
    from optiminbert.prepared import TaskSplit, split_path
    from optiminbert.runtime import Runtime, precision_name
    from optiminbert.steps.train import run_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="training batches per layout")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--device", default=None, help="auto | cpu | cuda (default: params.yaml's)")
    args = parser.parse_args()
    tree = settings.load()

    def stacked(pairs):
        batch = pad([a for a, _ in pairs] + [b for _, b in pairs])
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        return batch

    layouts = {  # layout: (how a batch of pairs is padded, the length it is bucketed by)
        "side by side": (pad_side_by_side, lambda a, b: a + b),
        "stacked": (stacked, torch.maximum),
    }

    print(f"{'task':<6} {'layout':<13} {'batches':>7} {'real tokens':>11} {'padding':>8} | {'train tok/s':>11} {'side/stacked':>12} | {'inference tok/s':>15} {'side/stacked':>12}")
    for task in ("quora", "sts"):
        p = run_settings(tree, phases.get("specialist").run_for(task), {"device": args.device})
        runtime = Runtime.from_settings(p)
        device, dtype = runtime.device, runtime.dtype
        model = BertModel.from_pretrained(p.checkpoint).to(device)
        optimizer = bench.make_optimizer(model, p.lr, p.freeze_word_embeddings)
        rows = {}
        for split_name, size, train in (("train", p.batch_size, True), ("dev", p.eval_batch_size, False)):
            split = TaskSplit.load(split_path(PREPARED, task, split_name))
            a_col, b_col = split.columns
            for layout, (padded, bucket_length) in layouts.items():
                lengths = bucket_length(a_col.lengths, b_col.lengths)
                if train:  # full batches first, as the bench's training batches are chosen
                    order = length_bucketed_batches(lengths, size, torch.Generator().manual_seed(p.seed))
                    order = sorted(order, key=len, reverse=True)[: args.batches]
                else:
                    order = list(sequential_batches(lengths, size))
                batches = [padded([(a_col[i], b_col[i]) for i in indices.tolist()]) for indices in order]
                rows.setdefault(layout, {})[split_name] = {
                    "batches": bench.on_device(batches, device),
                    "tokens": int(bench.real_lengths(batches).sum()),
                    "padding": bench.padding_fraction([b["attention_mask"].sum(1) for b in batches]),
                }
        rates = {layout: {} for layout in layouts}
        for split_name, train in (("train", True), ("dev", False)):
            model.train(train)
            run = {
                layout: (bench.training_pass(model, optimizer, r[split_name]["batches"], device, dtype) if train
                         else bench.inference_pass(model, r[split_name]["batches"], device, dtype))
                for layout, r in rows.items()
            }
            # interleaved() alternates two callables in ABBA order; its "ours" is side by side here.
            seconds = bench.interleaved(run["side by side"], run["stacked"], args.reps, device, advance=lambda: None)
            for layout, key in (("side by side", "ours"), ("stacked", "hf")):
                rates[layout][split_name] = rows[layout][split_name]["tokens"] / statistics.median(seconds[key])
        ratios = {  # printed on the side-by-side row only
            "side by side": [f"{rates['side by side'][n] / rates['stacked'][n]:.2f}x" for n in ("train", "dev")],
            "stacked": ["", ""],
        }
        for layout, r in rows.items():
            print(f"{task:<6} {layout:<13} {len(r['train']['batches']):>7} {r['train']['tokens']:>11,} {r['train']['padding']:>8.1%}"
                  f" | {rates[layout]['train']:>11,.0f} {ratios[layout][0]:>12} | {rates[layout]['dev']:>15,.0f} {ratios[layout][1]:>12}")
    print(f"device {device.type}, precision {precision_name(dtype)}; "
          f"padding and tokens are the training batches'; dev: the whole split ({args.reps} reps, ABBA, medians)")


if __name__ == "__main__":
    os.chdir(ROOT)  # params.yaml and data/prepared are relative to the repo root
    run_app(main)
