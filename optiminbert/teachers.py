"""Teachers' predictions on the training data, for the distilled student (``phases/distill.py``).

The teach step scores every training example once with each teacher phase's runs and keeps the
raw outputs in ``data/teachers/<task>.safetensors`` (a DVC output: changing only the student's
settings never scores the teachers again). The student reads them back as soft targets, the
teachers' mean in probability space (as the ensemble averages them), beside each gold label.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from optiminbert.atomic import atomic_path
from optiminbert.data import TASKS
from optiminbert.errors import UserError
from optiminbert.prepared import TaskSplit


def ids_digest(ids: list[str]) -> str:
    """What ties saved predictions to the examples they were made for."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def teachers_path(directory: str | Path, task: str) -> Path:
    return Path(directory) / f"{task}.safetensors"


def save_predictions(raw: list[torch.Tensor], teachers: list[str], split: TaskSplit, path: Path) -> None:
    """Each teacher's raw outputs on ``split``, stacked (teachers, examples, ...)."""
    metadata = {"teachers": ",".join(teachers), "ids": ids_digest(split.ids), "task": split.task}
    with atomic_path(path) as tmp:
        save_file({"raw": torch.stack(raw).contiguous()}, str(tmp), metadata=metadata)


def load_targets(path: Path, split: TaskSplit, teachers: list[str], temperature: float) -> torch.Tensor:
    """The teachers' soft targets for ``split``, (examples, k), checked against what they were
    made from: the same examples, the same teachers."""
    if not path.is_file():
        raise UserError(f"{path}: teachers' predictions not found; run `dvc repro teach` (or `optiminbert teach`) first")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            raw = handle.get_tensor("raw")
    except (OSError, SafetensorError) as exc:
        raise UserError(f"{path}: unreadable teachers' predictions ({exc}); run `dvc repro teach` again") from exc
    if metadata.get("ids") != ids_digest(split.ids) or raw.shape[1] != len(split):
        raise UserError(f"{path}: made for other {split.task} training examples than data/prepared holds; run `dvc repro teach` again")
    if metadata.get("teachers", "").split(",") != list(teachers):
        raise UserError(f"{path}: made by {metadata.get('teachers')}, not {','.join(teachers)}; run `dvc repro teach` again")
    return TASKS[split.task].kind.soft_targets(raw, temperature)


@dataclass
class TeacherSplit:
    """A training split whose batches carry the teachers' soft targets beside each gold label:
    ``labels`` is (B, 1 + k), the gold label in column 0 (``DistillationLoss`` splits them)."""

    split: TaskSplit
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.split)

    @property
    def lengths(self) -> torch.Tensor:
        return self.split.lengths

    @property
    def labels(self) -> torch.Tensor:
        return self.split.labels

    def shuffled_batches(self, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
        return self.split.shuffled_batches(batch_size, generator)

    def digest(self) -> str:
        """What a resumed run checks its teachers by."""
        return hashlib.sha256(self.targets.float().numpy().tobytes()).hexdigest()[:16]

    def batch(self, indices: torch.Tensor, pairs: str, max_length: int) -> dict[str, torch.Tensor]:
        batch = self.split.batch(indices, pairs, max_length)
        batch["labels"] = torch.cat([batch["labels"][:, None], self.targets[indices]], dim=1)
        return batch
