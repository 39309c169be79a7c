"""Shared fixtures: a tiny random BERT checkpoint, small slices of the real CS224N files, their
prepared (tokenized) form and the params of a fast CPU training run. All session-scoped and
deterministic, so the training tests share one tokenization and one checkpoint."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
import torch

from optiminbert.data import TASKS
from optiminbert.model import BertConfig, BertModel
from optiminbert.params import resolve
from optiminbert.prepared import prepare

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/cs224n"
SLICE_ROWS = 40
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Used for the vocabulary only when the real data is absent (model-only tests still run then).
FALLBACK_TEXT = "a the film movie is good bad what how why do you i it ' s . , ? !"
TINY_ENCODER = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=128
)


def slice_lines(path: Path, rows: int = SLICE_ROWS) -> bytes:
    """The header and the first ``rows`` data lines of a task file, byte for byte.

    Cut by lines, not by re-writing parsed rows (that would change the quoting); checked to
    parse as exactly one CSV row per line, so no quoted field spans the cut.
    """
    with path.open("rb") as handle:
        kept = b"".join(line for _, line in zip(range(rows + 1), handle))
    text = kept.decode("utf-8", errors="surrogateescape")
    parsed = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t"))
    assert len(parsed) == len(text.splitlines()), f"{path.name}: a quoted field spans lines in the kept part"
    return kept


def vocabulary(texts: list[str]) -> list[str]:
    """Special tokens, then the sorted lower-cased words and punctuation marks of ``texts``."""
    words = {w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())}
    return SPECIAL_TOKENS + sorted(words - set(SPECIAL_TOKENS))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on one torch thread. ``configure_cpu`` (called by every training run) takes
    every core unless OMP_NUM_THREADS is set, and two threads on two cores shared with another
    job make each tiny step about 50x slower than one thread does."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"the CS224N data is not at {REAL_DATA}")
    directory = tmp_path_factory.mktemp("data")
    for spec in TASKS.values():
        for split in ("train", "dev", "test"):
            name = spec.filename(split)
            (directory / name).write_bytes(slice_lines(REAL_DATA / name))
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random BERT in Hugging Face layout, with a vocabulary drawn from the data slices."""
    if REAL_DATA.is_dir():
        texts = [slice_lines(path).decode("utf-8", errors="replace") for path in sorted(REAL_DATA.glob("*.csv"))]
    else:
        texts = [FALLBACK_TEXT]
    vocab = vocabulary(texts)
    directory = tmp_path_factory.mktemp("checkpoint")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), **TINY_ENCODER)).save_pretrained(directory)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}), encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def tiny_prepared(tiny_data: Path, tiny_checkpoint: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("work") / "prepared"
    prepare(tiny_data, out, str(tiny_checkpoint), {task: 32 for task in TASKS})
    return out


@pytest.fixture(scope="session")
def tiny_params(tiny_checkpoint: Path) -> dict:
    return resolve(
        {
            "checkpoint": str(tiny_checkpoint),
            "epochs": 2,
            "batch_size": 8,
            "eval_batch_size": 16,
            "lr": 1e-3,
            "device": "cpu",
            "precision": "fp32",
            "max_length": 32,
        }
    )
