"""The study's training runs: the baseline, the multitask phases and the specialists.

Each run builds a ``MultitaskBert`` for its tasks, trains it with the one loop in ``train.py``,
and saves it as ``<dir>/encoder`` (Hugging Face layout) + ``heads.safetensors`` + ``run.json``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from optiminbert import distributed
from optiminbert.atomic import write_csv_atomic, write_json_atomic, write_safetensors_atomic
from optiminbert.checkpoints import resolve_checkpoint
from optiminbert.contrastive import CONTRASTIVE, PositivePairs
from optiminbert.data import TASKS
from optiminbert.errors import UserError
from optiminbert.losses import contrastive_loss, loss_for
from optiminbert.model import BertModel
from optiminbert.multitask import STS_SCALE, MultitaskBert
from optiminbert.prepared import FeatureSplit, TaskSplit, split_path
from optiminbert.resume import ResumeFile, fingerprint
from optiminbert.runtime import autocast, configure_cpu, precision_name, resolve_device, resolve_precision, seed_everything
from optiminbert.surgery import make_strategy
from optiminbert.train import Runtime, TrainConfig, fit

STUDY_TASKS = ("sst", "quora", "sts")


@dataclass(frozen=True)
class Phase:
    name: str
    pairs: str  # "cross" | "siamese"
    joint: bool  # one shared model for all tasks, or one specialist per task
    description: str


PHASES = {
    "mtl": Phase("mtl", "cross", True, "round-robin multitask, cross-encoded pairs, one head per task"),
    "mtl_embed": Phase("mtl_embed", "siamese", True, "multitask with the shared sentence-embedding layer"),
    "specialist": Phase("specialist", "siamese", False, "the embeddings architecture, one model per task"),
}
DEV_OUTPUTS = "dev_outputs.safetensors"
BASELINE_TASKS = ("sst", "cfimdb")
BASELINE_MODES = ("pretrain", "finetune")


def train_config(p: dict[str, Any]) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    try:
        return TrainConfig(**{k: v for k, v in p.items() if k in names})
    except TypeError as exc:
        raise UserError(f"invalid params: {exc}") from exc


def runtime_for(p: dict[str, Any]) -> Runtime:
    configure_cpu()
    device = resolve_device(p["device"])
    if device.type == "cuda" and distributed.active():
        device = distributed.local_device()  # one GPU per rank
    return Runtime(device, resolve_precision(p["precision"], device))


def build_model(p: dict[str, Any], tasks: list[str], pairs: str, frozen: bool) -> MultitaskBert:
    if not 0 <= p["dropout"] < 1:
        raise UserError(f"param dropout must be in [0, 1), got {p['dropout']!r}")
    encoder = BertModel.from_pretrained(p["checkpoint"])
    encoder.config.check_length("max_length", p["max_length"])
    layers = p["freeze_layers"]
    if isinstance(layers, bool) or not isinstance(layers, int) or not 0 <= layers <= encoder.config.num_hidden_layers:
        raise UserError(
            f"param freeze_layers must be an integer from 0 to {encoder.config.num_hidden_layers}, got {layers!r}"
        )
    if frozen:
        encoder.requires_grad_(False)
    elif layers:
        # Nothing below the first trained layer needs a gradient, so backward stops there:
        # each frozen layer saves its share of the backward pass, not just its Adam update.
        encoder.embeddings.requires_grad_(False)
        for layer in encoder.layers[:layers]:
            layer.requires_grad_(False)
    elif p["freeze_word_embeddings"]:
        # The 30k-row table is half of a small encoder's weights and barely moves in a short
        # fine-tune; freezing it skips its dense gradient and Adam update (about 40% faster on CPU).
        encoder.embeddings.word.weight.requires_grad_(False)
    return MultitaskBert(
        encoder, tasks, pairs=pairs, dropout=p["dropout"], pooling=p["pooling"], token_alignment=p["token_alignment"]
    )


@torch.inference_mode()
def encode_features(model: MultitaskBert, split: TaskSplit, runtime: Runtime, cfg: TrainConfig) -> FeatureSplit:
    """The frozen encoder's pooled [CLS] for every example, computed once in eval mode."""
    from optiminbert.batching import sequential_batches

    model.to(runtime.device).eval()
    features = torch.empty(len(split), model.encoder.config.hidden_size)
    for indices in sequential_batches(split.lengths, cfg.eval_batch_size):
        batch = runtime.to_device(split.batch(indices, model.pairs, cfg.max_length))
        with autocast(runtime.device, runtime.dtype):
            features[indices] = model.features(batch).float().cpu()
    return FeatureSplit(features, split.labels)


