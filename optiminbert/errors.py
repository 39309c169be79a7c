"""The exceptions the command line shows as one line, and the runner that shows them."""

from __future__ import annotations

import sys
from typing import Callable


class UserError(Exception):
    """A problem with the user's input (a file, a row, a param): shown as one line, exit 1."""


class Interrupted(Exception):
    """Training stopped on a signal after saving its state; the command exits with 128 + signal."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line, for a one-line error that quotes it."""
    return (str(exc).strip().splitlines() or [""])[0]


def run_app(app: Callable[[], object]) -> None:
    """Run a command-line app (the CLI, a DVC stage) with one-line errors, tracebacks only with --debug."""
    try:
        app()
    except (UserError, OSError) as exc:  # OSError: the file system's answer (disk full, permission denied)
        if "--debug" in sys.argv:
            raise
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    except Interrupted as exc:
        sys.stderr.write(f"interrupted: {exc}\n")
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
