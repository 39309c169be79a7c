"""minBERT: our own BERT encoder, loading Hugging Face BERT checkpoints.

One file for the whole encoder, nanoGPT style: a config dataclass read from a Hugging Face
``config.json``, the embedding, attention and transformer layers, the pooler, and
``from_pretrained`` / ``save_pretrained`` that map checkpoint keys explicitly.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from optiminbert.checkpoints import read_json_object, resolve_checkpoint
from optiminbert.errors import UserError, first_line


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_json(cls, path: str | Path) -> "BertConfig":
        path = Path(path)
        raw = read_json_object(path, "model config")
        if raw.get("model_type", "bert") != "bert":
            raise UserError(f"{path}: model_type is {raw['model_type']!r}, not a BERT checkpoint")
        for f in fields(cls):
            if f.name in raw:
                problem = _config_problem(f.name, raw[f.name], f.type)
                if problem:
                    raise UserError(f"{path}: {f.name} {problem}, got {raw[f.name]!r}")
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in raw.items() if k in known})
        if config.hidden_size % config.num_attention_heads:
            raise UserError(
                f"{path}: hidden_size {config.hidden_size} is not divisible by "
                f"num_attention_heads {config.num_attention_heads}"
            )
        if config.hidden_act not in _ACTIVATIONS:
            raise UserError(f"{path}: unsupported hidden_act {config.hidden_act!r}")
        return config

    def check_length(self, key: str, value: Any) -> None:
        """A params.yaml length (``max_length``, ``cfimdb_max_length``) this checkpoint can embed."""
        # 3: [CLS], one token, [SEP]; beyond the checkpoint's positions, long texts would have none.
        positions = self.max_position_embeddings
        if isinstance(value, bool) or not isinstance(value, int) or not 3 <= value <= positions:
            raise UserError(f"param {key} must be a whole number from 3 to {positions} (the checkpoint's positions), got {value!r}")

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        # These two fields let transformers.BertModel.from_pretrained read our saved encoders.
        out.update(model_type="bert", architectures=["BertModel"])
        return out


def _config_problem(name: str, value: Any, kind: str) -> str | None:
    """Why a config.json value cannot be used (None if it can): sizes are positive whole numbers,
    dropout probabilities lie in [0, 1), the epsilon is positive."""
    if kind == "str":
        return None if isinstance(value, str) else "must be a string"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "must be a number"
    if kind == "int":
        if not isinstance(value, int):
            return "must be a whole number"
        low = 0 if name == "pad_token_id" else 1
        return None if value >= low else f"must be at least {low}"
    if name.endswith("dropout_prob"):
        return None if 0 <= value < 1 else "must be a probability from 0 to below 1"
    return None if value > 0 and value != float("inf") else "must be a positive number"


_ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


class BertOutput(NamedTuple):
    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout``, with CPU masks drawn as 16-bit random integers (p rounded to 1/65536).

    On CPU, torch draws one Bernoulli sample per element; filling the same mask from 64-bit
    random words is several times faster, and mask drawing was a large share of a CPU training
    step (docs/performance.md). CUDA keeps torch's fused kernel."""
    if not training or p == 0.0 or x.device.type != "cpu":
        return F.dropout(x, p, training)
    n = x.numel()
    # Every 16-bit lane of a 64-bit word is uniform (the whole signed range is drawn).
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    keep = words.view(torch.int16)[:n].view(x.shape) >= round(p * 65536) - 32768
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))


def packed_rows(attention_mask: torch.Tensor, inference: bool = True, training: bool = False) -> torch.Tensor | None:
    """Where a padded CPU batch's real tokens sit in its flattened (batch * length) layout, when
    the batch is to be run packed; else None. ``inference``, ``training``: whether batches run
    without autograd (inference, frozen-feature encoding) and with it are packed (``BertModel``'s
    ``pack_inference`` and ``pack_training``).

    On CPU the cost is the matmuls, which scale with the token slots they see: with the real
    tokens packed, every linear layer (and LayerNorm, GELU) skips the padding, at the price of
    one scatter and one gather per layer around attention, which keeps the padded layout. That
    pays for inference but not for training, whose backward pass scatters and gathers again; GPUs
    are bound by kernel launches on this model's batches, not FLOPs, so they keep the padded
    layout (measurements: docs/performance.md)."""
    if attention_mask.device.type != "cpu" or not (training if torch.is_grad_enabled() else inference):
        return None
    keep = attention_mask.flatten() != 0
    return None if keep.all() else keep.nonzero().squeeze(1)


