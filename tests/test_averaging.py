"""The moving average of the weights (averaging.py): the EMA rule by hand, and a run with ``ema``
trains as one without, scoring and saving the average."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from optiminbert.averaging import WeightAverage


def test_weight_average_follows_the_ema_rule_and_puts_the_trained_weights_back() -> None:
    weights = [torch.nn.Parameter(torch.tensor([0.0, 4.0]))]
    average = WeightAverage(weights, decay=0.5)
    for value in ([2.0, 0.0], [4.0, 4.0]):  # two optimizer steps
        with torch.no_grad():
            weights[0].copy_(torch.tensor(value))
        average.update()
    # 0.5 * (0.5 * [0, 4] + 0.5 * [2, 0]) + 0.5 * [4, 4]: the average starts from the first weights
    assert average.average[0].tolist() == [2.5, 3.0]
    with pytest.raises(RuntimeError), average.applied():
        assert weights[0].tolist() == [2.5, 3.0]
        raise RuntimeError  # the trained weights come back even when the block fails
    assert weights[0].tolist() == [4.0, 4.0]


def encoder_weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


def test_ema_scores_and_saves_the_average_and_trains_as_without(trained, finetuned_run, tiny_checkpoint: Path) -> None:
    averaged = trained("finetune-ema", ["sst"], ema=0.5)
    # The average is only read: the same steps and losses.
    assert [(h["train_loss"], h["steps"]) for h in averaged.history] == [(h["train_loss"], h["steps"]) for h in finetuned_run.history]
    plain = encoder_weights(finetuned_run.dir / "encoder")
    assert any(not torch.equal(v, plain[k]) for k, v in encoder_weights(averaged.dir / "encoder").items())
    # A decay this close to 1 keeps the weights training started from, and that is what is saved.
    still = trained("finetune-ema-still", ["sst"], ema=1 - 1e-9)
    checkpoint, saved = encoder_weights(tiny_checkpoint), encoder_weights(still.dir / "encoder")
    assert all(torch.allclose(saved[k], checkpoint[k], atol=1e-6) for k in checkpoint)
    assert not all(torch.allclose(plain[k], checkpoint[k], atol=1e-6) for k in checkpoint)
