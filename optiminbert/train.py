"""The one training loop that every phase uses: baseline, multitask and specialists."""

from __future__ import annotations

import math
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from optiminbert import distributed
from optiminbert.averaging import WeightAverage
from optiminbert.batching import sequential_batches
from optiminbert.errors import UserError
from optiminbert.metrics import selection_score, task_score, to_predictions
from optiminbert.multitask import MultitaskBert, PairLogit
from optiminbert.resume import Interrupted, ResumeFile, StopRequest, rng_state, set_rng_state
from optiminbert.roundrobin import RoundRobin
from optiminbert.runtime import adamw, autocast
from optiminbert.surgery import GradientStrategy


LOG_EVERY = 20  # steps per point of the training-loss curve


@dataclass
class TrainConfig:
    lr: float = 5e-5
    head_lr: float = 0.0  # the task heads' lr while the encoder trains too (0: same as lr)
    epochs: int = 1
    batch_size: int = 32
    warmup: float = 0.1  # fraction of steps with linear warm-up, then linear decay; 0 = constant lr
    grad_clip: float = 1.0  # max gradient norm; 0 turns clipping off
    ema: float = 0.0  # decay of the weights' moving average that is scored and kept; 0: the last weights
    eps: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    seed: int = 11711
    max_length: int = 128
    eval_batch_size: int = 128
    steps_per_epoch: int = 0  # 0: one pass over the largest task; else this many round-robin steps
    compile: bool = False  # torch.compile the encoder (dynamic shapes: bucketed batch lengths vary)

    def __post_init__(self):
        if self.steps_per_epoch < 0:
            raise UserError(f"param steps_per_epoch must be >= 0, got {self.steps_per_epoch!r}")
        if self.head_lr < 0:
            raise UserError(f"param head_lr must be >= 0, got {self.head_lr!r}")
        for name in ("lr", "epochs", "batch_size", "eval_batch_size", "max_length"):
            if not getattr(self, name) > 0:
                raise UserError(f"param {name} must be positive, got {getattr(self, name)!r}")
        if not 0 <= self.warmup < 1:
            raise UserError(f"param warmup must be in [0, 1), got {self.warmup!r}")
        if not 0 <= self.ema < 1:  # 1 would keep the starting weights
            raise UserError(f"param ema must be in [0, 1) (0: no averaging), got {self.ema!r}")
        if self.grad_clip < 0:  # a negative max norm would flip the gradient's sign
            raise UserError(f"param grad_clip must be >= 0 (0: no clipping), got {self.grad_clip!r}")
        if not 0 <= self.seed < 2**32:  # what numpy's seeding accepts
            raise UserError(f"param seed must be from 0 to 2**32 - 1, got {self.seed!r}")


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None for fp32

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),  # stdout stays for results (e.g. `optiminbert evaluate`)
    )


@torch.inference_mode()
def predict(model: MultitaskBert, task: str, split, runtime: Runtime, batch_size: int, max_length: int) -> torch.Tensor:
    """Raw outputs for every example of a split, in the split's order."""
    was_training = model.training
    model.eval()
    outputs = {}
    for indices in sequential_batches(split.lengths, batch_size):
        indices, _ = distributed.shard(indices)  # data-parallel: each rank scores a slice
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


def evaluate(model: MultitaskBert, dev: dict, runtime: Runtime, cfg: TrainConfig) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Dev scores per task, and the raw outputs they come from."""
    outputs = {task: predict(model, task, split, runtime, cfg.eval_batch_size, cfg.max_length) for task, split in dev.items()}
    scores = {task: task_score(task, to_predictions(task, outputs[task]), dev[task].labels.numpy()) for task in dev}
    return scores, outputs


def _lr_lambda(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _fresh_tally(tasks) -> dict:
    """One epoch's running totals: summed losses, the current logging window, time, examples."""
    return {"sums": {t: 0.0 for t in tasks}, "window": {t: 0.0 for t in tasks}, "logged": [], "examples": 0, "seconds": 0.0}


