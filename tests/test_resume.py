"""Interrupted training: a real SIGTERM mid-epoch saves a state, and resuming from it ends with
exactly the weights and metrics of an uninterrupted run (CPU, same seed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from optiminbert import phases
from optiminbert.resume import Interrupted, ResumeFile
from optiminbert.surgery import PCGrad

CLI = str(Path(sys.executable).parent / "optiminbert")


class SignalAtStep(PCGrad):
    """PCGrad that sends the process a real SIGTERM during its ``at``-th backward pass."""

    def __init__(self, seed: int, at: int):
        super().__init__(seed)
        self.at, self.calls = at, 0

    def backward(self, losses, shared, task_params) -> None:
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        super().backward(losses, shared, task_params)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    dev_outputs = {f"dev outputs {k}": v for k, v in load_file(run_dir / phases.DEV_OUTPUTS).items()}
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


@pytest.mark.parametrize("at_step", [3, 7])  # mid-epoch 1, and mid-epoch 2 (5 steps per epoch)
def test_sigterm_mid_epoch_then_resume_equals_uninterrupted(tmp_path, tiny_prepared, tiny_params, one_thread, monkeypatch, at_step):
    p = {**tiny_params, "surgery": "pcgrad", "steps_per_epoch": 5, "ema": 0.9}  # the average resumes too
    tasks = list(phases.STUDY_TASKS)
    phases.train_run(p, tasks, "siamese", tiny_prepared, tmp_path / "straight", "mtl")

    state = tmp_path / "resume" / "mtl.pt"
    monkeypatch.setattr(phases, "make_strategy", lambda name, seed, tasks: SignalAtStep(seed, at_step))
    with pytest.raises(Interrupted, match="SIGTERM") as stopped:
        phases.train_run(p, tasks, "siamese", tiny_prepared, tmp_path / "resumed", "mtl", resume_path=state)
    assert stopped.value.signum == signal.SIGTERM
    assert not (tmp_path / "resumed" / "run.json").exists()  # no half-finished run looks finished
    saved = torch.load(state, weights_only=True)
    assert (saved["epoch"], saved["step"]) == (1 + (at_step - 1) // 5, (at_step - 1) % 5 + 1)

    monkeypatch.undo()
    phases.train_run(p, tasks, "siamese", tiny_prepared, tmp_path / "resumed", "mtl", resume_path=state, resume=True)
    _assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_a_state_saved_under_other_settings_is_not_resumed(tmp_path):
    path = tmp_path / "state.pt"
    ResumeFile(path, "aaaa").save({"step": 3})
    assert ResumeFile(path, "aaaa").load()["step"] == 3
    assert ResumeFile(path, "bbbb").load() is None


def test_a_corrupt_state_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "state.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(Exception, match="unreadable resume state"):
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


class LossBecomesNaN(torch.nn.Module):
    """Cross-entropy that turns NaN at its ``at``-th call, as a diverging run would."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, prediction, labels):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(prediction.float(), labels.long())
        return loss * float("nan") if self.calls == self.at else loss


def test_a_nan_loss_stops_naming_task_and_step_and_keeps_the_last_epoch(tmp_path, tiny_prepared, tiny_params, one_thread, monkeypatch):
    p = {**tiny_params, "steps_per_epoch": 4}
    monkeypatch.setattr(phases, "loss_for", lambda *args: LossBecomesNaN(at=6))  # epoch 2, step 2
    state = tmp_path / "resume" / "sst.pt"
    with pytest.raises(Exception, match=r"sst: sst loss became nan at epoch 2 step 2; lower lr; the state after epoch 1 is kept in"):
        phases.train_run(p, ["sst"], "cross", tiny_prepared, tmp_path / "run", "sst", resume_path=state)
    assert not (tmp_path / "run").exists()  # nothing half-written
    kept = torch.load(state, weights_only=True)
    assert (kept["epoch"], kept["step"], len(kept["history"])) == (2, 0, 1)
