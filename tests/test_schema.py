"""The checks each training setting's declaration carries (schema.py's ``Setting.validate``), as a
run's settings meet them: resolved from a params tree, or changed with ``Settings.replace``."""

from __future__ import annotations

import pytest

from optiminbert.errors import UserError
from optiminbert.settings import resolve


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(lr=0), "param lr must be positive, got 0"),
        (dict(lr=-1e-5), "param lr must be positive, got -1e-05"),
        (dict(batch_size=0), "param batch_size must be positive, got 0"),
        # A negative grad_clip once flipped every clipped gradient's sign and trained silently;
        # a negative seed reached numpy's seeding as a traceback.
        (dict(grad_clip=-1.0), "param grad_clip must be >= 0, got -1.0"),
        # (the upper bound is printed rounded, as 4.29497e+09: only its presence is checked)
        (dict(seed=-5), r"param seed must be in \[0, \S+\), got -5"),
        (dict(seed=2**32), r"param seed must be in \[0, \S+\), got 4294967296"),
        (dict(ema=1.0), r"param ema must be in \[0, 1\), 0: no averaging, got 1.0"),
        (dict(ema=-0.5), r"param ema must be in \[0, 1\), 0: no averaging, got -0.5"),
    ],
)
def test_training_settings_reject_bad_values(tiny_params, bad, message) -> None:
    with pytest.raises(UserError, match=f"^{message}$"):
        resolve(bad)
    with pytest.raises(UserError, match=f"^{message}$"):
        tiny_params.replace(**bad)


def test_the_edges_of_the_valid_ranges_are_fine(tiny_params) -> None:
    # no clipping, the smallest seed, no averaging: each the low end of its range
    settings = tiny_params.replace(grad_clip=0.0, seed=0, ema=0.0)
    assert (settings.grad_clip, settings.seed, settings.ema) == (0.0, 0, 0.0)
    assert resolve({"seed": 2**32 - 1}).seed == 2**32 - 1


def test_whole_number_params_reject_fractions() -> None:
    for key in ("epochs", "batch_size", "seed", "steps_per_epoch"):
        with pytest.raises(UserError, match=f"param {key} must be a whole number, got 1.5"):
            resolve({key: 1.5})
    assert resolve({"lr": 1, "dropout": 0})["lr"] == 1  # a whole number where a float goes is fine
