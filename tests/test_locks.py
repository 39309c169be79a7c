"""One writer per run directory (locks.py): a second run is refused at once, naming the first;
a run that dies, however it dies, leaves nothing locked and no lock file behind."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from optiminbert.errors import UserError
from optiminbert.locks import directory_lock, lock_path

HOLD = """
import sys
from optiminbert.locks import directory_lock
with directory_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_directory_in_use_by_another_process_is_refused_until_that_process_dies(tmp_path: Path) -> None:
    target = tmp_path / "models" / "mtl"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(UserError) as refused, directory_lock(target):
            pass
        assert str(refused.value) == (
            f"{target} is in use by another run (pid {holder.pid}); wait for it to finish or train into another directory"
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with directory_lock(target):  # the system dropped the dead holder's lock
        assert lock_path(target).is_file()


def test_a_released_lock_leaves_no_file_and_no_folder_it_made(tmp_path: Path) -> None:
    with directory_lock(tmp_path / "models" / "mtl"):
        pass
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "models").mkdir()
    with directory_lock(tmp_path / "models" / "mtl"):
        (tmp_path / "models" / "mtl").mkdir()  # the run saved: its folders stay
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["mtl"]


def test_the_same_process_cannot_take_a_held_lock_twice(tmp_path: Path) -> None:
    with directory_lock(tmp_path / "run"), pytest.raises(UserError, match="is in use by another run"), directory_lock(tmp_path / "run"):
        pass