def fit(
    model: MultitaskBert,
    train: dict,
    dev: dict,
    cfg: TrainConfig,
    strategy: GradientStrategy,
    runtime: Runtime,
    label: str,
    losses: dict[str, torch.nn.Module],
    resume: ResumeFile | None = None,
) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Train with round-robin batches, evaluate on dev after each epoch and keep the best
    epoch's weights (loaded back into ``model`` at the end; with ``cfg.ema``, the weights'
    moving average is what is evaluated and kept). Returns per-epoch records and
    the best epoch's raw dev outputs (the evaluation stage reuses them instead of re-scoring dev).
    ``train`` and ``losses`` share their keys: the dev tasks, plus any auxiliary task.

    With ``resume``, a state saved there under the same settings is continued from; Ctrl-C or
    SIGTERM saves the state there and raises ``Interrupted``; every finished epoch, and the
    finished run, are saved there too (callers clear it once the run's outputs are written)."""
    model.to(runtime.device).train()
    if cfg.compile:
        model.encoder.compile(dynamic=True)  # in place: parameter names and saved keys stay the same
    params = [p for p in model.parameters() if p.requires_grad]
    heads = {id(p) for task in train for p in model.task_parameters(task)}
    body = [p for p in params if id(p) not in heads]
    # Heads start from scratch and take few steps: they may learn faster than the pretrained body.
    # With a frozen encoder the heads are all there is, and they train at lr.
    groups = [{"params": body, "lr": cfg.lr}, {"params": [p for p in params if id(p) in heads], "lr": (cfg.head_lr or cfg.lr) if body else cfg.lr}]
    optimizer = adamw([g for g in groups if g["params"]], betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    orders = {task: partial(split.shuffled_batches, cfg.batch_size) for task, split in train.items()}
    schedule = RoundRobin(
        orders, {t: math.ceil(len(s) / cfg.batch_size) for t, s in train.items()}, cfg.seed, cfg.steps_per_epoch or None
    )
    total = schedule.steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, (lambda step: _lr_lambda(step, total, warmup)) if warmup else (lambda step: 1.0)
    )
    shared = model.shared_parameters()
    task_params = {task: model.task_parameters(task) for task in train}
    average = WeightAverage(params, cfg.ema) if cfg.ema else None

    history, best, best_state, best_outputs, global_step = [], -math.inf, None, None, 0
    start_epoch, done, tally = 1, 0, _fresh_tally(train)
    saved = resume.load() if resume else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        if saved.get("finished"):
            return saved["history"], saved["dev_outputs"]
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        schedule.load_state_dict(saved["schedule"])
        strategy.load_state_dict(saved["strategy"])
        if average:
            average.load_state_dict(saved["average"])
        set_rng_state(saved["rng"])
        history, best, best_state, global_step = saved["history"], saved["best"], saved["best_state"], saved["global_step"]
        best_outputs = saved["best_outputs"]
        start_epoch, done, tally = saved["epoch"], saved["step"], saved["tally"]

    def save(epoch: int, step: int) -> None:
        resume.save(
            {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "schedule": schedule.state_dict(), "strategy": strategy.state_dict(), "rng": rng_state(),
                "average": average.state_dict() if average else None,
                "history": history, "best": best, "best_state": best_state, "best_outputs": best_outputs,
                "global_step": global_step,
                "epoch": epoch, "step": step, "tally": tally,
            }
        )

    def stop(signum: int, epoch: int, step: int) -> Interrupted:
        save(epoch, step)
        where = f"epoch {epoch} step {step}/{schedule.steps_per_epoch}" if step else f"the end of epoch {epoch - 1}"
        return Interrupted(
            signum,
            f"{label}: stopped by {signal.Signals(signum).name} at {where}; state saved to {resume.path}; "
            "run the same command with --resume (or dvc repro) to continue",
        )

    with (StopRequest() if resume else nullcontext()) as request, progress_bar() as progress:
        progress.console.print(f"{label}: {cfg.epochs} epoch(s) of {schedule.steps_per_epoch} steps")
        if saved is not None:
            progress.console.print(f"{label}: resuming from {resume.path} at epoch {start_epoch} step {done}")
        for epoch in range(start_epoch, cfg.epochs + 1):
            bar = progress.add_task(
                f"{label} epoch {epoch}/{cfg.epochs}", total=schedule.steps_per_epoch, completed=done, info=""
            )
            started = time.perf_counter() - tally["seconds"]
            sums, window = tally["sums"], tally["window"]
            for step, indices in enumerate(schedule.epoch(done), done + 1):
                step_losses = {}
                for task, idx in indices.items():
                    # Data-parallel: this rank's slice, its loss weighted by its share of the batch.
                    idx, share = distributed.shard(idx)
                    tally["examples"] += len(idx)
                    if len(idx) == 0:
                        step_losses[task] = None
                        continue
                    batch = runtime.to_device(train[task].batch(idx, model.pairs, cfg.max_length))
                    with autocast(runtime.device, runtime.dtype):
                        loss = losses[task](model(task, batch), batch["labels"])
                    value = loss.item()  # one device sync per task and step
                    if not math.isfinite(value):
                        kept = f"; the state after epoch {epoch - 1} is kept in {resume.path}" if resume and history else ""
                        raise UserError(f"{label}: {task} loss became {value} at epoch {epoch} step {step}; lower lr{kept}")
                    sums[task] += value
                    window[task] += value
                    step_losses[task] = loss * share
                optimizer.zero_grad(set_to_none=True)
                strategy.backward(step_losses, shared, task_params)
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                if average:
                    average.update()
                global_step += 1
                if step % LOG_EVERY == 0 or step == schedule.steps_per_epoch:
                    interval = step % LOG_EVERY or LOG_EVERY
                    tally["logged"].append({"step": global_step, **{t: window[t] / interval for t in train}})
                    window.update({task: 0.0 for task in train})
                tally["seconds"] = time.perf_counter() - started
                shown = " ".join(f"{t} {sums[t] / step:.3f}" for t in train)
                progress.update(bar, advance=1, info=f"loss {shown} | {tally['examples'] / tally['seconds']:.0f} ex/s")
                if request is not None and request.signum is not None and step < schedule.steps_per_epoch:
                    raise stop(request.signum, epoch, step)
            # With averaging, dev scores the average, and the average is what a best epoch keeps.
            with average.applied() if average else nullcontext():
                scores, outputs = evaluate(model, dev, runtime, cfg)
                score = selection_score(scores)
                # A NaN score (e.g. constant dev labels) never beats -inf: keep the first epoch then.
                if score > best or best_state is None:
                    best = score
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                    best_outputs = outputs
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": {t: sums[t] / schedule.steps_per_epoch for t in train},
                    "dev": scores,
                    "selection": score,
                    "train_seconds": round(tally["seconds"], 1),
                    "examples_per_second": round(tally["examples"] / tally["seconds"], 1),
                    "steps": tally["logged"],
                }
            )
            progress.console.print(
                f"{label} epoch {epoch}: dev " + ", ".join(f"{t} {s:.4f}" for t, s in scores.items())
            )
            done, tally = 0, _fresh_tally(train)
            if request is not None and request.signum is not None and epoch < cfg.epochs:
                raise stop(request.signum, epoch + 1, 0)
            if resume and epoch < cfg.epochs:
                save(epoch + 1, 0)
    model.load_state_dict(best_state)
    if resume:
        # A stage that trains several models (the specialists) skips the finished ones when resumed.
        resume.save({"finished": True, "model": model.state_dict(), "history": history, "dev_outputs": best_outputs})
    return history, best_outputs
