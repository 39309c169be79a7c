"""What PCGrad costs per training step, against the summed loss, on the same batches.

Runs the `mtl_embed` model (default checkpoint, real prepared data) for a few round-robin
steps with each gradient strategy and prints the time per step and the ratio.
Needs `dvc repro prepare` (or `optiminbert prepare`) first.

    python benchmarks/pcgrad_cost.py [--steps 12]
"""

from __future__ import annotations

import argparse
import time

import torch

from optiminbert import params
from optiminbert.batching import length_bucketed_batches
from optiminbert.losses import loss_for
from optiminbert.data import TASKS
from optiminbert.phases import STUDY_TASKS, build_model, runtime_for
from optiminbert.pipeline import PREPARED
from optiminbert.prepared import TaskSplit, split_path
from optiminbert.runtime import adamw, autocast
from optiminbert.surgery import make_strategy


def time_strategy(name: str, p: dict, batches: list[dict], runtime) -> float:
    torch.manual_seed(p["seed"])
    model = build_model(p, list(STUDY_TASKS), "siamese", frozen=False).to(runtime.device).train()
    optimizer = adamw([q for q in model.parameters() if q.requires_grad], lr=p["lr"])
    strategy = make_strategy(name, p["seed"])
    losses = {t: loss_for(TASKS[t].kind, "siamese") for t in STUDY_TASKS}
    shared, own = model.shared_parameters(), {t: model.task_parameters(t) for t in STUDY_TASKS}
    seconds = []
    for step in batches:
        started = time.perf_counter()
        step_losses = {}
        for task, batch in step.items():
            with autocast(runtime.device, runtime.dtype):
                step_losses[task] = losses[task](model(task, batch), batch["labels"])
        optimizer.zero_grad(set_to_none=True)
        strategy.backward(step_losses, shared, own)
        optimizer.step()
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return sum(seconds[2:]) / len(seconds[2:])  # the first steps warm up allocators


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    p = params.resolve(params.load(), "mtl_embed")
    runtime = runtime_for(p)
    generator = torch.Generator().manual_seed(0)
    splits = {t: TaskSplit.load(split_path(PREPARED, t, "train")) for t in STUDY_TASKS}
    orders = {t: length_bucketed_batches(s.lengths, p["batch_size"], generator) for t, s in splits.items()}
    batches = [
        {t: runtime.to_device(splits[t].batch(orders[t][i], "siamese", p["max_length"])) for t in STUDY_TASKS}
        for i in range(args.steps)
    ]
    summed = time_strategy("none", p, batches, runtime)
    pcgrad = time_strategy("pcgrad", p, batches, runtime)
    print(f"device {runtime.device}, precision {runtime.dtype or 'fp32'}, batch {p['batch_size']} per task, {args.steps} steps")
    print(f"summed loss: {summed * 1000:.0f} ms/step")
    print(f"PCGrad:      {pcgrad * 1000:.0f} ms/step")
    print(f"PCGrad / summed: {pcgrad / summed:.2f}x")


if __name__ == "__main__":
    main()
