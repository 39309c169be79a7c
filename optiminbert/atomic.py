"""Atomic writes: every output is written to a temporary file and renamed into place,
so a crash at any moment leaves the old file or the new one, never half of one."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from optiminbert.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    if path.is_dir():  # else os.replace fails only after the work, naming the temporary file
        raise UserError(f"cannot write {path}: it is a directory, give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from exc
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(obj: object, path: str | Path) -> None:
    write_text_atomic(json.dumps(obj, indent=2) + "\n", path)


def write_csv_atomic(header: list[str], rows: Iterable[Iterable[object]], path: str | Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(buffer.getvalue(), path)


def write_safetensors_atomic(tensors: dict, path: str | Path) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})


def torch_save_atomic(obj: object, path: str | Path) -> None:
    import torch

    # Saved through a file object: given a path, torch.save names the archive's root folder after
    # the (random) temporary file, so the same data would hash differently on every run and
    # `dvc repro` would re-run everything downstream.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
