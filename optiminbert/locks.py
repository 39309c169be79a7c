"""One writer per run directory: a second run aimed at a directory in use is refused at once.

The lock is ``.<name>.lock`` beside the directory, held with ``flock`` for as long as the run
trains and saves; the system drops it when the process ends, however it ends, so a killed run
never leaves a directory locked. The file is removed on release so that no stray file is left in
a DVC output; a writer that opened it just before that removal notices (the path no longer names
the file it locked) and takes a fresh one.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from optiminbert.errors import UserError


def lock_path(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.lock"


@contextmanager
def directory_lock(directory: str | Path) -> Iterator[None]:
    """Hold ``directory``'s lock for the block, or raise UserError naming the run that holds it."""
    directory = Path(directory)
    path = lock_path(directory)
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]  # removed again if left empty
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write {directory}: {exc.strerror}") from exc
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(
                f"{directory} is in use by another run (pid {holder}); wait for it to finish or train into another directory"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # locked a file its holder had just removed: take the one at the path now
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
        for folder in created:  # deepest first; one holding the saved run stays
            try:
                folder.rmdir()
            except OSError:
                break
