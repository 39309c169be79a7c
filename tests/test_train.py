"""The training loop (train.py): the optimizer's parameter groups and learning-rate schedule, and
a loss that turns NaN stopping the run with where it happened."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import dropout_free, run_weights, train_tiny

from safetensors.torch import load_file

from optiminbert.losses import Loss
from optiminbert import training
from optiminbert.errors import UserError
from optiminbert.losses import task_loss
from optiminbert.prepared import TaskSplit, split_path
from optiminbert.rundir import build_model
from optiminbert.runtime import Runtime
from optiminbert.surgery import SumLosses
from optiminbert.train import Trainer, lr_factor

CPU = Runtime(torch.device("cpu"), None)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("frozen", [False, True])
def test_heads_train_at_head_lr_only_beside_a_training_encoder(tiny_params, tiny_prepared: Path, frozen: bool) -> None:
    settings = tiny_params.replace(lr=1e-4, head_lr=5e-3)
    model = build_model(settings, ["sst"], "cross", frozen)
    split = TaskSplit.load(split_path(tiny_prepared, "sst", "train"))
    trainer = Trainer(model, {"sst": split}, {"sst": split}, settings, SumLosses(settings), CPU, "test",
                      {"sst": task_loss("sst", "cross", settings)})
    groups = trainer.optimizer.param_groups
    head_ids = {id(p) for p in model.heads["sst"].parameters()}
    if frozen:  # the heads are all that trains, at lr
        assert [g["initial_lr"] for g in groups] == [1e-4]
        assert {id(p) for p in groups[0]["params"]} == head_ids
    else:
        assert [g["initial_lr"] for g in groups] == [1e-4, 5e-3]
        assert {id(p) for p in groups[1]["params"]} == head_ids
        assert not head_ids & {id(p) for p in groups[0]["params"]}
        # head_lr 0: the heads train at lr, in their own group
        zero = tiny_params.replace(lr=1e-4, head_lr=0.0)
        again = Trainer(model, {"sst": split}, {"sst": split}, zero, SumLosses(zero), CPU, "test", {})
        assert [g["initial_lr"] for g in again.optimizer.param_groups] == [1e-4, 1e-4]


def test_lr_warms_up_linearly_then_decays_to_zero() -> None:
    # 10 steps, 2 of warm-up: 1/2, 2/2, then (10 - step) / 8 down to 1/8 at the last step.
    assert [lr_factor(step, 10, 2) for step in range(10)] == [0.5, 1.0] + [(10 - s) / 8 for s in range(2, 10)]
    assert lr_factor(10, 10, 2) == 0.0 and lr_factor(12, 10, 2) == 0.0  # never negative
    assert [lr_factor(step, 10, 0) for step in (0, 9)] == [1.0, 1.0]  # no warm-up: a constant lr


class LossBecomesNaN(Loss):
    """Cross-entropy that turns NaN at its ``at``-th call, as a diverging run would."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, prediction, labels):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(prediction.float(), labels.long())
        return loss * float("nan") if self.calls == self.at else loss


def test_a_nan_loss_stops_naming_task_and_step_and_keeps_the_last_epoch(tmp_path, tiny_prepared, tiny_params, monkeypatch) -> None:
    settings = tiny_params.replace(steps_per_epoch=4)
    monkeypatch.setattr(training, "task_loss", lambda *args: LossBecomesNaN(at=6))  # epoch 2, step 2
    state = tmp_path / "resume" / "sst.pt"
    expected = f"sst: sst loss became nan at epoch 2 step 2; lower lr; the state after epoch 1 is kept in {state}"
    with pytest.raises(UserError, match=f"^{re.escape(expected)}$"):
        train_tiny(settings, ["sst"], "cross", tiny_prepared, tmp_path / "run", name="sst", resume_path=state)
    assert not (tmp_path / "run").exists()  # nothing half-written
    kept = torch.load(state, weights_only=True)
    assert (kept["epoch"], kept["step"], len(kept["history"])) == (2, 0, 1)


