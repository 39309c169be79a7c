"""WordPiece tokenization with the `tokenizers` library, configured from the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

from optiminbert.checkpoints import resolve_checkpoint


def load_tokenizer(checkpoint: str | Path, max_length: int) -> Tokenizer:
    """[CLS] a [SEP] (b [SEP]) with segment ids, truncated to ``max_length`` tokens."""
    directory = resolve_checkpoint(checkpoint)
    lowercase = True
    config_path = directory / "tokenizer_config.json"
    if config_path.is_file():
        lowercase = bool(json.loads(config_path.read_text(encoding="utf-8")).get("do_lower_case", True))
    tokenizer = BertWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=lowercase)
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer
