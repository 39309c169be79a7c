"""WordPiece tokenization with the `tokenizers` library, configured from the checkpoint."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

from optiminbert.checkpoints import read_json_object, resolve_checkpoint
from optiminbert.errors import UserError


def _lowercase(directory: Path) -> bool:
    config_path = directory / "tokenizer_config.json"
    if not config_path.is_file():
        return True
    return bool(read_json_object(config_path, "tokenizer settings").get("do_lower_case", True))


def load_tokenizer(checkpoint: str | Path, max_length: int) -> Tokenizer:
    """[CLS] a [SEP] (b [SEP]) with segment ids, truncated to ``max_length`` tokens."""
    directory = resolve_checkpoint(checkpoint)
    vocab = directory / "vocab.txt"
    tokens = set(vocab.read_text(encoding="utf-8", errors="replace").split())
    if not tokens:
        raise UserError(f"{vocab}: empty, so this checkpoint has no vocabulary")
    for token in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
        if token not in tokens:
            raise UserError(f"{vocab}: no {token} token, so this is not a BERT vocabulary")
    tokenizer = BertWordPieceTokenizer(str(vocab), lowercase=_lowercase(directory))
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def tokenizer_fingerprint(checkpoint: str | Path) -> str:
    """What decides the token ids a checkpoint gets: its vocabulary, in order, and its casing."""
    directory = resolve_checkpoint(checkpoint)
    digest = hashlib.sha256((directory / "vocab.txt").read_bytes())
    digest.update(b"lowercase" if _lowercase(directory) else b"cased")
    return digest.hexdigest()[:16]
