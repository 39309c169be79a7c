"""Data-parallel training: 2 gloo ranks launched by torchrun take the same steps as one process
on the same global batches, with and without PCGrad; stopped by SIGTERM, they save one state
and resume to exactly the run they would have finished."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import dropout_free, run_weights, train_tiny
from safetensors.torch import load_file

from optiminbert.phases import STUDY_TASKS
from optiminbert.surgery import STRATEGIES

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(shutil.which("torchrun", path=str(BIN)) is None, reason="torchrun not installed")

# The CLI with a strategy that sends rank 0 alone a real SIGTERM at its AT-th step: the
# other rank learns of it only through the ranks' agreement.
SIGNAL_ON_RANK_0 = """
import os, signal, sys
from optiminbert import cli, distributed, training
from optiminbert.surgery import PCGrad

class SignalAt(PCGrad):
    calls = 0

    def apply(self, *args):
        SignalAt.calls += 1
        if SignalAt.calls == int(os.environ["AT"]) and distributed.rank() == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        super().apply(*args)

training.make_strategy = lambda settings, tasks: SignalAt(settings)
sys.argv = ["optiminbert", *sys.argv[1:]]
cli.main()
"""


# Registered before the group is joined, so it runs after the handlers that joining registers
# (atexit runs last-in first-out): what it sees is what the interpreter's teardown will find.
GROUP_AT_EXIT = """
import atexit, os, sys
import torch
import torch.distributed as dist
from optiminbert import distributed

def record():
    state = f"rank{dist.get_rank()}" if dist.is_initialized() else "gone"
    open(os.path.join(sys.argv[1], f"{state}-{os.environ['RANK']}"), "w").close()

atexit.register(record)
distributed.init()
distributed.all_reduce_(torch.ones(4))
"""


# Every gradient method in one launch: each rank trains the same run with each in turn (rank 0
# saves it); the settings arrive as JSON.
EVERY_METHOD = """
import json, sys
from optiminbert.phases import STUDY_TASKS, Run
from optiminbert.settings import resolve
from optiminbert.surgery import STRATEGIES
from optiminbert.training import train_run
values, prepared, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
run = Run("test", "mtl_embed", tuple(STUDY_TASKS), "siamese", (), "mtl_embed")
for name in STRATEGIES:
    train_run(run, resolve({**values, "surgery": name}, shape=run.shape), prepared, f"{out}/{name}")
