"""Interrupted training: a real SIGTERM mid-epoch saves a state, and resuming from it ends with
exactly the weights and metrics of an uninterrupted run (CPU, same seed)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_run, train_tiny
from safetensors.torch import load_file

from optiminbert import training
from optiminbert.errors import Interrupted, UserError
from optiminbert.phases import STUDY_TASKS
from optiminbert.resume import ResumeFile
from optiminbert.rundir import DEV_OUTPUTS, RunDir
from optiminbert.settings import resolve
from optiminbert.surgery import PCGrad, SumLosses
from optiminbert.training import train_run

CLI = str(Path(sys.executable).parent / "optiminbert")


def signalling(strategy: type) -> type:
    """``strategy``, sending the process a real SIGTERM during its ``at``-th step."""

    class SignalAtStep(strategy):
        def __init__(self, settings, at: int):
            super().__init__(settings)
            self.at, self.calls = at, 0

        def apply(self, shared, task_params) -> None:
            self.calls += 1
            if self.calls == self.at:
                os.kill(os.getpid(), signal.SIGTERM)
            super().apply(shared, task_params)

    return SignalAtStep


SignalAtStep = signalling(PCGrad)
SumSignalAtStep = signalling(SumLosses)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    dev_outputs = {f"dev outputs {k}": v for k, v in load_file(run_dir / DEV_OUTPUTS).items()}
    return {**load_file(run_dir / "heads.safetensors"), **load_file(run_dir / "encoder" / "model.safetensors"), **dev_outputs}


def _scores(run_dir: Path) -> list:
    history = json.loads((run_dir / "run.json").read_text())["history"]
    return [(h["epoch"], h["dev"], h["train_loss"], h["steps"]) for h in history]


def _assert_same_run(a: Path, b: Path) -> None:
    assert _scores(a) == _scores(b)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def _files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("at_step", [3, 7])  # mid-epoch 1, and mid-epoch 2 (5 steps per epoch)
def test_sigterm_mid_epoch_then_resume_equals_uninterrupted(tmp_path, tiny_prepared, tiny_params, one_thread, monkeypatch, at_step):
    # The weights' average resumes too; so do the live metrics, dev scored between epochs' ends included.
    settings = tiny_params.replace(surgery="pcgrad", steps_per_epoch=5, ema=0.9, eval_every=2)
    train_tiny(settings, STUDY_TASKS, "siamese", tiny_prepared, tmp_path / "straight", name="mtl",
               live_dir=tmp_path / "live-straight")

    state = tmp_path / "resume" / "mtl.pt"
    monkeypatch.setattr(training, "make_strategy", lambda settings, tasks: SignalAtStep(settings, at_step))
    with pytest.raises(Interrupted) as stopped:
        train_tiny(settings, STUDY_TASKS, "siamese", tiny_prepared, tmp_path / "resumed", name="mtl", resume_path=state,
                   live_dir=tmp_path / "live")
    assert stopped.value.signum == signal.SIGTERM
    epoch, step = 1 + (at_step - 1) // 5, (at_step - 1) % 5 + 1
    assert str(stopped.value) == (
        f"mtl: stopped by SIGTERM at epoch {epoch} step {step}/5; state saved to {state}; "
        "run the same command with --resume (or dvc repro) to continue"
    )
    assert not (tmp_path / "resumed" / "run.json").exists()  # no half-finished run looks finished
    saved = torch.load(state, weights_only=True)
    assert (saved["epoch"], saved["step"]) == (epoch, step)

    # A point logged after the saved state (as by a process killed before it could save) is not kept.
    with (tmp_path / "live" / "plots" / "metrics" / "dev" / "sst.tsv").open("a") as history:
        history.write("99\t0.5\n")

    monkeypatch.undo()
    train_tiny(settings, STUDY_TASKS, "siamese", tiny_prepared, tmp_path / "resumed", name="mtl", resume_path=state,
               resume=True, live_dir=tmp_path / "live")
    _assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    assert _files(tmp_path / "live") == _files(tmp_path / "live-straight")


@pytest.mark.parametrize("change, resumed", [(dict(token_alignment=False), True), (dict(lr=2e-3), False)])
def test_only_a_change_to_a_setting_the_run_uses_starts_it_over(tmp_path, tiny_prepared, tiny_params, one_thread,
                                                               monkeypatch, change, resumed):
    """The state's fingerprint covers the settings the run records: a cross-encoded run does not
    read token_alignment, so changing it continues the saved state; a new lr starts over."""
    run = tiny_run(["sst"], "cross")
    settings = resolve({**tiny_params, "epochs": 1, "steps_per_epoch": 3}, shape=run.shape)
    state = tmp_path / "state.pt"
    with monkeypatch.context() as patch:
        patch.setattr(training, "make_strategy", lambda settings, tasks: SumSignalAtStep(settings, 2))
        with pytest.raises(Interrupted):
            train_run(run, settings, tiny_prepared, tmp_path / "run", state)
    loaded = []
    monkeypatch.setattr(ResumeFile, "load", lambda self, load=ResumeFile.load: loaded.append(load(self)) or loaded[-1])
    train_run(run, settings.replace(**change), tiny_prepared, tmp_path / "run", state, resume=True)
    assert [saved is not None and (saved["epoch"], saved["step"]) for saved in loaded] == [resumed and (1, 2)]


def test_sigterm_while_saving_finishes_the_save_and_says_so(tmp_path, tiny_prepared, tiny_params, one_thread, monkeypatch):
    """SIGTERM during the save once killed the process (exit 143, no message) between two files."""
    run = tiny_run(["sst"], "cross")
    settings = resolve({**tiny_params, "epochs": 1, "steps_per_epoch": 3}, shape=run.shape)
    state, out = tmp_path / "state.pt", tmp_path / "run"
    real_save = RunDir.save

    def save_under_fire(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        real_save(self, *args, **kwargs)

    monkeypatch.setattr(RunDir, "save", save_under_fire)
    with pytest.raises(Interrupted) as stopped:
        train_run(run, settings, tiny_prepared, out, state)
    assert str(stopped.value) == (
        f"run: stopped by SIGTERM while saving; the save finished, {out} is complete; "
        "run the same command with --resume (or dvc repro) to continue"
    )
    monkeypatch.undo()
    RunDir(out).load()
    assert train_run(run, settings, tiny_prepared, tmp_path / "again", state, resume=True) == RunDir(out).meta()["history"]


def test_a_damaged_state_with_the_right_fingerprint_is_a_one_line_error(tmp_path, tiny_prepared, tiny_params, one_thread, monkeypatch):
    run = tiny_run(["sst"], "cross")
    settings = resolve({**tiny_params, "epochs": 1, "steps_per_epoch": 3}, shape=run.shape)
    state = tmp_path / "state.pt"
    monkeypatch.setattr(training, "make_strategy", lambda settings, tasks: SumSignalAtStep(settings, 2))
    with pytest.raises(Interrupted):
        train_run(run, settings, tiny_prepared, tmp_path / "run", state)
    monkeypatch.undo()
    saved = torch.load(state, weights_only=True)
    del saved["optimizer"]
    torch.save(saved, state)
    with pytest.raises(UserError) as refused:
        train_run(run, settings, tiny_prepared, tmp_path / "run", state, resume=True)
    assert str(refused.value) == f"{state}: a resume state that does not fit this run (KeyError: 'optimizer'); delete it to start over"


def test_a_state_saved_under_other_settings_is_not_resumed(tmp_path):
    path = tmp_path / "state.pt"
    ResumeFile(path, "aaaa").save({"step": 3})
    assert ResumeFile(path, "aaaa").load()["step"] == 3
    assert ResumeFile(path, "bbbb").load() is None


def test_a_corrupt_state_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "state.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match=f"^{re.escape(str(path))}: unreadable resume state \\(\\w+\\); delete it to start over$"):
        ResumeFile(path, "aaaa").load()


@pytest.fixture
def project(tmp_path, tiny_prepared, tiny_params) -> Path:
    (tmp_path / "data").mkdir()
    os.symlink(tiny_prepared, tmp_path / "data" / "prepared")
    settings = {k: tiny_params[k] for k in ("checkpoint", "device", "precision", "batch_size", "eval_batch_size", "lr", "max_length")}
    # Long enough (about a second per epoch of the tiny model) for the signal to land mid-epoch.
    settings.update(epochs=2, steps_per_epoch=150, mtl={"surgery": "pcgrad"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))
    return tmp_path


def _train(project: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [CLI, "train", "mtl", *args], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_cli_killed_by_sigterm_resumes_to_the_same_metrics(project, tmp_path_factory):
    straight = _train(project)
    assert straight.wait() == 0, straight.stderr.read()
    reference = tmp_path_factory.mktemp("reference") / "mtl"
    (project / "models" / "mtl").rename(reference)

    run = _train(project)
    for line in run.stderr:  # training has started once it says how many steps it will take
        if "steps" in line:
            break
    time.sleep(0.5)
    run.send_signal(signal.SIGTERM)
    assert run.wait() == 128 + signal.SIGTERM
    message = run.stderr.read().strip().splitlines()[-1]
    assert message.startswith("interrupted: mtl: stopped by SIGTERM at epoch") and "--resume" in message
    assert not (project / "models" / "mtl" / "run.json").exists()
    assert (project / ".resume" / "mtl.pt").is_file()

    resumed = _train(project, "--resume")
    out, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert "resuming from" in err
    assert not (project / ".resume" / "mtl.pt").exists()
    _assert_same_run(reference, project / "models" / "mtl")
