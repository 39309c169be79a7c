"""A trained run on disk, and the one place a model is built from settings.

A run directory holds ``encoder/`` (Hugging Face layout, with the tokenizer's files),
``heads.safetensors`` (every weight outside the encoder), ``dev_outputs.safetensors`` (the
selected epoch's raw dev outputs, so evaluation at the same precision need not score dev again)
and ``run.json`` (tasks, pair design, the settings the run used, the per-epoch history). A run is
saved as a whole: written into a temporary directory beside it and swapped into place in one step,
so the directory holds the old complete run or the new one, never parts of both.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from optiminbert.atomic import atomic_dir, write_json_atomic, write_safetensors_atomic
from optiminbert.checkpoints import resolve_checkpoint
from optiminbert.errors import UserError
from optiminbert.model import BertModel
from optiminbert.multitask import MultitaskBert
from optiminbert.runtime import Runtime, precision_name
from optiminbert.settings import Settings

RUN_JSON = "run.json"
HEADS = "heads.safetensors"
DEV_OUTPUTS = "dev_outputs.safetensors"
ENCODER = "encoder"
TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json")


def build_model(settings: Settings, tasks: list[str], pairs: str, frozen: bool = False,
                checkpoint: str | Path | None = None) -> MultitaskBert:
    """The run's model: ``checkpoint`` (default: the settings') under the heads its tasks and pair
    design need, with the parameters its settings freeze frozen."""
    encoder = BertModel.from_pretrained(checkpoint if checkpoint is not None else settings.checkpoint)
    encoder.config.check_length("max_length", settings.max_length)
    layers = settings.freeze_layers
    if layers > encoder.config.num_hidden_layers:
        raise UserError(f"param freeze_layers must be an integer from 0 to {encoder.config.num_hidden_layers}, got {layers!r}")
    if frozen:
        encoder.requires_grad_(False)
    elif layers:
        # Nothing below the first trained layer needs a gradient, so backward stops there:
        # each frozen layer saves its share of the backward pass, not just its Adam update.
        encoder.embeddings.requires_grad_(False)
        for layer in encoder.layers[:layers]:
            layer.requires_grad_(False)
    elif settings.freeze_word_embeddings:
        # The 30k-row table is half of a small encoder's weights and barely moves in a short
        # fine-tune; freezing it skips its dense gradient and Adam update.
        encoder.embeddings.word.weight.requires_grad_(False)
    return MultitaskBert(
        encoder, tasks, pairs=pairs, dropout=settings.dropout, pooling=settings.pooling,
        token_alignment=settings.token_alignment,
    )


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def encoder_path(self) -> Path:
        """The trained encoder, with the tokenizer files of the checkpoint it started from."""
        return self.path / ENCODER

    def exists(self) -> bool:
        return (self.path / RUN_JSON).is_file()

    def save(self, model: MultitaskBert, settings: Settings, history: list[dict], dev_outputs: dict[str, torch.Tensor],
             precision: str, frozen: bool = False) -> None:
        source = resolve_checkpoint(settings.checkpoint)
        heads = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("encoder.")}
        meta = {
            "tasks": list(model.tasks), "pairs": model.pairs, "frozen": frozen, "settings": settings.record(),
            "history": history, "dev_outputs_precision": precision,
        }
        with atomic_dir(self.path) as tmp:
            write_safetensors_atomic({t: v.contiguous() for t, v in dev_outputs.items()}, tmp / DEV_OUTPUTS)
            model.encoder.save_pretrained(tmp / ENCODER)
            for name in TOKENIZER_FILES:
                if (source / name).is_file():
                    shutil.copyfile(source / name, tmp / ENCODER / name)
            write_safetensors_atomic(heads, tmp / HEADS)
            write_json_atomic(meta, tmp / RUN_JSON)

    def meta(self) -> dict[str, Any]:
        path = self.path / RUN_JSON
        if not path.is_file():
            raise UserError(f"{self.path}: no trained model here ({RUN_JSON} missing); train it first")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not a readable run record ({exc}); train the run again") from exc
        missing = [k for k in ("tasks", "pairs", "settings", "history") if not isinstance(meta, dict) or k not in meta]
        if missing:
            raise UserError(f"{path}: not a run record of this version (no {', '.join(missing)}); train the run again")
        return meta

    def settings(self, meta: dict[str, Any] | None = None) -> Settings:
        return Settings.from_record((meta or self.meta())["settings"])

    def load(self) -> tuple[MultitaskBert, dict[str, Any]]:
        """The trained model, in eval mode, and its run record. Heads are checked key by key."""
        meta = self.meta()
        model = build_model(self.settings(meta), meta["tasks"], meta["pairs"], checkpoint=self.encoder_path)
        path = self.path / HEADS
        try:
            heads = load_file(path)
        except (OSError, SafetensorError) as exc:
            raise UserError(f"{path}: unreadable heads file ({exc}); train the run again") from exc
        expected = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
        missing, unexpected = sorted(set(expected) - set(heads)), sorted(set(heads) - set(expected))
        wrong = sorted(k for k in set(expected) & set(heads) if heads[k].shape != expected[k].shape)
        if missing or unexpected or wrong:
            problems = [f"{label} {', '.join(keys)}" for label, keys in
                        (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
            raise UserError(f"{path}: does not match the run's model ({'; '.join(problems)}); train the run again")
        model.load_state_dict(heads, strict=False)
        return model.eval(), meta

    def dev_outputs(self, meta: dict[str, Any], runtime: Runtime) -> dict[str, torch.Tensor]:
        """The run's dev outputs from training, if they were computed at the precision asked for
        now (an fp32 evaluation of a bf16-trained run scores dev again); else none."""
        path = self.path / DEV_OUTPUTS
        if meta.get("dev_outputs_precision") != precision_name(runtime.dtype) or not path.is_file():
            return {}
        return load_file(path)