def positive_pairs(
    p: dict[str, Any], pairs: str, train: dict[str, TaskSplit], model: MultitaskBert, runtime: Runtime, cfg: TrainConfig
) -> PositivePairs | None:
    """The contrastive task's data from this run's own pair tasks, with the guide's embeddings
    for GISTEmbed."""
    if pairs != "siamese":
        raise UserError("contrastive losses train sentence embeddings: use them in mtl_embed or specialist, not a cross-encoded phase")
    if not 0 <= p["contrastive_sts_min"] <= STS_SCALE:  # above the scale, STS would silently give no positives
        raise UserError(f"param contrastive_sts_min must be within STS's 0..5, got {p['contrastive_sts_min']!r}")
    positives = PositivePairs.from_splits(
        {t: s for t, s in train.items() if t in ("quora", "sts")}, p["contrastive_sts_min"]
    )
    if positives is not None and p["contrastive"] == "gist":
        guide = BertModel.from_pretrained(p["guide"])
        if guide.config.vocab_size != model.encoder.config.vocab_size:
            raise UserError(f"guide {p['guide']!r} must share the trained checkpoint's vocabulary (its token ids are reused)")
        positives.add_guide(guide, runtime, cfg.eval_batch_size)
    return positives


def train_run(
    p: dict[str, Any],
    tasks: list[str],
    pairs: str,
    prepared_dir: str | Path,
    out_dir: str | Path,
    label: str,
    frozen: bool = False,
    resume_path: str | Path | None = None,
    resume: bool = False,
) -> list[dict]:
    """Train one model on ``tasks`` and save it; returns the per-epoch history.

    ``resume_path`` is where an interrupted run keeps its state (see ``resume.py``); with
    ``resume`` a state saved there under the same settings is continued, else it is discarded.
    The caller removes the file once the stage's outputs are all written."""
    cfg = train_config(p)
    distributed.init()
    runtime = runtime_for(p)
    strategy = make_strategy(p["surgery"], cfg.seed, len(tasks))
    seed_everything(cfg.seed)
    model = build_model(p, tasks, pairs, frozen)
    distributed.broadcast_parameters(model)
    if distributed.active():
        torch.manual_seed(cfg.seed + distributed.rank())  # each rank draws its own dropout masks
    train = {t: TaskSplit.load(split_path(prepared_dir, t, "train")) for t in tasks}
    dev = {t: TaskSplit.load(split_path(prepared_dir, t, "dev")) for t in tasks}
    if frozen:
        train = {t: encode_features(model, s, runtime, cfg) for t, s in train.items()}
        dev = {t: encode_features(model, s, runtime, cfg) for t, s in dev.items()}
    losses = {t: loss_for(TASKS[t].kind, pairs, p["online_contrastive"], p["online_contrastive_margin"]) for t in tasks}
    if p["contrastive"] != "none":
        losses[CONTRASTIVE] = contrastive_loss(p["contrastive"], p)
        positives = positive_pairs(p, pairs, train, model, runtime, cfg)
        if positives is None:
            del losses[CONTRASTIVE]  # e.g. the sentiment specialist: its own data has no pairs
        else:
            train[CONTRASTIVE] = positives
    state = None
    # Resuming restores one process's RNG and data position; data-parallel runs start over.
    if resume_path is not None and not distributed.active():
        sizes = {t: len(s) for t, s in train.items()}
        state = ResumeFile(Path(resume_path), fingerprint(p, tasks, pairs, frozen, sizes))
        if not resume:
            state.clear()
    history, dev_outputs = fit(model, train, dev, cfg, strategy, runtime, label, losses, state)
    if distributed.is_main():
        meta = {"tasks": tasks, "pairs": pairs, "frozen": frozen, "params": p, "history": history}
        save_run(model, out_dir, meta, dev_outputs, precision_name(runtime.dtype))
    return history


