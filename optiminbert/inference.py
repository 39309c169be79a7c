"""Scoring a split with a model: raw outputs for every example, in the split's order. Shared by
training (dev scores after each epoch), evaluation and prediction on new text."""

from __future__ import annotations

import torch

from optiminbert import distributed
from optiminbert.batching import sequential_batches
from optiminbert.multitask import MultitaskBert, PairLogit
from optiminbert.runtime import Runtime, autocast


@torch.inference_mode()
def predict(model: MultitaskBert, task: str, split, runtime: Runtime, batch_size: int, max_length: int) -> torch.Tensor:
    """Raw outputs for every example of a split, in the split's order (data-parallel: each rank
    scores a slice and every rank gets all of them)."""
    was_training = model.training
    model.eval()
    outputs = {}
    for indices in sequential_batches(split.lengths, batch_size):
        indices, _ = distributed.shard(indices)
        if len(indices) == 0:
            continue
        batch = runtime.to_device(split.batch(indices, model.pairs, max_length))
        with autocast(runtime.device, runtime.dtype):
            raw = model(task, batch)
            raw = (raw.logit if isinstance(raw, PairLogit) else raw).float().cpu()
        outputs.update(zip(indices.tolist(), raw))
    model.train(was_training)
    outputs = distributed.gather_rows(outputs)
    return torch.stack([outputs[i] for i in range(len(split))])
