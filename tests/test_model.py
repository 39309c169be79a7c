"""Our BERT encoder against transformers.BertModel (a test-only oracle), checkpoints and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from torch.overrides import TorchFunctionMode

from optiminbert.batching import pad, pad_side_by_side
from optiminbert.checkpoints import default_checkpoint_dir, resolve_checkpoint
from optiminbert.errors import UserError
from optiminbert.model import (
    BertConfig,
    BertModel,
    cpu_attention,
    dropout,
    packed_rows,
    side_by_side,
)
from optiminbert.tokenizer import load_tokenizer

ATOL = 1e-4
ATTN_IMPLEMENTATIONS = ["eager", "sdpa"]
# On CUDA attention is SDPA's fused kernel, not the CPU's own (model.cpu_attention), so the
# parity and layout tests run there too when a GPU is present.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]
TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=2,
)


# -- helpers ---------------------------------------------------------------------------------


def write_vocab(directory: Path, size: int = TINY["vocab_size"]) -> None:
    """A vocab.txt of ``size`` tokens: resolve_checkpoint requires one in every BERT directory."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = specials + [f"tok{i}" for i in range(size - len(specials))]
    (directory / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")


def tiny_hf_model(attn_implementation: str = "eager", seed: int = 0) -> transformers.BertModel:
    """A random tiny transformers.BertModel in eval mode.

    The weights are redrawn far from BERT's std-0.02 initialisation, so that attention is peaked
    and LayerNorm gains and biases matter: a wrong mask, key mapping or QKV order shows up
    well above the tolerance.
    """
    torch.manual_seed(seed)
    config = transformers.BertConfig(**TINY, attn_implementation=attn_implementation)
    model = transformers.BertModel(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "LayerNorm.weight" in name:
                param.copy_(1.0 + 0.2 * noise)
            else:
                param.copy_(0.3 * noise)
    return model


def save_hf_checkpoint(model: transformers.BertModel, directory: Path) -> Path:
    """transformers' own save_pretrained (config.json + model.safetensors) plus a vocab.txt."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    assert (directory / "model.safetensors").is_file()
    write_vocab(directory, model.config.vocab_size)
    return directory


def padded_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Three rows of lengths 9, 6 and 3: [PAD] (id 0) and mask 0 after each row's end,
    and segment 1 for the second half of every row."""
    generator = torch.Generator().manual_seed(seed)
    lengths = [9, 6, 3]
    width = max(lengths)
    input_ids = torch.randint(5, TINY["vocab_size"], (len(lengths), width), generator=generator)
    attention_mask = torch.zeros_like(input_ids)
    token_type_ids = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
        token_type_ids[row, length // 2 : length] = 1
    input_ids[attention_mask == 0] = 0
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


def tokenized_batch(tokenizer, items: list[str | tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Encode with our tokenizer and right-pad to the longest row with [PAD] = 0."""
    encodings = [
        tokenizer.encode(*item) if isinstance(item, tuple) else tokenizer.encode(item) for item in items
    ]
    width = max(len(e.ids) for e in encodings)

    def pad(rows: list[list[int]]) -> torch.Tensor:
        return torch.tensor([row + [0] * (width - len(row)) for row in rows])

    return dict(
        input_ids=pad([e.ids for e in encodings]),
        attention_mask=pad([e.attention_mask for e in encodings]),
        token_type_ids=pad([e.type_ids for e in encodings]),
    )


@torch.no_grad()
def to_device(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def assert_same_outputs(ours: BertModel, theirs: transformers.BertModel, batch: dict, atol: float = ATOL):
    """last_hidden_state at real (unpadded) positions and pooler_output agree within ``atol``."""
    assert not ours.training and not theirs.training
    batch = to_device(batch, next(ours.parameters()).device)
    a = ours(**batch)
    b = theirs(**batch)
    real = batch["attention_mask"].bool()
    assert a.last_hidden_state.shape == b.last_hidden_state.shape
    torch.testing.assert_close(a.last_hidden_state[real], b.last_hidden_state[real], atol=atol, rtol=0)
    torch.testing.assert_close(a.pooler_output, b.pooler_output, atol=atol, rtol=0)


def old_style_state_dict(model: transformers.BertModel) -> dict[str, torch.Tensor]:
    """The original BERT checkpoint layout: ``bert.`` prefix, LayerNorm gamma/beta, the
    position_ids buffer, and the masked-LM and next-sentence pretraining heads."""
    h, v = model.config.hidden_size, model.config.vocab_size
    state = {}
    for key, tensor in model.state_dict().items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state[f"bert.{key}"] = tensor.clone()
    state["bert.embeddings.position_ids"] = torch.arange(model.config.max_position_embeddings)[None]
    state.update(
        {
            "cls.predictions.bias": torch.zeros(v),
            "cls.predictions.transform.dense.weight": torch.randn(h, h),
            "cls.predictions.transform.dense.bias": torch.zeros(h),
            "cls.predictions.transform.LayerNorm.gamma": torch.ones(h),
            "cls.predictions.transform.LayerNorm.beta": torch.zeros(h),
            "cls.predictions.decoder.weight": torch.randn(v, h),
            "cls.seq_relationship.weight": torch.randn(2, h),
            "cls.seq_relationship.bias": torch.zeros(2),
        }
    )
    return state


def rewrite_weights(directory: Path, edit) -> None:
    """Load model.safetensors, apply ``edit(state)`` in place, and write it back."""
    state = load_file(directory / "model.safetensors")
    edit(state)
    save_file(state, directory / "model.safetensors")


def load_error(directory: Path | str) -> str:
    with pytest.raises(UserError) as info:
        BertModel.from_pretrained(directory)
    return str(info.value)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    return save_hf_checkpoint(tiny_hf_model(), tmp_path / "tiny")


@pytest.fixture(scope="module")
def default_ours() -> BertModel:
    return BertModel.from_pretrained("default").eval()


SENTENCES = [
    "A man is playing a guitar.",
    "Café déjà vu: the naïve résumé, again!",
    ("Is it RAINING in New York?", "The weather in NYC is wet today."),
    "Short.",
    ("How do I learn Python quickly?", "What's the fastest way to learn Python?"),
]


# -- 1. parity with transformers.BertModel ---------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("attn_implementation", ATTN_IMPLEMENTATIONS)
def test_tiny_random_checkpoint_matches_transformers(tmp_path, attn_implementation, device):
    theirs = tiny_hf_model(attn_implementation)
    directory = save_hf_checkpoint(theirs, tmp_path / "tiny")
    ours = BertModel.from_pretrained(directory).eval().to(device)
    theirs.to(device)
    assert ours.config.hidden_size == 32 and len(ours.layers) == 2
    assert_same_outputs(ours, theirs, padded_batch())


@pytest.mark.parametrize("attn_implementation", ATTN_IMPLEMENTATIONS)
def test_default_checkpoint_matches_transformers(default_ours, attn_implementation):
    theirs = transformers.BertModel.from_pretrained(
        default_checkpoint_dir(), attn_implementation=attn_implementation
    ).eval()
    batch = tokenized_batch(load_tokenizer("default", 128), SENTENCES)
    assert (batch["attention_mask"] == 0).any() and (batch["token_type_ids"] == 1).any()
    assert_same_outputs(default_ours, theirs, batch)


def test_old_style_pytorch_model_bin_loads(tmp_path):
    theirs = tiny_hf_model(seed=1)
    directory = tmp_path / "old"
    directory.mkdir()
    theirs.config.to_json_file(directory / "config.json")
    write_vocab(directory)
    torch.save(old_style_state_dict(theirs), directory / "pytorch_model.bin")
    assert not (directory / "model.safetensors").exists()

    ours = BertModel.from_pretrained(directory).eval()
    assert_same_outputs(ours, theirs, padded_batch(seed=1))


# -- 2. round trip ---------------------------------------------------------------------------


def test_save_pretrained_round_trip(tiny_checkpoint, tmp_path):
    ours = BertModel.from_pretrained(tiny_checkpoint).eval()
    saved = tmp_path / "saved"
    ours.save_pretrained(saved)
    assert {p.name for p in saved.iterdir()} == {"config.json", "model.safetensors"}
    write_vocab(saved)

    reloaded = BertModel.from_pretrained(saved).eval()
    theirs, info = transformers.BertModel.from_pretrained(saved, output_loading_info=True)
    theirs.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]

    # The saved tensors are exactly the ones transformers wrote in the first place.
    original = load_file(tiny_checkpoint / "model.safetensors")
    written = load_file(saved / "model.safetensors")
    assert written.keys() == original.keys()
    for key in original:
        assert torch.equal(written[key], original[key]), key

    batch = padded_batch()
    with torch.no_grad():
        before, after = ours(**batch), reloaded(**batch)
    assert torch.equal(before.last_hidden_state, after.last_hidden_state)
    assert torch.equal(before.pooler_output, after.pooler_output)
    assert_same_outputs(reloaded, theirs, batch)


# -- 3. errors -------------------------------------------------------------------------------


def test_missing_keys_are_listed(tiny_checkpoint):
    dropped = ["encoder.layer.1.output.dense.bias", "pooler.dense.weight"]

    def drop(state):
        for key in dropped:
            del state[key]

    rewrite_weights(tiny_checkpoint, drop)
    message = load_error(tiny_checkpoint)
    assert str(tiny_checkpoint) in message
    assert "2 missing" in message
    for key in dropped:
        assert key in message


def test_unexpected_keys_are_listed(tiny_checkpoint):
    rewrite_weights(tiny_checkpoint, lambda state: state.update({"encoder.layer.2.output.dense.bias": torch.zeros(32)}))
    message = load_error(tiny_checkpoint)
    assert str(tiny_checkpoint) in message
    assert "1 unexpected" in message and "encoder.layer.2.output.dense.bias" in message


def test_misshaped_tensor_is_reported(tiny_checkpoint):
    rewrite_weights(
        tiny_checkpoint, lambda state: state.update({"encoder.layer.0.intermediate.dense.weight": torch.zeros(36, 32)})
    )
    message = load_error(tiny_checkpoint)
    assert str(tiny_checkpoint) in message
    assert "mis-shaped" in message
    assert "encoder.layer.0.intermediate.dense.weight (36, 32) != (37, 32)" in message


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_safetensors(tiny_checkpoint, damage):
    path = tiny_checkpoint / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00not a safetensors file" * 10)
    message = load_error(tiny_checkpoint)
    assert str(path) in message
    assert "cannot read the weights" in message


def test_corrupt_pytorch_model_bin(tiny_checkpoint):
    (tiny_checkpoint / "model.safetensors").unlink()
    path = tiny_checkpoint / "pytorch_model.bin"
    path.write_bytes(b"definitely not a pickle")
    message = load_error(tiny_checkpoint)
    assert str(path) in message and "cannot read the weights" in message


def test_directory_without_weights(tiny_checkpoint):
    (tiny_checkpoint / "model.safetensors").unlink()
    message = load_error(tiny_checkpoint)
    assert str(tiny_checkpoint) in message
    assert "no model.safetensors or pytorch_model.bin" in message


def test_directory_without_config_is_not_bert(tiny_checkpoint):
    (tiny_checkpoint / "config.json").unlink()
    message = load_error(tiny_checkpoint)
    assert str(tiny_checkpoint) in message
    assert "no config.json" in message and "not a BERT directory" in message


def test_non_bert_model_type(tiny_checkpoint):
    config_path = tiny_checkpoint / "config.json"
    config = json.loads(config_path.read_text())
    config["model_type"] = "gpt2"
    config_path.write_text(json.dumps(config))
    message = load_error(tiny_checkpoint)
    assert str(config_path) in message and "'gpt2'" in message


@pytest.mark.parametrize(
    "edit, problem",
    [
        ({"num_attention_heads": 0}, "num_attention_heads must be at least 1, got 0"),
        ({"hidden_size": "abc"}, "hidden_size must be a number, got 'abc'"),
        ({"num_hidden_layers": 2.5}, "num_hidden_layers must be a whole number, got 2.5"),
        ({"vocab_size": True}, "vocab_size must be a number, got True"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob must be a probability from 0 to below 1, got 1.5"),
        ({"layer_norm_eps": -1e-12}, "layer_norm_eps must be a positive number, got -1e-12"),
        ({"hidden_act": 3}, "hidden_act must be a string, got 3"),
    ],
    ids=["zero-heads", "text-width", "fractional-layers", "bool-vocab", "dropout", "negative-eps", "act-number"],
)
def test_a_malformed_config_value_is_named(tiny_checkpoint, edit, problem):
    config_path = tiny_checkpoint / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **edit}))
    assert load_error(tiny_checkpoint) == f"{config_path}: {problem}"


def test_a_config_that_is_not_an_object_is_named(tiny_checkpoint):
    config_path = tiny_checkpoint / "config.json"
    config_path.write_text("[1, 2]")
    assert load_error(tiny_checkpoint) == f"{config_path}: expected a JSON object of model config, got a list"


def test_a_vocabulary_larger_than_the_embeddings_is_refused(tiny_checkpoint):
    vocab = tiny_checkpoint / "vocab.txt"
    size = json.loads((tiny_checkpoint / "config.json").read_text())["vocab_size"]
    vocab.write_text("\n".join(f"tok{i}" for i in range(size + 1)) + "\n")
    assert load_error(tiny_checkpoint) == (
        f"{tiny_checkpoint}: vocab.txt has {size + 1} tokens but config.json's vocab_size is {size}, "
        "so some token ids have no embedding"
    )


@pytest.mark.parametrize("content, problem", [("", "empty, so this checkpoint has no vocabulary"),
                                              ("hello\nworld\n", "no [CLS] token, so this is not a BERT vocabulary")])
def test_a_vocabulary_the_tokenizer_cannot_use_is_named(tiny_checkpoint, content, problem):
    (tiny_checkpoint / "vocab.txt").write_text(content)
    with pytest.raises(UserError) as info:
        load_tokenizer(tiny_checkpoint, 32)
    assert str(info.value) == f"{tiny_checkpoint / 'vocab.txt'}: {problem}"


def test_a_pickled_checkpoint_with_objects_is_refused_in_one_line(tiny_checkpoint):
    (tiny_checkpoint / "model.safetensors").unlink()
    path = tiny_checkpoint / "pytorch_model.bin"
    torch.save({"weights": {}, "optimizer": Path("x")}, path)  # a Python object the safe unpickler refuses
    assert load_error(tiny_checkpoint) == (
        f"{path}: holds Python objects besides tensors, which are never loaded (loading them could run code); "
        "save the weights as model.safetensors"
    )


@pytest.mark.parametrize("kind", ["file", "missing"])
def test_path_that_is_not_a_directory(tmp_path, kind):
    path = tmp_path / "weights.safetensors"
    if kind == "file":
        path.write_bytes(b"")
    message = load_error(path)
    assert str(path) in message and "not a directory" in message


def test_max_length_must_fit_the_checkpoints_positions():
    for bad in (2, 513, 64.0, True, "128"):
        with pytest.raises(UserError, match="param max_length must be a whole number from 3 to 512"):
            BertConfig(max_position_embeddings=512).check_length("max_length", bad)
    for good in (3, 128, 512):
        BertConfig(max_position_embeddings=512).check_length("max_length", good)


def test_default_resolves_to_the_installed_checkpoint(default_ours):
    directory = resolve_checkpoint("default")
    assert directory == default_checkpoint_dir()
    assert (directory / "config.json").is_file() and (directory / "vocab.txt").is_file()
    assert default_ours.config.hidden_size == 384 and len(default_ours.layers) == 6


# -- 4. dropout and padding ------------------------------------------------------------------


def tiny_model(seed: int = 0) -> BertModel:
    """Our model straight from a config, with BERT's default dropout of 0.1."""
    torch.manual_seed(seed)
    config = BertConfig(**TINY)
    assert config.hidden_dropout_prob > 0 and config.attention_probs_dropout_prob > 0
    return BertModel(config)


def test_eval_mode_is_deterministic_and_train_mode_is_not():
    model = tiny_model()
    batch = padded_batch()
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(**batch).last_hidden_state, model(**batch).last_hidden_state)
    model.eval()
    with torch.no_grad():
        first, second = model(**batch), model(**batch)
    assert torch.equal(first.last_hidden_state, second.last_hidden_state)
    assert torch.equal(first.pooler_output, second.pooler_output)


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_cpu_dropout_drops_p_of_every_lane_and_rescales_the_rest(p):
    """The mask is cut from 64-bit words, four 16-bit lanes each: every lane must drop p."""
    torch.manual_seed(0)
    x = torch.ones(400_000, requires_grad=True)
    y = dropout(x, p, training=True)
    dropped = (y == 0).view(-1, 4).float().mean(dim=0)
    torch.testing.assert_close(dropped, torch.full((4,), p), atol=0.005, rtol=0)  # ~5 standard errors
    assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - p)))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient is the same mask and scale
    assert torch.equal(dropout(x, p, training=False), x) and torch.equal(dropout(x, 0.0, training=True), x)


# One chunk for the whole batch; chunks of 2 rows and a last one of 1 (4 heads x 7 x 7 fp32 scores a row).
@pytest.mark.parametrize("chunk_bytes", [1 << 20, 2 * 4 * 7 * 7 * 4])
@pytest.mark.parametrize("side_by_side_rows", [False, True])
def test_cpu_attention_matches_sdpa(chunk_bytes, side_by_side_rows):
    """CPU attention is spelled out: in inference a chunk of rows at a time, in training with our
    dropout. With no drops (or a probability that rounds to none) it must give SDPA's outputs,
    and gradients, padding bias included (or the per-query bias of side-by-side sequences),
    however the rows are chunked."""
    torch.manual_seed(0)
    q, k, v = (t.requires_grad_() for t in torch.randn(3, 3, 4, 7, 8).unbind(0))  # batch 3, 4 heads, length 7
    if side_by_side_rows:
        allowed = side_by_side(torch.tensor([[1, 1, 1, 2, 2, 2, 2], [1, 1, 2, 2, 0, 0, 0], [1] * 6 + [0]]))[0][:, None]
    else:
        allowed = torch.tensor([[True] * 7, [True] * 4 + [False] * 3, [True] * 6 + [False]])[:, None, None, :]
    bias = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    with torch.no_grad():
        for p in (0.0, 1e-9):
            torch.testing.assert_close(cpu_attention(q, k, v, bias, p, chunk_bytes), expected, atol=1e-6, rtol=1e-5)
    out = cpu_attention(q, k, v, bias, 1e-9, chunk_bytes)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    for grad, want in zip(grads, torch.autograd.grad(expected.square().sum(), (q, k, v))):
        torch.testing.assert_close(grad, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pad_id", [0, 42])
def test_padding_does_not_change_real_tokens(pad_id):
    model = tiny_model().eval()
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.randint(5, TINY["vocab_size"], (2, 7), generator=generator)
    token_type_ids = torch.tensor([[0, 0, 0, 1, 1, 1, 1]] * 2)
    extra = 5
    padded = dict(
        input_ids=torch.cat([input_ids, torch.full((2, extra), pad_id)], dim=1),
        attention_mask=torch.cat([torch.ones(2, 7, dtype=torch.long), torch.zeros(2, extra, dtype=torch.long)], dim=1),
        token_type_ids=torch.cat([token_type_ids, torch.ones(2, extra, dtype=torch.long)], dim=1),
    )
    with torch.no_grad():
        plain = model(input_ids, torch.ones_like(input_ids), token_type_ids)
        with_padding = model(**padded)
    torch.testing.assert_close(with_padding.last_hidden_state[:, :7], plain.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(with_padding.pooler_output, plain.pooler_output, atol=1e-5, rtol=0)


def test_packed_rows_index_the_real_tokens_of_padded_cpu_batches():
    mask = padded_batch()["attention_mask"]
    real = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 18, 19, 20])
    with torch.inference_mode():
        assert torch.equal(packed_rows(mask), real)
        assert packed_rows(torch.ones_like(mask)) is None  # nothing to skip
        assert packed_rows(mask, inference=False) is None  # asked to keep inference padded
        assert packed_rows(mask, inference=False, training=True) is None  # training's choice does not apply
    assert packed_rows(mask) is None  # training keeps the padded layout by default
    assert torch.equal(packed_rows(mask, training=True), real)
    # BertModel's defaults: inference packed, training padded.
    model = tiny_model()
    assert (model.pack_inference, model.pack_training) == (True, False)


class CountSoftmax(TorchFunctionMode):
    """Counts the attention softmaxes: one per chunk of rows in ``cpu_attention``."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += func is torch.Tensor.softmax
        return func(*args, **(kwargs or {}))


def test_pack_inference_and_scores_chunk_change_nothing_but_the_layout():
    """A model's own switches (``pack_inference``, each layer's ``scores_chunk_bytes``) reach the
    forward pass: packed or padded, one row of scores per chunk or all at once, the same states."""
    batch = padded_batch()  # 3 rows of width 9
    real = batch["attention_mask"].bool()
    model = tiny_model().eval()
    layouts = []
    hook = model.layers[0].attention.register_forward_hook(lambda module, args, out: layouts.append(args[0].dim()))
    outputs, softmaxes = [], []
    one_row = 4 * 4 * 9 * 9  # 4 heads x 9 x 9 fp32 scores: one row per chunk
    for pack, chunk_bytes in ((True, 1 << 20), (False, 1 << 20), (False, one_row)):
        model.pack_inference = pack
        for layer in model.layers:
            layer.attention.scores_chunk_bytes = chunk_bytes
        with torch.inference_mode(), CountSoftmax() as counter:
            outputs.append(model(**batch).last_hidden_state[real])
        softmaxes.append(counter.calls)
    hook.remove()
    assert layouts == [2, 3, 3]  # packed: (tokens, width); padded: (batch, length, width)
    assert softmaxes == [2, 2, 6]  # per layer: the whole batch at once, or one chunk per row
    for other in outputs[1:]:
        torch.testing.assert_close(other, outputs[0], atol=1e-5, rtol=1e-5)


def test_packed_layout_gives_the_padded_layouts_outputs_and_gradients():
    """Training through the packed real tokens (what benchmarks/packed_tokens.py times) must give
    the same outputs at real positions and the same weight gradients as the plain padded layout."""
    batch = padded_batch()
    results = []
    for pack in (True, False):
        torch.manual_seed(0)
        model = BertModel(BertConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).train()
        model.pack_training = pack
        out = model(**batch)
        real = batch["attention_mask"].bool()
        (out.last_hidden_state[real].square().sum() + out.pooler_output.sum()).backward()
        results.append((out.last_hidden_state[real].detach(), {n: p.grad for n, p in model.named_parameters()}))
    (packed, packed_grads), (padded, padded_grads) = results
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-5)
    assert packed_grads.keys() == padded_grads.keys()
    for name in packed_grads:
        torch.testing.assert_close(packed_grads[name], padded_grads[name], atol=1e-4, rtol=1e-4, msg=name)


def test_defaults_for_mask_and_token_types():
    model = tiny_model().eval()
    input_ids = padded_batch()["input_ids"]
    with torch.no_grad():
        implicit = model(input_ids)
        explicit = model(input_ids, torch.ones_like(input_ids), torch.zeros_like(input_ids))
    assert torch.equal(implicit.last_hidden_state, explicit.last_hidden_state)


# -- side-by-side sequences ------------------------------------------------------------------

PAIRS = [([2, 11, 12, 13, 3], [2, 14, 3]), ([2, 15, 3], [2, 16, 17, 18, 19, 20, 3]), ([2, 21, 22, 3], [2, 23, 24, 3])]


def test_side_by_side_positions_restart_and_attention_stays_within_each_sequence():
    batch = pad_side_by_side(PAIRS)
    assert batch["sequence_ids"][0].tolist() == [1] * 5 + [2] * 3 + [0] * 2
    keys, positions = side_by_side(batch["sequence_ids"])
    assert positions[0, :8].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert positions[1].tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5, 6]
    assert keys[0, 0].tolist() == [True] * 5 + [False] * 5  # a's tokens see a only
    assert keys[0, 6].tolist() == [False] * 5 + [True] * 3 + [False] * 2  # b's see b only
    assert keys[0, 9].tolist() == [True] * 8 + [False] * 2  # padding sees every real token


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["padded", "packed inference", "training"])
def test_side_by_side_sequences_encode_as_if_each_had_its_own_row(mode, device):
    """A siamese pair in one row must give each sentence's tokens the states (and the weights
    the gradients) that encoding the two sentences as separate rows gives."""
    if mode == "packed inference" and device != "cpu":
        pytest.skip("only CPU inference packs")
    batch = to_device(pad_side_by_side(PAIRS), device)
    rows = to_device(pad([a for a, _ in PAIRS] + [b for _, b in PAIRS]), device)
    in_rows = [(r, slice(0, len(a))) for r, (a, _) in enumerate(PAIRS)]
    in_rows += [(len(PAIRS) + r, slice(0, len(b))) for r, (_, b) in enumerate(PAIRS)]
    side = [(r, slice(0, len(a))) for r, (a, _) in enumerate(PAIRS)]
    side += [(r, slice(len(a), len(a) + len(b))) for r, (a, b) in enumerate(PAIRS)]
    results = []
    for inputs, where in ((batch, side), (rows, in_rows)):
        torch.manual_seed(0)
        model = BertModel(BertConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).to(device)
        model.train(mode == "training")
        with torch.set_grad_enabled(mode == "training"), torch.inference_mode(mode == "packed inference"):
            if mode == "packed inference":
                assert packed_rows(inputs["attention_mask"]) is not None
            hidden = model(**inputs).last_hidden_state
            states = torch.cat([hidden[r, s] for r, s in where])
            if mode == "training":
                states.square().sum().backward()
        results.append((states.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (side_states, side_grads), (row_states, row_grads) = results
    torch.testing.assert_close(side_states, row_states, atol=1e-5, rtol=1e-5)
    assert side_grads.keys() == row_grads.keys()
    for name in side_grads:
        torch.testing.assert_close(side_grads[name], row_grads[name], atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("attn_implementation", ATTN_IMPLEMENTATIONS)
def test_side_by_side_matches_transformers_with_the_same_mask_and_positions(tmp_path, attn_implementation, device):
    theirs = tiny_hf_model(attn_implementation)
    ours = BertModel.from_pretrained(save_hf_checkpoint(theirs, tmp_path / "tiny")).eval().to(device)
    theirs.to(device)
    batch = to_device(pad_side_by_side(PAIRS), device)
    keys, positions = side_by_side(batch["sequence_ids"])
    with torch.no_grad():
        mine = ours(batch["input_ids"], sequence_ids=batch["sequence_ids"]).last_hidden_state
        # An additive mask: transformers' eager attention adds a 4D mask as it is, even a boolean one.
        additive = torch.zeros(keys.shape, device=device).masked_fill(~keys, torch.finfo(torch.float32).min)[:, None]
        hf = theirs(batch["input_ids"], attention_mask=additive, position_ids=positions).last_hidden_state
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(mine[real], hf[real], atol=ATOL, rtol=0)
