"""Interrupted training resumes where it stopped.

Ctrl-C or SIGTERM does not kill a training run: the handler only raises a flag, the loop
finishes the step it is in, saves everything the rest of the run depends on (weights, optimizer
and scheduler, RNG states, data-order position, the history so far) and stops. The next run
with the same settings loads that state and ends exactly where an uninterrupted run would have
(bit for bit on CPU). A state saved under other settings is never resumed: its fingerprint
(a hash of the params, tasks, data sizes and number of processes) no longer matches. Under
torchrun the ranks agree on the step to stop at and rank 0 saves the one state.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from optiminbert import distributed
from optiminbert.atomic import torch_save_atomic
from optiminbert.errors import Interrupted, UserError

__all__ = ["Interrupted", "StopRequest", "ResumeFile", "fingerprint", "rng_state", "set_rng_state"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """While active, SIGINT and SIGTERM set ``signum`` instead of interrupting the step."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        # Signal handlers can only be installed from the main thread; elsewhere keep defaults.
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# Part of every fingerprint, bumped when what a saved state or its fingerprint holds changes (2:
# the best epoch's dev outputs; 3: only the settings a run uses; 4: every rank's random
# generators, the fp16 loss scale; 5: the dev scores between epochs' ends): a state from an older
# version is then started over, not misread.
STATE_FORMAT = 5


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([STATE_FORMAT, *parts], sort_keys=True, default=str).encode()).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class ResumeFile:
    """Where one training run keeps its resumable state, and the settings it belongs to."""

    path: Path
    fingerprint: str

    def load(self) -> dict[str, Any] | None:
        """The saved state if there is one for these settings, else None."""
        if not self.path.is_file():
            return None
        try:
            # weights_only: loading a state file can never run code.
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(f"{self.path}: unreadable resume state ({type(exc).__name__}); delete it to start over") from exc
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Rank 0 writes (data-parallel ranks hold the same state but their random generators,
        which ``state`` carries for every rank); every rank returns once it is written."""
        if distributed.is_main():
            torch_save_atomic({**state, "fingerprint": self.fingerprint}, self.path)
        distributed.barrier()

    def clear(self) -> None:
        if distributed.is_main():
            self.path.unlink(missing_ok=True)
        distributed.barrier()
