"""Training one run: its data, model, losses and gradient strategy, the loop, the saved run."""

from __future__ import annotations

import signal
import tempfile
from contextlib import nullcontext
from pathlib import Path

import torch

from optiminbert import distributed
from optiminbert.batching import sequential_batches
from optiminbert.contrastive import CONTRASTIVE, positive_pairs
from optiminbert.errors import UserError
from optiminbert.live import LiveLog
from optiminbert.losses import contrastive_loss, task_loss
from optiminbert.multitask import MultitaskBert
from optiminbert.phases import Phase, Run
from optiminbert.prepared import FeatureSplit, TaskSplit, check_tokenizer, split_path
from optiminbert.locks import directory_lock
from optiminbert.resume import Interrupted, ResumeFile, StopRequest, fingerprint
from optiminbert.rundir import RunDir, build_model
from optiminbert.runtime import Runtime, autocast, precision_name, seed_everything
from optiminbert.settings import Settings
from optiminbert.surgery import make_strategy
from optiminbert.train import fit


@torch.inference_mode()
def encode_features(model: MultitaskBert, split: TaskSplit, runtime: Runtime, settings: Settings) -> FeatureSplit:
    """The frozen encoder's pooled representation of every example, computed once in eval mode."""
    model.to(runtime.device).eval()
    features = torch.empty(len(split), model.encoder.config.hidden_size)
    for indices in sequential_batches(split.lengths, settings.eval_batch_size):
        batch = runtime.to_device(split.batch(indices, model.pairs, settings.max_length))
        with autocast(runtime.device, runtime.dtype):
            features[indices] = model.features(batch).float().cpu()
    return FeatureSplit(features, split.labels)


def train_run(run: Run, settings: Settings, prepared_dir: str | Path, out_dir: str | Path,
              resume_path: str | Path | None = None, resume: bool = False, phase: Phase | None = None,
              live_dir: str | Path | None = None) -> list[dict]:
    """Train ``run`` (of ``phase``, which may shape its training data and losses) and save it
    into ``out_dir``; returns the per-epoch history. With ``live_dir``, its metrics are logged
    there with DVCLive as it trains (``live.py``).

    ``resume_path`` is where an interrupted run keeps its state (see ``resume.py``); with
    ``resume`` a state saved there under the same settings is continued, else it is discarded.
    The caller removes the file once the stage's outputs are all written."""
    distributed.init()
    # Only the main rank writes the run, so only it holds the directory.
    with directory_lock(out_dir) if distributed.is_main() else nullcontext():
        return _train_locked(run, settings, prepared_dir, Path(out_dir), resume_path, resume, phase, live_dir)


def time_steps(run: Run, settings: Settings, steps: int, prepared_dir: str | Path, warmup: int = 0) -> dict[str, float]:
    """How long ``steps`` round-robin steps of ``run`` take from a fresh model, through its real
    code path (``train_run`` into a temporary folder): the training loop's own seconds, its
    milliseconds per step and examples per second (dev scoring and saving follow the steps and
    are not counted). ``warmup`` steps first, a run of their own: a process's first steps pay
    for allocations and thread pools. No phase adjusts the step count (the specialists' matching)."""
    settings = settings.replace(epochs=1, eval_every=0)
    for count in (warmup, steps) if warmup else (steps,):
        with tempfile.TemporaryDirectory() as out:
            history = train_run(run, settings.replace(steps_per_epoch=count), prepared_dir, out)
    seconds = history[0]["train_seconds"]
    return {"seconds": seconds, "ms_per_step": 1000 * seconds / steps, "examples_per_second": history[0]["examples_per_second"]}


def _train_locked(run: Run, settings: Settings, prepared_dir: str | Path, out_dir: Path,
                  resume_path: str | Path | None, resume: bool, phase: Phase | None,
                  live_dir: str | Path | None) -> list[dict]:
    tasks = list(run.tasks)
    runtime = Runtime.from_settings(settings)
    strategy = make_strategy(settings, len(tasks))
    seed_everything(settings.seed)
    model = build_model(settings, tasks, run.pairs, run.frozen)
    distributed.broadcast_parameters(model)
    if distributed.active():
        torch.manual_seed(settings.seed + distributed.rank())  # each rank draws its own dropout masks
    check_tokenizer(prepared_dir, settings.checkpoint)
    train = {t: TaskSplit.load(split_path(prepared_dir, t, "train")) for t in tasks}
    dev = {t: TaskSplit.load(split_path(prepared_dir, t, "dev")) for t in tasks}
    if run.frozen:
        train = {t: encode_features(model, s, runtime, settings) for t, s in train.items()}
        dev = {t: encode_features(model, s, runtime, settings) for t, s in dev.items()}
    losses = {t: task_loss(t, run.pairs, settings) for t in tasks}
    if settings.contrastive != "none":
        if run.pairs != "siamese":
            raise UserError("contrastive losses train sentence embeddings: use them in a siamese phase, not a cross-encoded one")
        positives = positive_pairs(settings, train, model.encoder.config.vocab_size, runtime)
        if positives is not None:  # e.g. the sentiment specialist: its own data has no pairs
            losses[CONTRASTIVE] = contrastive_loss(settings)
            train[CONTRASTIVE] = positives
    extra = {}
    if phase is not None:
        train, losses, extra = phase.training(run, settings, train, losses)
    state = None
    if resume_path is not None:
        sizes = {t: len(s) for t, s in train.items()}
        shape = (run.pairs, run.frozen, sizes, distributed.world_size())
        state = ResumeFile(Path(resume_path), fingerprint(settings.record(), tasks, *shape, extra))
        if not resume:
            state.clear()
    # A resumable run defers Ctrl-C and SIGTERM from its first step to the end of its save: the
    # loop stops at a step and saves its state, the save finishes and then says so.
    live = LiveLog(live_dir, settings.record()) if live_dir is not None and distributed.is_main() else None
    with StopRequest() if state is not None else nullcontext() as request:
        history, dev_outputs = fit(model, train, dev, settings, strategy, runtime, run.name, losses, state, request, live)
        if distributed.is_main():
            RunDir(out_dir).save(model, settings, history, dev_outputs, precision_name(runtime.dtype), frozen=run.frozen)
    signum = distributed.agreed_signal(request.signum) if request is not None else None
    if signum is not None:
        raise Interrupted(
            signum,
            f"{run.name}: stopped by {signal.Signals(signum).name} while saving; the save finished, {out_dir} "
            "is complete; run the same command with --resume (or dvc repro) to continue",
        )
    return history
