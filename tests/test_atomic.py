"""Atomic writes (atomic.py): a directory is replaced as a whole or not at all, and what a killed
writer left behind is cleared by the next write of the same target."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from optiminbert import atomic
from optiminbert.atomic import atomic_dir, write_text_atomic
from optiminbert.errors import UserError


def fill(directory: Path, **files: str) -> None:
    for name, text in files.items():
        (directory / name).write_text(text)


def contents(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.iterdir())}


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(process.stdout)


@pytest.mark.parametrize("exchange", [True, False], ids=["one-step-exchange", "rename-aside"])
def test_a_directory_is_replaced_whole(tmp_path: Path, exchange: bool) -> None:
    target = tmp_path / "run"
    with atomic_dir(target) as tmp:
        fill(tmp, a="old", b="old")
    with mock.patch.object(atomic, "_exchange", wraps=atomic._exchange) if exchange else \
            mock.patch.object(atomic, "_exchange", return_value=False):
        with atomic_dir(target) as tmp:
            assert contents(target) == {"a": "old", "b": "old"}  # untouched while the new one is written
            fill(tmp, a="new")
    assert contents(target) == {"a": "new"}  # nothing of the old run is left beside the new one
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_write_that_fails_leaves_the_old_directory_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with atomic_dir(target) as tmp:
        fill(tmp, a="old")
    with pytest.raises(OSError, match="disk full"), atomic_dir(target) as tmp:
        fill(tmp, a="new")
        raise OSError("disk full")
    assert contents(target) == {"a": "old"} and [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_killed_writers_temporaries_are_removed_by_the_next_write(tmp_path: Path) -> None:
    pid = dead_pid()
    left = tmp_path / f".run.{pid}.x1y2z3.tmp"
    left.mkdir()
    fill(left, half="written")
    stray_file = tmp_path / f".out.json.{pid}.abc123.tmp"
    stray_file.write_text("{")
    alive = tmp_path / f".run.{1}.abc123.tmp"  # pid 1 is running: maybe another writer's, kept
    alive.mkdir()
    with atomic_dir(tmp_path / "run") as tmp:
        fill(tmp, a="new")
    write_text_atomic("{}", tmp_path / "out.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "out.json", "run"])


def test_a_file_in_the_way_is_named(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("")
    with pytest.raises(UserError, match=r"cannot write .*run: it is a file, give a directory"), atomic_dir(tmp_path / "run"):
        pass