def side_by_side(sequence_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For rows holding several sequences side by side (``BertModel.forward``'s
    ``sequence_ids``): which keys each query may attend to, (batch, length, length), and each
    token's position within its own sequence, (batch, length). Padding queries see every real
    key, as with a plain padding mask: no query has all its keys masked."""
    query, key = sequence_ids[:, :, None], sequence_ids[:, None, :]
    keys = ((query == key) | (query == 0)) & (key != 0)
    positions = torch.arange(sequence_ids.shape[1], device=sequence_ids.device)
    starts = sequence_ids != F.pad(sequence_ids, (1, 0), value=-1)[:, :-1]
    return keys, positions - torch.where(starts, positions, 0).cummax(dim=1).values


class Dropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class Embeddings(nn.Module):
    """Token + position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.segment = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.word(input_ids) + self.position(positions) + self.segment(token_type_ids)
        return self.dropout(self.norm(x))


# CPU attention is plain matmuls and a softmax. SDPA would apply dropout through its unfused
# math path anyway, and without dropout its fused kernel was slower than these matmuls run over
# chunks of batch rows whose (heads, length, length) fp32 scores fit in about 1 MiB, so they stay
# in a core's cache. Only inference chunks: with autograd, chunks made training slower. The
# scores are in q's precision, bf16 under autocast as in training: fp32 ones, as SDPA's kernel
# keeps them, halve the outputs' small error against fp32 but take most of the speed-up
# (benchmarks/cpu_attention.py; docs/performance.md).
SCORES_CHUNK_BYTES = 1 << 20


def cpu_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, dropout_p: float,
                  chunk_bytes: int = SCORES_CHUNK_BYTES) -> torch.Tensor:
    """softmax(q kᵀ / √d + bias) v for (batch, heads, length, d) inputs, ``dropout_p`` on the
    attention weights (with ``dropout``'s faster masks); without autograd, the rows whose fp32
    scores fit in ``chunk_bytes`` at a time."""
    rows = q.shape[0]
    if not torch.is_grad_enabled():
        rows = max(1, chunk_bytes // (4 * q.shape[1] * q.shape[2] * k.shape[2]))
    outputs = []
    for start in range(0, q.shape[0], rows):
        chunk = slice(start, start + rows)
        # Scores in q's precision, the softmax in fp32 (the bias is fp32 under autocast).
        scores = q[chunk] @ k[chunk].transpose(-2, -1) * q.shape[-1] ** -0.5 + bias[chunk]
        weights = dropout(scores.softmax(dim=-1).to(v.dtype), dropout_p, dropout_p > 0)
        outputs.append(weights @ v[chunk])
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection (one matmul instead of three)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob
        self.scores_chunk_bytes = SCORES_CHUNK_BYTES  # CPU inference: see cpu_attention

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` is (batch, length, width), or with ``rows`` the packed (tokens, width) real tokens
        of a batch whose padded layout ``rows`` indexes (see ``BertModel.forward``)."""
        batch, length, width = attn_bias.shape[0], attn_bias.shape[-1], x.shape[-1]
        qkv = self.qkv(x)
        if rows is not None:  # attention itself runs on the padded layout; padded rows stay zero
            qkv = qkv.new_zeros(batch * length, 3 * width).index_copy(0, rows, qkv)
        q, k, v = qkv.view(batch, length, 3, self.n_heads, width // self.n_heads).permute(2, 0, 3, 1, 4)
        if x.device.type == "cpu":
            y = cpu_attention(q, k, v, attn_bias, self.dropout_p if self.training else 0.0, self.scores_chunk_bytes)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_bias, dropout_p=self.dropout_p if self.training else 0.0
            )
        y = y.transpose(1, 2).reshape(batch * length, width)
        return self.out(y.view(batch, length, width) if rows is None else y.index_select(0, rows))


class TransformerLayer(nn.Module):
    """Post-LN transformer layer, as in the original BERT: x = LN(x + sublayer(x))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, config.hidden_size)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.act = _ACTIVATIONS[config.hidden_act]
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, attn_bias, rows)))
        return self.ffn_norm(x + self.dropout(self.ffn_out(self.act(self.ffn_in(x)))))


class Pooler(nn.Module):
    """tanh(W h_[CLS] + b): BERT's next-sentence-prediction pooler."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class BertModel(nn.Module):
    """``pack_inference``, ``pack_training``: whether CPU batches without and with autograd run
    with their padding packed away (``packed_rows``)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.pack_inference, self.pack_training = True, False
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = Pooler(config)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # BERT's initialisation (truncated normal in the paper, plain normal in the reference code).
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        sequence_ids: torch.Tensor | None = None,
    ) -> BertOutput:
        """``sequence_ids`` (batch, length) puts several sequences side by side in a row: each
        token's sequence number (1, 2, ...; 0 for padding, and the mask then follows from it).
        Tokens attend only within their own sequence and positions restart at each, so every
        sequence encodes as it would in a row of its own; ``last_hidden_state`` keeps the row
        layout and the pooler reads the first sequence's [CLS]."""
        if sequence_ids is not None:
            attention_mask = (sequence_ids != 0).long()
            keys, positions = side_by_side(sequence_ids)
            keys = keys[:, None]  # (batch, 1, length, length): each query its own keys
        else:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            keys = (attention_mask != 0)[:, None, None, :]  # (batch, 1, 1, length): the same for every query
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids, positions)
        # An additive bias in the activations' dtype, broadcast over heads: keys a query may not
        # see get a large negative score.
        bias = torch.zeros(keys.shape, dtype=x.dtype, device=x.device).masked_fill(~keys, torch.finfo(x.dtype).min)
        rows = packed_rows(attention_mask, self.pack_inference, self.pack_training)
        if rows is not None:
            x = x.flatten(0, 1).index_select(0, rows)
        for layer in self.layers:
            x = layer(x, bias, rows)
        if rows is not None:
            batch, length = attention_mask.shape
            x = x.new_zeros(batch * length, x.shape[-1]).index_copy(0, rows, x).view(batch, length, -1)
        return BertOutput(x, self.pooler(x))

    # -- checkpoints ---------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path) -> "BertModel":
        """Load ``"default"`` (all-MiniLM-L6-v2) or any Hugging Face BERT directory."""
        directory = resolve_checkpoint(name_or_path)
        config = BertConfig.from_json(directory / "config.json")
        with open(directory / "vocab.txt", "rb") as vocab:
            tokens = sum(1 for line in vocab if line.strip())
        if tokens > config.vocab_size:
            raise UserError(
                f"{directory}: vocab.txt has {tokens} tokens but config.json's vocab_size is {config.vocab_size}, "
                "so some token ids have no embedding"
            )
        model = cls(config)
        state = _read_weights(directory)
        model.load_state_dict(hf_to_ours(state, config, source=directory))
        return model

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json and model.safetensors in the Hugging Face layout, atomically."""
        from optiminbert.atomic import write_json_atomic, write_safetensors_atomic

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_safetensors_atomic(ours_to_hf(self.state_dict(), self.config), directory / "model.safetensors")
        write_json_atomic(self.config.to_json(), directory / "config.json")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# -- key mapping ---------------------------------------------------------------------------

_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "embeddings.word.weight",
    "embeddings.position_embeddings.weight": "embeddings.position.weight",
    "embeddings.token_type_embeddings.weight": "embeddings.segment.weight",
    "embeddings.LayerNorm.weight": "embeddings.norm.weight",
    "embeddings.LayerNorm.bias": "embeddings.norm.bias",
    "pooler.dense.weight": "pooler.dense.weight",
    "pooler.dense.bias": "pooler.dense.bias",
}
_LAYER = {  # Hugging Face name under encoder.layer.{i}. -> ours under layers.{i}.
    "attention.output.dense": "attention.out",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
    "output.LayerNorm": "ffn_norm",
}
_QKV = ("query", "key", "value")


def _normalise_key(key: str) -> str | None:
    """Bring the key styles found in the wild to one; None for keys we deliberately drop."""
    if key.startswith("cls.") or key.endswith("position_ids"):
        return None  # pretraining heads and a non-persistent buffer in older checkpoints
    key = key.removeprefix("bert.")
    if key.endswith("LayerNorm.gamma"):
        key = key.removesuffix("gamma") + "weight"
    elif key.endswith("LayerNorm.beta"):
        key = key.removesuffix("beta") + "bias"
    return key


def _expected_hf_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
    h, i = config.hidden_size, config.intermediate_size
    shapes = {
        "embeddings.word_embeddings.weight": (config.vocab_size, h),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, h),
        "embeddings.token_type_embeddings.weight": (config.type_vocab_size, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
        "pooler.dense.weight": (h, h),
        "pooler.dense.bias": (h,),
    }
    per_layer = {
        **{f"attention.self.{n}.weight": (h, h) for n in _QKV},
        **{f"attention.self.{n}.bias": (h,) for n in _QKV},
        "attention.output.dense.weight": (h, h),
        "attention.output.dense.bias": (h,),
        "attention.output.LayerNorm.weight": (h,),
        "attention.output.LayerNorm.bias": (h,),
        "intermediate.dense.weight": (i, h),
        "intermediate.dense.bias": (i,),
        "output.dense.weight": (h, i),
        "output.dense.bias": (h,),
        "output.LayerNorm.weight": (h,),
        "output.LayerNorm.bias": (h,),
    }
    for layer in range(config.num_hidden_layers):
        shapes.update({f"encoder.layer.{layer}.{k}": v for k, v in per_layer.items()})
    return shapes


def hf_to_ours(state: dict[str, torch.Tensor], config: BertConfig, source: object = "checkpoint") -> dict:
    """Map a Hugging Face BERT state dict onto ours, checking every key and shape."""
    hf = {}
    for key, tensor in state.items():
        norm = _normalise_key(key)
        if norm is not None:
            hf[norm] = tensor
    expected = _expected_hf_shapes(config)
    missing = sorted(set(expected) - set(hf))
    unexpected = sorted(set(hf) - set(expected))
    misshaped = [
        f"{k} {tuple(hf[k].shape)} != {expected[k]}" for k in sorted(expected.keys() & hf.keys())
        if tuple(hf[k].shape) != expected[k]
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            shown = ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")
            problems.append(f"{len(items)} {label}: {shown}")
    if problems:
        raise UserError(f"{source}: weights do not match the config: " + "; ".join(problems))

    ours = {our: hf[theirs] for theirs, our in _EMBEDDINGS.items()}
    for layer in range(config.num_hidden_layers):
        src, dst = f"encoder.layer.{layer}.", f"layers.{layer}."
        for part in ("weight", "bias"):
            ours[f"{dst}attention.qkv.{part}"] = torch.cat(
                [hf[f"{src}attention.self.{n}.{part}"] for n in _QKV]
            )
            for theirs, our in _LAYER.items():
                ours[f"{dst}{our}.{part}"] = hf[f"{src}{theirs}.{part}"]
    return {k: v.float() for k, v in ours.items()}


def ours_to_hf(state: dict[str, torch.Tensor], config: BertConfig) -> dict[str, torch.Tensor]:
    """The inverse of ``hf_to_ours``: our state dict in Hugging Face names (unprefixed)."""
    hf = {theirs: state[our] for theirs, our in _EMBEDDINGS.items()}
    for layer in range(config.num_hidden_layers):
        src, dst = f"layers.{layer}.", f"encoder.layer.{layer}."
        for part in ("weight", "bias"):
            for name, chunk in zip(_QKV, state[f"{src}attention.qkv.{part}"].chunk(3)):
                hf[f"{dst}attention.self.{name}.{part}"] = chunk
            for theirs, our in _LAYER.items():
                hf[f"{dst}{theirs}.{part}"] = state[f"{src}{our}.{part}"]
    return {k: v.detach().contiguous().cpu() for k, v in hf.items()}


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    safetensors_path = directory / "model.safetensors"
    bin_path = directory / "pytorch_model.bin"
    try:
        if safetensors_path.is_file():
            from safetensors.torch import load_file

            return load_file(safetensors_path)
        if bin_path.is_file():
            # weights_only: a checkpoint can never execute code while it loads.
            state = torch.load(bin_path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError("not a state dict")
            return state
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # not a pickle of Python objects at all: damaged
            raise UserError(f"{bin_path}: cannot read the weights (not a PyTorch weights file)") from exc
        raise UserError(
            f"{bin_path}: holds Python objects besides tensors, which are never loaded (loading them could run code); "
            "save the weights as model.safetensors"
        ) from exc
    except Exception as exc:  # corrupt or truncated files surface in many exception types
        path = safetensors_path if safetensors_path.is_file() else bin_path
        raise UserError(f"{path}: cannot read the weights ({type(exc).__name__}: {first_line(exc)})") from exc
    raise UserError(f"{directory}: no model.safetensors or pytorch_model.bin in this directory")
