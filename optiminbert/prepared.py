"""Tokenized datasets, cached on disk by the prepare stage so training never re-tokenizes.

The cache is written as a whole (see ``atomic_dir``) with ``manifest.json``: the SHA-256 of every
split file and the fingerprint of the tokenizer that made the ids. A split is checked against it
when loaded, and a run checks that its checkpoint tokenizes as the cache's did: ids from another
vocabulary would index the wrong embeddings without any error.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import track

from optiminbert import data
from optiminbert.atomic import atomic_dir, torch_save_atomic, write_json_atomic, write_text_atomic
from optiminbert.batching import TokenizedTexts, join_pair, length_bucketed_batches, pad, pad_pairs, pad_side_by_side
from optiminbert.errors import UserError
from optiminbert.tokenizer import load_tokenizer, tokenizer_fingerprint

PAIR_MODES = ("cross", "siamese")
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_SPLIT_KEYS = ("task", "split", "ids", "texts", "labels", "flat", "offsets")
_REPREPARE = "run `dvc repro prepare` (or `optiminbert prepare`) again"


@dataclass
class TaskSplit:
    """One task's split: ids, raw texts (for analysis), labels and the tokens of each column."""

    task: str
    split: str
    ids: list[str]
    texts: list[tuple[str, ...]]
    labels: torch.Tensor | None
    columns: list[TokenizedTexts]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def is_pair(self) -> bool:
        return len(self.columns) == 2

    @property
    def lengths(self) -> torch.Tensor:
        """Tokens per example, what its row in a batch holds (batches sort by this): a pair's
        two sentences together, side by side or cross-encoded."""
        return sum(c.lengths for c in self.columns)

    def shuffled_batches(self, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
        return length_bucketed_batches(self.lengths, batch_size, generator)

    def batch(self, indices: torch.Tensor, pairs: str, max_length: int) -> dict[str, torch.Tensor]:
        """A padded batch; pairs are cross-encoded ([CLS] a [SEP] b [SEP]) or, for siamese
        models, side by side in one row (``pad_side_by_side``), so both sentences go through
        the encoder in one forward pass."""
        rows = indices.tolist()
        if not self.is_pair:
            batch = pad([self.columns[0][i] for i in rows])
        elif pairs == "cross":
            batch = pad_pairs([join_pair(self.columns[0][i], self.columns[1][i], max_length) for i in rows])
        else:
            batch = pad_side_by_side([(self.columns[0][i], self.columns[1][i]) for i in rows])
        if self.labels is not None:
            batch["labels"] = self.labels[indices]
        return batch

    def head(self, n: int) -> "TaskSplit":
        """The first ``n`` examples."""
        labels = None if self.labels is None else self.labels[:n]
        return TaskSplit(self.task, self.split, self.ids[:n], self.texts[:n], labels, [c.head(n) for c in self.columns])

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "split": self.split,
            "ids": self.ids,
            "texts": [list(t) for t in self.texts],
            "labels": self.labels,
            "flat": [c.flat for c in self.columns],
            "offsets": [c.offsets for c in self.columns],
        }

    @classmethod
    def from_examples(cls, task: str, split: str, examples: list[data.Example], columns: list[TokenizedTexts]) -> "TaskSplit":
        """A loaded split's examples with each text column's token ids (unlabelled test splits get no labels)."""
        has_labels = examples[0].label is not None
        labels = torch.tensor([ex.label for ex in examples], dtype=torch.float32) if has_labels else None
        return cls(task, split, [ex.id for ex in examples], [ex.texts for ex in examples], labels, columns)

    @classmethod
    def load(cls, path: str | Path) -> "TaskSplit":
        """A prepared split, checked against the cache's manifest."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: prepared data not found; run `dvc repro prepare` or `optiminbert prepare` first")
        expected = read_manifest(path.parent)["files"].get(path.name)
        content = path.read_bytes()
        if expected is None:
            raise UserError(f"{path}: not listed in {path.parent / MANIFEST}, so not from this cache; {_REPREPARE}")
        if hashlib.sha256(content).hexdigest() != expected:
            raise UserError(f"{path}: changed or damaged since it was prepared (its checksum differs); {_REPREPARE}")
        try:
            raw = torch.load(io.BytesIO(content), weights_only=True)
            missing = [k for k in _SPLIT_KEYS if k not in raw]
        except Exception as exc:  # whatever the unpickler raises: the file is not ours
            raise UserError(f"{path}: unreadable prepared data ({type(exc).__name__}); {_REPREPARE}") from exc
        if missing:
            raise UserError(f"{path}: prepared by another version (no {', '.join(missing)}); {_REPREPARE}")
        columns = [TokenizedTexts(f, o) for f, o in zip(raw["flat"], raw["offsets"])]
        return cls(raw["task"], raw["split"], raw["ids"], [tuple(t) for t in raw["texts"]], raw["labels"], columns)


@dataclass
class FeatureSplit:
    """Encoder features computed once for a frozen encoder: training the head costs no encoder pass."""

    features: torch.Tensor
    labels: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.features)

    @property
    def lengths(self) -> torch.Tensor:
        return torch.ones(len(self.features), dtype=torch.long)  # all equal: bucketing keeps the shuffled order

    shuffled_batches = TaskSplit.shuffled_batches

    def batch(self, indices: torch.Tensor, pairs: str, max_length: int) -> dict[str, torch.Tensor]:
        batch = {"features": self.features[indices]}
        if self.labels is not None:
            batch["labels"] = self.labels[indices]
        return batch


def split_path(prepared_dir: str | Path, task: str, split: str) -> Path:
    return Path(prepared_dir) / f"{task}-{split}.pt"


def read_manifest(prepared_dir: str | Path) -> dict:
    path = Path(prepared_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"{path} not found: the prepared data is incomplete or from an older version; {_REPREPARE}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        ok = manifest.get("format") == MANIFEST_FORMAT and isinstance(manifest.get("files"), dict) and "tokenizer" in manifest
    except (ValueError, UnicodeDecodeError, AttributeError):
        ok = False
    if not ok:
        raise UserError(f"{path}: not a manifest this version wrote; {_REPREPARE}")
    return manifest


def short_dev_copy(prepared_dir: str | Path, out_dir: str | Path, examples: int) -> None:
    """``prepared_dir`` into ``out_dir`` (an empty folder) with each dev split cut to its first
    ``examples``, the other splits linked: for runs timed on their steps, not their scores."""
    manifest, out_dir = read_manifest(prepared_dir), Path(out_dir)
    for name in manifest["files"]:
        source = Path(prepared_dir, name).resolve()
        if name.endswith("-dev.pt"):
            torch_save_atomic(TaskSplit.load(source).head(examples).to_dict(), out_dir / name)
            manifest["files"][name] = hashlib.sha256((out_dir / name).read_bytes()).hexdigest()
        else:
            (out_dir / name).symlink_to(source)
    write_json_atomic(manifest, out_dir / MANIFEST)


def check_tokenizer(prepared_dir: str | Path, checkpoint: str | Path) -> None:
    """Refuse to run ``checkpoint`` on a cache another tokenizer made."""
    if read_manifest(prepared_dir)["tokenizer"] != tokenizer_fingerprint(checkpoint):
        raise UserError(
            f"{prepared_dir} was tokenized with another vocabulary than checkpoint {checkpoint}: "
            f"prepare it with this checkpoint (`dvc repro prepare`, or `optiminbert prepare`)"
        )


def prepare(
    data_dir: str | Path,
    out_dir: str | Path,
    checkpoint: str,
    max_length: dict[str, int],
    tasks: tuple[str, ...] = tuple(data.TASKS),
) -> str:
    """Load, clean and tokenize every split of every task; returns the skipped-rows report."""
    source = data.local_source(data_dir)
    loaded = {task: data.load_task(source, task) for task in tasks}  # all checked before any write
    summary, files = {}, {}
    with atomic_dir(out_dir) as tmp:
        for task, splits in loaded.items():
            tokenizer = load_tokenizer(checkpoint, max_length[task])
            for split, loaded_split in track(splits.items(), description=f"tokenizing {task}", transient=True):
                examples = loaded_split.examples
                columns = [
                    TokenizedTexts.from_lists([e.ids for e in tokenizer.encode_batch([ex.texts[c] for ex in examples])])
                    for c in range(len(loaded_split.task.text_columns))
                ]
                prepared = TaskSplit.from_examples(task, split, examples, columns)
                path = split_path(tmp, task, split)
                torch_save_atomic(prepared.to_dict(), path)
                files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
                summary[f"{task}-{split}"] = {
                    "examples": len(examples),
                    "skipped": len(loaded_split.skipped),
                    "tokens": int(prepared.lengths.sum()),
                    "truncated": int(sum((c.lengths >= max_length[task]).sum() for c in columns)),
                }
        report = data.skip_report([s for splits in loaded.values() for s in splits.values()])
        write_text_atomic(report + "\n", tmp / "skipped.txt")
        write_json_atomic(summary, tmp / "summary.json")
        manifest = {"format": MANIFEST_FORMAT, "tokenizer": tokenizer_fingerprint(checkpoint), "files": files}
        write_json_atomic(manifest, tmp / MANIFEST)
    return report