def test_fp16_training_scales_the_losses_and_resumes_the_scale(tmp_path, tiny_prepared, tiny_params, monkeypatch) -> None:
    """fp16 (here on the CPU, as on an older GPU) trains through a gradient scaler whose scale is
    part of the resumable state."""
    settings = tiny_params.replace(precision="fp16", epochs=1, steps_per_epoch=3)
    scaled = []
    real_scale = torch.amp.GradScaler.scale
    monkeypatch.setattr(torch.amp.GradScaler, "scale", lambda self, loss: scaled.append(loss.detach()) or real_scale(self, loss))
    history = train_tiny(settings, ["sst", "sts"], "siamese", tiny_prepared, tmp_path / "run")
    assert len(scaled) == 2 * 3 and all(torch.isfinite(loss) for loss in scaled)
    assert history[0]["dev"]["sst"] >= 0

    fp16 = Runtime(torch.device("cpu"), torch.float16)
    split = TaskSplit.load(split_path(tiny_prepared, "sst", "train"))
    trainer = Trainer(build_model(settings, ["sst"], "cross"), {"sst": split}, {"sst": split}, settings,
                      SumLosses(settings), fp16, "test", {"sst": task_loss("sst", "cross", settings)})
    trainer.scaler.scale(torch.ones(()))  # the scale exists from the first scaled loss
    trainer.scaler.update(1234.0)
    state = trainer.state_dict()
    again = Trainer(build_model(settings, ["sst"], "cross"), {"sst": split}, {"sst": split}, settings,
                    SumLosses(settings), fp16, "test", {"sst": task_loss("sst", "cross", settings)})
    again.load_state_dict(state)
    assert again.scaler.get_scale() == 1234.0


def test_a_log_gets_whole_progress_lines_not_a_cut_bar(tmp_path, tiny_prepared, tiny_params, capfd) -> None:
    """dvc repro's output once showed `━━ 2… loss cfimdb 0.655 | 9083 ex/s 0… 0:…`."""
    settings = tiny_params.replace(epochs=1, steps_per_epoch=20)
    train_tiny(settings, ["sst", "sts"], "siamese", tiny_prepared, tmp_path / "run", name="a-run-with-a-long-name")
    lines = capfd.readouterr().err.splitlines()
    progress = [line for line in lines if ": step " in line]
    assert [int(re.search(r"step (\d+)/20", line).group(1)) for line in progress] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert all(re.fullmatch(r"a-run-with-a-long-name epoch 1/1: step \d+/20, loss sst [\d.]+ sts [\d.]+, \d+ ex/s, "
                            r"\d\d:\d\d:\d\d elapsed", line) for line in progress), progress
    assert not any("…" in line or "━" in line for line in lines)


@pytest.mark.parametrize("surgery", ["none", "pcgrad"])
def test_micro_batches_take_the_same_steps_as_the_whole_batch(tmp_path, tiny_prepared, tiny_params, surgery) -> None:
    """``accumulate``: batches of 8 cut in 3 micro-batches (3, 3, 2 examples) train the weights the
    whole batches do, per-example and in-batch losses (MNRL, kept whole), summed or projected
    (PCGrad projects the whole batch's per-task gradients, not a micro-batch's)."""
    checkpoint = dropout_free(tmp_path / "checkpoint", Path(tiny_params["checkpoint"]))
    settings = tiny_params.replace(checkpoint=str(checkpoint), epochs=1, steps_per_epoch=4, dropout=0.0,
                                   surgery=surgery, contrastive="mnrl")
    runs = {}
    for parts in (1, 3):
        train_tiny(settings.replace(accumulate=parts), ["sst", "quora", "sts"], "siamese", tiny_prepared,
                   tmp_path / f"run{parts}", name=f"run{parts}")
        runs[parts] = run_weights(tmp_path / f"run{parts}")
    assert runs[1].keys() == runs[3].keys()
    for key, whole in runs[1].items():
        torch.testing.assert_close(runs[3][key], whole, rtol=1e-4, atol=1e-6, msg=key)
    start = load_file(checkpoint / "model.safetensors")
    assert sum(not torch.equal(start[k], runs[1][k]) for k in start if k in runs[1]) > 0  # they trained
