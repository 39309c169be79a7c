"""Our tokenizer against transformers' BERT tokenizers (test-only oracles)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

from optiminbert.checkpoints import default_checkpoint_dir
from optiminbert.tokenizer import load_tokenizer

SENTENCES = [
    "A man is playing a guitar.",
    "Café déjà vu — the naïve RÉSUMÉ!",
    "Hello,World...?! (don't   stop)\tme\nnow",
    "It costs $3.14, or 100% of €2 — McDonald's iPhone.",
    "我爱北京 and Zürich",
    "unbelievably antidisestablishmentarianism",
]
PAIRS = [
    ("Is it RAINING in New York?", "The weather in NYC is wet today."),
    ("How do I learn Python quickly?", "What's the fastest way to learn Python?"),
    ("Élan.", "naïveté, façade & coöperate"),
]
LONG_A = "one two three four five six seven eight nine ten eleven twelve thirteen"
LONG_B = "alpha beta gamma"


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_tokenizers() -> list:
    """transformers' Rust-backed BertTokenizer and its pure-Python legacy one, both from the
    default checkpoint directory."""
    directory = default_checkpoint_dir()
    return [
        transformers.BertTokenizer.from_pretrained(directory),
        BertTokenizerLegacy(vocab_file=str(directory / "vocab.txt"), do_lower_case=True),
    ]


def as_args(item: str | tuple[str, str]) -> tuple[str, ...]:
    return item if isinstance(item, tuple) else (item,)


def ours_encode(tokenizer, item) -> dict[str, list[int]]:
    encoding = tokenizer.encode(*as_args(item))
    return {"input_ids": encoding.ids, "token_type_ids": encoding.type_ids, "attention_mask": encoding.attention_mask}


def reference_encode(reference, item, **kwargs) -> dict[str, list[int]]:
    out = reference(*as_args(item), return_token_type_ids=True, return_attention_mask=True, **kwargs)
    return {key: list(out[key]) for key in ("input_ids", "token_type_ids", "attention_mask")}


def write_tiny_tokenizer_dir(directory: Path, tokenizer_config: dict | None) -> Path:
    """A minimal BERT directory with a cased vocabulary, for checking do_lower_case."""
    directory.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Hello", "hello", "World", "world", "Café", "cafe", ",", "!"]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "config.json").write_text("{}", encoding="utf-8")  # resolve_checkpoint requires one
    if tokenizer_config is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")
    return directory


# -- the default checkpoint ------------------------------------------------------------------


@pytest.mark.parametrize("item", SENTENCES + PAIRS, ids=lambda item: str(as_args(item))[:30])
def test_matches_transformers(reference_tokenizers, item):
    ours = ours_encode(load_tokenizer("default", 512), item)
    for reference in reference_tokenizers:
        assert ours == reference_encode(reference, item), type(reference).__name__


def test_pairs_get_segment_ids():
    encoding = load_tokenizer("default", 512).encode("first part", "second part")
    assert encoding.tokens == ["[CLS]", "first", "part", "[SEP]", "second", "part", "[SEP]"]
    assert encoding.type_ids == [0, 0, 0, 0, 1, 1, 1]


def test_default_is_lower_cased_and_accent_stripped():
    assert load_tokenizer("default", 512).encode("Café RÉSUMÉ").tokens == ["[CLS]", "cafe", "resume", "[SEP]"]


@pytest.mark.parametrize("max_length", [8, 9, 10])
@pytest.mark.parametrize("item", [LONG_A, (LONG_A, LONG_B), (LONG_B, LONG_A)], ids=["single", "pair", "pair-swapped"])
def test_truncation_to_max_length(reference_tokenizers, item, max_length):
    tokenizer = load_tokenizer("default", max_length)
    ours = ours_encode(tokenizer, item)
    assert len(ours["input_ids"]) == max_length
    assert ours["input_ids"][-1] == tokenizer.token_to_id("[SEP]")
    # Only the Rust-backed tokenizer: when both segments are equally long, the legacy Python
    # one trims the second segment first and the Rust one the first, so they differ by design.
    rust_backed = reference_tokenizers[0]
    assert ours == reference_encode(rust_backed, item, truncation="longest_first", max_length=max_length)


def test_short_inputs_are_not_padded_or_truncated():
    encoding = load_tokenizer("default", 32).encode("hello world")
    assert encoding.tokens == ["[CLS]", "hello", "world", "[SEP]"]


# -- do_lower_case from tokenizer_config.json -------------------------------------------------


def test_do_lower_case_false_keeps_case_and_accents(tmp_path):
    directory = write_tiny_tokenizer_dir(tmp_path / "cased", {"do_lower_case": False})
    text = "Hello, World! Café hello"
    encoding = load_tokenizer(directory, 32).encode(text)
    assert encoding.tokens == ["[CLS]", "Hello", ",", "World", "!", "Café", "hello", "[SEP]"]
    reference = BertTokenizerLegacy(vocab_file=str(directory / "vocab.txt"), do_lower_case=False)
    assert encoding.ids == reference(text)["input_ids"]


@pytest.mark.parametrize("tokenizer_config", [{"do_lower_case": True}, {}, None], ids=["true", "unset", "no-file"])
def test_lower_cases_by_default(tmp_path, tokenizer_config):
    directory = write_tiny_tokenizer_dir(tmp_path / "uncased", tokenizer_config)
    encoding = load_tokenizer(directory, 32).encode("Hello, World! Café")
    assert encoding.tokens == ["[CLS]", "hello", ",", "world", "!", "cafe", "[SEP]"]