"""


def _settings(tmp_path: Path, tiny_checkpoint: Path, tiny_params, surgery: str, **losses):
    checkpoint = dropout_free(tmp_path / "checkpoint", tiny_checkpoint)
    return tiny_params.replace(checkpoint=str(checkpoint), epochs=2, steps_per_epoch=3, dropout=0.0, surgery=surgery, **losses)


def _project(directory: Path, tiny_prepared: Path, p) -> Path:
    (directory / "data").mkdir(parents=True)
    os.symlink(tiny_prepared, directory / "data" / "prepared")
    keys = ("checkpoint", "device", "precision", "batch_size", "accumulate", "eval_batch_size", "lr", "max_length",
            "epochs", "steps_per_epoch", "dropout")
    section = {k: p[k] for k in ("surgery", "contrastive", "online_contrastive")}
    (directory / "params.yaml").write_text(yaml.safe_dump({k: p[k] for k in keys} | {"mtl_embed": section}))
    return directory


def _two_ranks(*argv: str, cwd: Path | None = None, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """``argv`` launched by torchrun on two ranks, one thread each."""
    launch = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", *argv]
    return subprocess.run(launch, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1", **env}, capture_output=True,
                          text=True, timeout=timeout)


def _torchrun(project: Path, *args: str, program: list[str] | None = None, **env: str) -> subprocess.CompletedProcess:
    return _two_ranks(*(program or [str(BIN / "optiminbert")]), "train", "mtl_embed", *args, cwd=project, **env)


@pytest.mark.parametrize(
    "surgery, losses, accumulate",
    # In-batch losses (MNRL's negatives, the online contrastive loss's hard pairs) read the global
    # batch, gathered from both ranks: without the gather two ranks train another objective.
    # PCGrad's ranks also cut their slices in micro-batches: the per-task gradients it projects
    # are still the whole global batch's.
    [("none", dict(contrastive="mnrl", online_contrastive=0.1), 1), ("pcgrad", {}, 2)],
    ids=["sum-in-batch-losses", "pcgrad-micro-batches"],
)
def test_two_gloo_ranks_equal_one_process(tmp_path, tiny_prepared, tiny_params, tiny_checkpoint, one_thread, surgery,
                                          losses, accumulate):
    p = _settings(tmp_path, tiny_checkpoint, tiny_params, surgery, **losses)
    train_tiny(p, STUDY_TASKS, "siamese", tiny_prepared, tmp_path / "single", name="single")
    project = _project(tmp_path / "project", tiny_prepared, p.replace(accumulate=accumulate))
    result = _torchrun(project)
    assert result.returncode == 0, result.stderr[-3000:]

    single, ranks = run_weights(tmp_path / "single"), run_weights(project / "models" / "mtl_embed")
    assert single.keys() == ranks.keys()
    for key in single:
        torch.testing.assert_close(ranks[key], single[key], rtol=1e-5, atol=1e-6, msg=key)
    start = load_file(Path(p["checkpoint"]) / "model.safetensors")
    moved = sum(not torch.equal(start[k], single[k]) for k in start if k in single)
    assert moved > 0  # the runs trained: agreeing on untouched weights would prove nothing


def test_every_gradient_method_takes_one_process_step_on_two_ranks(tmp_path, tiny_prepared, tiny_params, tiny_checkpoint,
                                                                 one_thread):
    """Each method combines the global per-task gradients (the loss weightings: the global
    losses), so two ranks with half of every batch each train the one-process run."""
    p = _settings(tmp_path, tiny_checkpoint, tiny_params, "none").replace(epochs=1, steps_per_epoch=2)
    script = tmp_path / "every_method.py"
    script.write_text(EVERY_METHOD)
    values = {k: v for k, v in p.record().items() if k != "surgery"}
    result = _two_ranks(str(script), json.dumps(values), str(tiny_prepared), str(tmp_path / "ranks"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in STRATEGIES:
        train_tiny(p.replace(surgery=name), STUDY_TASKS, "siamese", tiny_prepared, tmp_path / "single" / name, name="mtl_embed")
        single, ranks = run_weights(tmp_path / "single" / name), run_weights(tmp_path / "ranks" / name)
        assert single.keys() == ranks.keys()
        for key in single:
            torch.testing.assert_close(ranks[key], single[key], rtol=1e-5, atol=1e-6, msg=f"{name}: {key}")


def test_each_rank_leaves_the_process_group_before_the_interpreter_tears_down(tmp_path, one_thread):
    """Gloo's threads left to the interpreter's teardown abort a finished run now and then
    (SIGABRT, "terminate called without an active exception"): every rank destroys the group
    at exit."""
    script = tmp_path / "group_at_exit.py"
    script.write_text(GROUP_AT_EXIT)
    result = _two_ranks(str(script), str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*-[01]")) == ["gone-0", "gone-1"]


def test_two_gloo_ranks_stopped_by_sigterm_resume_to_the_uninterrupted_run(tmp_path, tiny_prepared, tiny_params,
                                                                          tiny_checkpoint, one_thread):
    p = _settings(tmp_path, tiny_checkpoint, tiny_params, "pcgrad")
    straight = _project(tmp_path / "straight", tiny_prepared, p)
    assert _torchrun(straight).returncode == 0

    stopped = _project(tmp_path / "stopped", tiny_prepared, p)
    script = tmp_path / "signal_on_rank_0.py"
    script.write_text(SIGNAL_ON_RANK_0)
    result = _torchrun(stopped, program=[str(script)], AT="4")  # epoch 2, step 1 of 3
    assert result.returncode != 0
    state = stopped / ".resume" / "mtl_embed.pt"
    message = f"interrupted: mtl_embed: stopped by SIGTERM at epoch 2 step 1/3; state saved to {Path('.resume/mtl_embed.pt')}"
    assert result.stderr.count(message) == 2, result.stderr[-3000:]  # both ranks stopped at the same step
    assert state.is_file() and not (stopped / "models" / "mtl_embed").exists()
    assert len(torch.load(state, weights_only=True)["rng"]) == 2  # each rank's own dropout generator

    result = _torchrun(stopped, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    ours, theirs = run_weights(stopped / "models" / "mtl_embed"), run_weights(straight / "models" / "mtl_embed")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not state.exists()