def save_run(
    model: MultitaskBert, out_dir: str | Path, meta: dict[str, Any], dev_outputs: dict[str, torch.Tensor], precision: str
) -> None:
    """The encoder, the heads, the selected epoch's raw dev outputs (computed at ``precision``,
    so evaluation at the same precision need not score dev again) and ``run.json``."""
    out_dir = Path(out_dir)
    write_safetensors_atomic({t: v.contiguous() for t, v in dev_outputs.items()}, out_dir / DEV_OUTPUTS)
    meta = {**meta, "dev_outputs_precision": precision}
    model.encoder.save_pretrained(out_dir / "encoder")
    source = resolve_checkpoint(meta["params"]["checkpoint"])
    for name in ("vocab.txt", "tokenizer_config.json"):
        if (source / name).is_file():
            shutil.copyfile(source / name, out_dir / "encoder" / name)
    heads = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    write_safetensors_atomic(heads, out_dir / "heads.safetensors")
    write_json_atomic(meta, out_dir / "run.json")  # written last: its presence marks a complete run


def load_run(run_dir: str | Path) -> tuple[MultitaskBert, dict[str, Any]]:
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file():
        raise UserError(f"{run_dir}: no trained model here (run.json missing); train it first")
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    encoder = BertModel.from_pretrained(run_dir / "encoder")
    model = MultitaskBert(
        encoder, meta["tasks"], pairs=meta["pairs"], dropout=meta["params"]["dropout"],
        pooling=meta["params"].get("pooling", "cls"), token_alignment=meta["params"].get("token_alignment", False),
    )
    model.load_state_dict(load_file(run_dir / "heads.safetensors"), strict=False)
    return model.eval(), meta


def load_dev_outputs(run_dir: str | Path, meta: dict[str, Any], runtime: Runtime) -> dict[str, torch.Tensor]:
    """The run's dev outputs from training, if they were computed at the precision asked for
    now (an fp32 evaluation of a bf16-trained run scores dev again); else none."""
    path = Path(run_dir) / DEV_OUTPUTS
    if meta.get("dev_outputs_precision") != precision_name(runtime.dtype) or not path.is_file():
        return {}
    return load_file(path)


def write_curves(history: list[dict], plots_dir: str | Path, name: str) -> None:
    """Learning curves for `dvc plots`: per epoch (train loss, dev score per task) into
    ``curves/<name>.csv`` and the training loss every few steps into ``steps/<name>.csv``."""
    tasks = list(history[0]["dev"])
    header = ["epoch"] + [f"{t}_loss" for t in tasks] + [f"{t}_dev" for t in tasks]
    rows = [
        [h["epoch"]] + [round(h["train_loss"][t], 5) for t in tasks] + [round(h["dev"][t], 5) for t in tasks]
        for h in history
    ]
    write_csv_atomic(header, rows, Path(plots_dir) / "curves" / f"{name}.csv")
    trained = list(history[0]["train_loss"])  # the dev tasks, and the contrastive task if any
    steps = [[s["step"]] + [round(s[t], 5) for t in trained] for h in history for s in h["steps"]]
    write_csv_atomic(["step"] + [f"{t}_loss" for t in trained], steps, Path(plots_dir) / "steps" / f"{name}.csv")
