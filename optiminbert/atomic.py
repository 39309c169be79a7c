"""Atomic writes: every output is written to a temporary file (or a whole directory to a
temporary directory) and renamed into place, so a crash at any moment leaves the old file or
directory or the new one, never half of one or a mix of two.

Temporaries are named ``.<name>.<pid>.<random>.tmp`` beside their target; one whose writer is no
longer running (it was killed) is removed by the next write of the same target.
"""

from __future__ import annotations

import csv
import ctypes
import errno
import io
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from optiminbert.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries of ``path`` whose writers died before renaming them into place."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[^.]+\.tmp")
    if not path.parent.is_dir():
        return
    for entry in path.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and not _alive(int(match.group(1))):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    if path.is_dir():  # else os.replace fails only after the work, naming the temporary file
        raise UserError(f"cannot write {path}: it is a directory, give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
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


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux renameat2); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a file system without exchange
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; only if the block succeeds does it
    replace ``path`` as a whole. Where the system can exchange two paths in one step (Linux), a
    reader sees the old directory or the new one at every moment; elsewhere the old one is
    renamed aside first, so a crash between the two renames leaves ``path`` absent (never mixed)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"cannot write {path}: it is a file, give a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from exc
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700 directories
    try:
        yield tmp
        if not path.exists():
            os.rename(tmp, path)
        elif not _exchange(tmp, path):  # tmp now holds the old directory, removed below
            old = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent))
            os.rename(path, old / path.name)
            os.rename(tmp, path)
            tmp = old
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
