"""Live training metrics through DVCLive: one directory per run, ``dvclive/<run>/``.

The training loop (``train.py``) reports to a ``LiveLog`` as it goes: the training loss per task
every ``LOG_EVERY`` steps (``train/<task>_loss``), the dev scores each time dev is scored
(``dev/<task>``: every ``eval_every`` steps and at each epoch's end), all on the run's global
step. DVCLive writes them as its ``plots/metrics/**.tsv`` histories (what ``dvc plots`` draws) and
``metrics.json`` (the latest values, which ``dvc exp show`` reads while ``dvc exp run`` trains),
and the run's settings as ``params.yaml``. The files carry no wall-clock time, so the same run
writes the same bytes.

A resumed run rewrites the directory from the state it resumed (``replay``): the points logged
after that state by the interrupted process are gone, as they are from the weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dvclive import Live
from scmrepo.exceptions import SCMError


class _Live(Live):
    """DVCLive, which reaches for the DVC project only where DVC runs the stage (``DVC_ROOT``):
    there it names the experiment for DVC Studio and the VS Code extension. A run trained by hand
    writes its files and touches no repository (DVCLive would ``dvc init`` a plain git one)."""

    def _init_dvc(self) -> None:
        if not os.getenv("DVC_ROOT"):
            return
        try:
            super()._init_dvc()
        except SCMError:  # a git repository without a commit: no baseline to name, the files still go
            self._dvc_repo = None


class LiveLog:
    def __init__(self, directory: str | Path, params: dict[str, Any]):
        # Pipeline stages declare these files in dvc.yaml (dvcyaml=False); a run is never saved as
        # an experiment of its own (DVC's `exp run` does that for the whole pipeline).
        self.live = _Live(str(directory), dvcyaml=False, save_dvc_exp=False, report=None)
        self.live.log_params(params)

    def train_losses(self, step: int, losses: dict[str, float]) -> None:
        self._log(step, {f"train/{task}_loss": value for task, value in losses.items()})

    def dev_scores(self, step: int, scores: dict[str, float]) -> None:
        self._log(step, {f"dev/{task}": value for task, value in scores.items()})

    def _log(self, step: int, values: dict[str, float]) -> None:
        self.live.step = step
        for name, value in values.items():
            self.live.log_metric(name, value)
        self.live.next_step()  # writes metrics.json (and tells DVC's tools a step is done)

    def replay(self, history: list[dict], tally: dict) -> None:
        """Everything a resumed run had logged, in the order it was logged: each finished
        epoch's training losses, its dev scores between, its end-of-epoch scores; then the
        current epoch's so far."""
        for epoch in history:
            self._replay_epoch(epoch["steps"], epoch["evals"])
            self.dev_scores(epoch["steps"][-1]["step"], epoch["dev"])
        self._replay_epoch(tally["logged"], tally["evals"])

    def _replay_epoch(self, logged: list[dict], evals: list[dict]) -> None:
        points = [(p["step"], 0, p) for p in logged] + [(e["step"], 1, e) for e in evals]
        for step, kind, point in sorted(points, key=lambda item: item[:2]):
            if kind:
                self.dev_scores(step, point["dev"])
            else:
                self.train_losses(step, {k: v for k, v in point.items() if k != "step"})
