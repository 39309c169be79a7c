"""The one training loop that every phase uses: baseline, multitask and specialists.

``fit`` trains with round-robin batches (``roundrobin.py``), scores dev after each epoch (and
every ``eval_every`` steps, for the live curves only: ``live.py``) and keeps the best epoch's
weights. A ``Trainer`` holds what a run carries from step to step, in
small named steps: ``step`` (one batch per task, the gradient strategy, the optimizer),
``run_epoch``, ``select`` (dev scores, best epoch) and ``state_dict`` (what a resumed run needs).
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import nullcontext
from functools import partial
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from optiminbert import distributed
from optiminbert.averaging import WeightAverage
from optiminbert.data import TASKS
from optiminbert.errors import UserError, first_line
from optiminbert.inference import predict
from optiminbert.live import LiveLog
from optiminbert.metrics import selection_score, task_score
from optiminbert.multitask import MultitaskBert
from optiminbert.resume import Interrupted, ResumeFile, StopRequest, rng_state, set_rng_state
from optiminbert.roundrobin import RoundRobin
from optiminbert.runtime import Runtime, adamw, autocast, grad_scaler
from optiminbert.smart import Smart
from optiminbert.surgery import GradientStrategy

LOG_EVERY = 20  # steps per point of the training-loss curve
ADAM = {"betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.0}


LOG_LINES = 10  # progress lines per epoch where stderr is a log, not a terminal


def progress_bar() -> Progress:
    """A live bar in a terminal. In a log (dvc repro's output, CI) nothing redraws: the loop
    prints plain lines instead (``Trainer.run_epoch``), and the console is wide enough that no
    line is cut short."""
    console = Console(stderr=True)  # stdout stays for results (e.g. `optiminbert evaluate`)
    if not console.is_terminal:
        console = Console(stderr=True, width=200)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def evaluate(model: MultitaskBert, dev: dict, runtime: Runtime, settings) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Dev scores per task, and the raw outputs they come from."""
    outputs = {
        task: predict(model, task, split, runtime, settings["eval_batch_size"], settings["max_length"])
        for task, split in dev.items()
    }
    scores = {task: task_score(task, TASKS[task].kind.predictions(outputs[task]), dev[task].labels.numpy()) for task in dev}
    return scores, outputs


def param_groups(model: MultitaskBert, tasks, settings) -> list[dict]:
    """The pretrained body at ``lr``; the heads, which start from scratch and take few steps, at
    ``head_lr`` (with a frozen encoder the heads are all there is, and they train at ``lr``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    heads = {id(p) for task in tasks for p in model.task_parameters(task)}
    body = [p for p in params if id(p) not in heads]
    head_lr = (settings["head_lr"] or settings["lr"]) if body else settings["lr"]
    groups = [{"params": body, "lr": settings["lr"]}, {"params": [p for p in params if id(p) in heads], "lr": head_lr}]
    return [g for g in groups if g["params"]]


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then linear decay to zero at ``total``."""
    if not warmup:
        return 1.0
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def fresh_tally(tasks) -> dict:
    """One epoch's running totals: summed losses, the current logging window, the logged points
    (training losses, dev scores between epochs' ends), time, examples."""
    return {"sums": {t: 0.0 for t in tasks}, "window": {t: 0.0 for t in tasks}, "logged": [], "evals": [],
            "examples": 0, "seconds": 0.0}


class Trainer:
    """One run's training state. ``train`` and ``losses`` share their keys: the dev tasks, plus
    any auxiliary task (the contrastive one)."""

    def __init__(self, model: MultitaskBert, train: dict, dev: dict, settings, strategy: GradientStrategy,
                 runtime: Runtime, label: str, losses: dict[str, torch.nn.Module], live: LiveLog | None = None):
        self.model, self.train, self.dev, self.settings = model, train, dev, settings
        self.strategy, self.runtime, self.label, self.losses, self.live = strategy, runtime, label, losses, live
        model.to(runtime.device).train()
        if settings["compile"]:
            model.encoder.compile(dynamic=True)  # in place: parameter names and saved keys stay the same
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = adamw(param_groups(model, train, settings), **ADAM)
        self.scaler = grad_scaler(runtime)
        batch_size = settings["batch_size"]
        orders = {task: partial(split.shuffled_batches, batch_size) for task, split in train.items()}
        self.schedule = RoundRobin(
            orders, {t: math.ceil(len(s) / batch_size) for t, s in train.items()}, settings["seed"],
            settings["steps_per_epoch"] or None,
        )
        self.epochs = settings["epochs"]
        self.total = total = self.schedule.steps_per_epoch * self.epochs
        warmup = int(settings["warmup"] * total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, partial(lr_factor, total=total, warmup=warmup))
        self.shared = model.shared_parameters()
        self.smart = Smart.from_settings(settings)
        self.task_params = {task: model.task_parameters(task) for task in train}
        self.average = WeightAverage(self.params, settings["ema"]) if settings["ema"] else None
        self.history: list[dict] = []
        self.best, self.best_state, self.best_outputs, self.global_step = -math.inf, None, None, 0
        self.epoch, self.done, self.tally = 1, 0, fresh_tally(train)

    # -- resumable state ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "schedule": self.schedule.state_dict(),
            "strategy": self.strategy.state_dict(), "rng": distributed.gather_objects(rng_state()),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "average": self.average.state_dict() if self.average else None,
            "history": self.history, "best": self.best, "best_state": self.best_state,
            "best_outputs": self.best_outputs, "global_step": self.global_step,
            "epoch": self.epoch, "step": self.done, "tally": self.tally,
        }

    def restore(self, saved: dict[str, Any], resume: ResumeFile, keys: tuple[str, ...]) -> None:
        """Load a saved state whose fingerprint matched; one that is damaged is refused in a line."""
        missing = [k for k in keys if k not in saved]
        try:
            if missing:
                raise KeyError(", ".join(missing))
            self.model.load_state_dict(saved["model"])
            if "optimizer" in keys:
                self.load_state_dict(saved)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise UserError(
                f"{resume.path}: a resume state that does not fit this run ({type(exc).__name__}: {first_line(exc)}); "
                "delete it to start over"
            ) from exc

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.schedule.load_state_dict(saved["schedule"])
        self.strategy.load_state_dict(saved["strategy"])
        if self.scaler:
            self.scaler.load_state_dict(saved["scaler"])
        if self.average:
            self.average.load_state_dict(saved["average"])
        if len(saved["rng"]) != distributed.world_size():
            raise ValueError(f"saved by {len(saved['rng'])} process(es), resumed by {distributed.world_size()}")
        set_rng_state(saved["rng"][distributed.rank()])
        self.history, self.best, self.best_state = saved["history"], saved["best"], saved["best_state"]
        self.best_outputs, self.global_step = saved["best_outputs"], saved["global_step"]
        self.epoch, self.done, self.tally = saved["epoch"], saved["step"], saved["tally"]

    # -- the steps ---------------------------------------------------------------------------

    def slice(self, task: str, indices: torch.Tensor) -> tuple[torch.Tensor, float, bool]:
        """This rank's share of one task's batch: its examples, their loss's weight, and whether
        the loss gathers the whole batch. Data-parallel, a per-example loss is this rank's
        slice's, weighted by the slice's share of the batch; an in-batch loss gathers the whole
        batch on every rank (the gradient returns to each rank's own slice) and each rank takes
        1/ranks of it; a batch too small to split among the ranks is then scored whole by each."""
        ranks = distributed.world_size()
        in_batch = self.losses[task].in_batch and ranks > 1
        if in_batch and len(indices) < ranks:
            return indices, 1 / ranks, False
        mine, share = distributed.shard(indices)
        return mine, 1 / ranks if in_batch else share, in_batch

    def micro_batch(self, task: str, indices: torch.Tensor, index: int) -> tuple[torch.Tensor, float]:
        """Micro-batch ``index`` of ``accumulate`` of a rank's slice, and its fraction of the
        slice: a per-example loss's slice is cut in equal parts; an in-batch loss's stays whole
        (its negatives are the batch), in the first micro-batch."""
        if self.losses[task].in_batch:
            return (indices, 1.0) if index == 0 else (indices[:0], 0.0)
        piece = indices.tensor_split(self.settings["accumulate"])[index]
        return piece, 1.0 if len(piece) == len(indices) else len(piece) / len(indices)

    def task_loss(self, task: str, part: tuple[torch.Tensor, float, bool], index: int, step: int,
                  resume: ResumeFile | None) -> torch.Tensor | None:
        """The weighted loss of one micro-batch of this rank's slice of a task's batch; None if empty."""
        indices, fraction = self.micro_batch(task, part[0], index)
        self.tally["examples"] += len(indices)
        if len(indices) == 0:
            return None
        batch = self.runtime.to_device(self.train[task].batch(indices, self.model.pairs, self.settings["max_length"]))
        with autocast(self.runtime.device, self.runtime.dtype):
            prediction, labels = self.model(task, batch), batch["labels"]
            # SMART smooths the study tasks' outputs, each rank on its own examples; a frozen
            # encoder's features have no embeddings to perturb.
            smooth = self.smart is not None and task in TASKS and "features" not in batch
            regulariser = self.smart(self.model, task, batch, prediction) if smooth else None
            if part[2]:
                prediction, labels = distributed.gather_batch(prediction), distributed.gather_batch(labels)
            loss = self.losses[task](prediction, labels)
        value = loss.item()  # one device sync per task and micro-batch
        total = value + (regulariser.item() if regulariser is not None else 0.0)
        if not math.isfinite(total):
            kept = f"; the state after epoch {self.epoch - 1} is kept in {resume.path}" if resume and self.history else ""
            raise UserError(f"{self.label}: {task} loss became {total} at epoch {self.epoch} step {step}; lower lr{kept}")
        if regulariser is not None:
            loss = loss + regulariser  # the curves keep the task's own loss
        self.tally["sums"][task] += value * fraction  # the slice's loss, as its micro-batches add up to it
        self.tally["window"][task] += value * fraction
        return loss * (part[1] * fraction)

    def step(self, indices: dict[str, torch.Tensor], step: int, resume: ResumeFile | None) -> None:
        """One round-robin step: a batch of every task (in ``accumulate`` micro-batches whose
        gradients add up to the batch's), their gradients combined by the strategy."""
        for loss in self.losses.values():
            loss.at_step(self.global_step, self.total)
        parts = {task: self.slice(task, idx) for task, idx in indices.items()}
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler and self.strategy.reads_losses:
            self.strategy.loss_scale = self.scaler.get_scale()
        for index in range(self.settings["accumulate"]):
            losses = {task: self.task_loss(task, part, index, step, resume) for task, part in parts.items()}
            if self.scaler:  # one scale for every task: PCGrad's projections do not change with it
                losses = {task: loss if loss is None else self.scaler.scale(loss) for task, loss in losses.items()}
            self.strategy.accumulate(losses, self.shared, self.task_params)
        self.strategy.apply(self.shared, self.task_params)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.settings["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(self.params, self.settings["grad_clip"])
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        if self.average:
            self.average.update()
        self.global_step += 1
        if step % LOG_EVERY == 0 or step == self.schedule.steps_per_epoch:
            interval = step % LOG_EVERY or LOG_EVERY
            window = self.tally["window"]
            losses = {t: window[t] / interval for t in self.train}
            self.tally["logged"].append({"step": self.global_step, **losses})
            window.update({task: 0.0 for task in self.train})
            if self.live:
                self.live.train_losses(self.global_step, losses)

    def select(self) -> dict[str, float]:
        """Dev scores after an epoch (of the weights' average, with ``ema``); the best epoch's
        weights and dev outputs are kept."""
        with self.average.applied() if self.average else nullcontext():
            scores, outputs = evaluate(self.model, self.dev, self.runtime, self.settings)
            score = selection_score(scores)
            # A NaN score (e.g. constant dev labels) never beats -inf: keep the first epoch then.
            if score > self.best or self.best_state is None:
                self.best = score
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
                self.best_outputs = outputs
        if self.live:
            self.live.dev_scores(self.global_step, scores)
        steps, sums = self.schedule.steps_per_epoch, self.tally["sums"]
        self.history.append(
            {
                "epoch": self.epoch,
                "train_loss": {t: sums[t] / steps for t in self.train},
                "dev": scores,
                "selection": score,
                "train_seconds": round(self.tally["seconds"], 3),
                "examples_per_second": round(self.tally["examples"] / self.tally["seconds"], 1),
                "steps": self.tally["logged"],
                "evals": self.tally["evals"],
            }
        )
        return scores

    def score_between(self) -> dict[str, float]:
        """Dev scores within an epoch, for the curves: they choose nothing."""
        with self.average.applied() if self.average else nullcontext():
            scores, _ = evaluate(self.model, self.dev, self.runtime, self.settings)
        self.tally["evals"].append({"step": self.global_step, "dev": scores})
        if self.live:
            self.live.dev_scores(self.global_step, scores)
        return scores

    def run_epoch(self, progress: Progress, request: StopRequest | None, resume: ResumeFile | None) -> None:
        steps = self.schedule.steps_per_epoch
        bar = progress.add_task(f"{self.label} epoch {self.epoch}/{self.epochs}", total=steps, completed=self.done, info="")
        started = time.perf_counter() - self.tally["seconds"]
        for step, indices in enumerate(self.schedule.epoch(self.done), self.done + 1):
            self.step(indices, step, resume)
            if self.settings["eval_every"] and step % self.settings["eval_every"] == 0 and step < steps:
                scoring = time.perf_counter()
                scores = self.score_between()
                started += time.perf_counter() - scoring  # training time: scoring is not part of it
                progress.console.print(f"{self.label} epoch {self.epoch} step {step}: dev "
                                       + ", ".join(f"{t} {s:.4f}" for t, s in scores.items()), highlight=False)
            self.tally["seconds"] = time.perf_counter() - started
            shown = " ".join(f"{t} {self.tally['sums'][t] / step:.3f}" for t in self.train)
            rate = self.tally["examples"] / self.tally["seconds"]
            progress.update(bar, advance=1, info=f"loss {shown} | {rate:.0f} ex/s")
            if not progress.console.is_terminal and (step % max(1, steps // LOG_LINES) == 0 or step == steps):
                elapsed = time.strftime("%H:%M:%S", time.gmtime(self.tally["seconds"]))
                progress.console.print(f"{self.label} epoch {self.epoch}/{self.epochs}: step {step}/{steps}, "
                                       f"loss {shown}, {rate:.0f} ex/s, {elapsed} elapsed", highlight=False)
            signum = distributed.agreed_signal(request.signum) if request is not None else None
            if signum is not None and step < steps:
                self.done = step
                raise self.stopped(signum, resume)

    def stopped(self, signum: int, resume: ResumeFile) -> Interrupted:
        """Save the state at the current step and say how to continue."""
        resume.save(self.state_dict())
        where = (f"epoch {self.epoch} step {self.done}/{self.schedule.steps_per_epoch}" if self.done
                 else f"the end of epoch {self.epoch - 1}")
        return Interrupted(
            signum,
            f"{self.label}: stopped by {signal.Signals(signum).name} at {where}; state saved to {resume.path}; "
            "run the same command with --resume (or dvc repro) to continue",
        )

    def fit(self, resume: ResumeFile | None = None, request: StopRequest | None = None
            ) -> tuple[list[dict], dict[str, torch.Tensor]]:
        saved = resume.load() if resume else None
        if saved is not None:
            if saved.get("finished"):
                self.restore(saved, resume, ("model", "history", "dev_outputs"))
                if self.live:
                    self.live.replay(saved["history"], fresh_tally(self.train))
                return saved["history"], saved["dev_outputs"]
            self.restore(saved, resume, tuple(self.state_dict()))
            if self.live:
                self.live.replay(self.history, self.tally)
        owned = StopRequest() if request is None and resume else None  # a caller's request is entered already
        request = request or owned
        with owned or nullcontext(), progress_bar() as progress:
            progress.console.print(f"{self.label}: {self.epochs} epoch(s) of {self.schedule.steps_per_epoch} steps")
            if saved is not None:
                progress.console.print(f"{self.label}: resuming from {resume.path} at epoch {self.epoch} step {self.done}")
            while self.epoch <= self.epochs:
                self.run_epoch(progress, request, resume)
                scores = self.select()
                progress.console.print(f"{self.label} epoch {self.epoch}: dev " + ", ".join(f"{t} {s:.4f}" for t, s in scores.items()))
                self.epoch, self.done, self.tally = self.epoch + 1, 0, fresh_tally(self.train)
                if self.epoch <= self.epochs:
                    signum = distributed.agreed_signal(request.signum) if request is not None else None
                    if signum is not None:
                        raise self.stopped(signum, resume)
                    if resume:
                        resume.save(self.state_dict())
        self.model.load_state_dict(self.best_state)
        if resume:
            # A stage that trains several models (the specialists) skips the finished ones when resumed.
            resume.save({"finished": True, "model": self.model.state_dict(), "history": self.history, "dev_outputs": self.best_outputs})
        return self.history, self.best_outputs


def fit(model: MultitaskBert, train: dict, dev: dict, settings, strategy: GradientStrategy, runtime: Runtime,
        label: str, losses: dict[str, torch.nn.Module], resume: ResumeFile | None = None,
        request: StopRequest | None = None, live: LiveLog | None = None) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Train, keep the best epoch's weights in ``model`` and return the per-epoch records and
    that epoch's raw dev outputs (evaluation reuses them instead of scoring dev again).

    With ``resume``, a state saved there under the same settings is continued from; Ctrl-C or
    SIGTERM saves the state there and raises ``Interrupted``; every finished epoch, and the
    finished run, are saved there too (callers clear it once the run's outputs are written).
    ``request``: a caller's stop request (already entered) to answer instead of a new one;
    ``live``: where the run's metrics go as it trains."""
    return Trainer(model, train, dev, settings, strategy, runtime, label, losses, live).fit(resume, request)
