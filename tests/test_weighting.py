"""The loss-weighting strategies (surgery/weighting.py): each fills the gradient of Σ_t w_t L_t with
the weights it reports, by its rule worked out by hand; a step cut into micro-batches gives the
same gradients and state; a restored strategy goes on with the same weights; each is selectable,
its hyperparameters checked, and trains a tiny joint run."""

from __future__ import annotations

import io
import math

import pytest
import torch
from conftest import train_tiny
from test_surgery import TwoHeads

from optiminbert import distributed
from optiminbert.errors import UserError
from optiminbert.phases import STUDY_TASKS
from optiminbert.settings import resolve
from optiminbert.surgery import STRATEGIES, make_strategy
from optiminbert.surgery.weighting import DWA, FAMO, METHODS, RLW, Uncertainty

SETTINGS = resolve({"seed": 5, "dwa_window": 2})
NAMES = [method.name for method in METHODS]


def strategy(name: str, **changes):
    return make_strategy(SETTINGS.replace(surgery=name, **changes), 2)


def losses(model: TwoHeads, step: int, share: float = 1.0) -> dict[str, torch.Tensor]:
    """TwoHeads' losses made positive (log-losses need it) and different at every step, times a
    micro-batch's share: a = (h_a·z)² / 100 · (1 + step) = 0.1225 (1 + step) and
    b = (h_b·z)² / 5 / (1 + step) = 1.8 / (1 + step): a rises, b falls."""
    raw = model.losses()
    return {"a": raw["a"] ** 2 / 100 * (1 + step) * share, "b": raw["b"] ** 2 / 5 / (1 + step) * share}


def values(model: TwoHeads, step: int) -> torch.Tensor:
    return torch.tensor([loss.item() for loss in losses(model, step).values()], dtype=torch.float64)


def run(method, steps: int, micro: int = 1, model: TwoHeads | None = None, ranks: int = 1
        ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """``steps`` steps of ``method`` on a TwoHeads (parameters unchanged: the losses change by
    step), each in ``micro`` equal micro-batches of a rank's 1/``ranks`` of the batch; the
    weights and gradients of every step."""
    model = model or TwoHeads()
    shared, task_params = model.groups()
    weights, grads = [], []
    for step in range(steps):
        model.zero_grad(set_to_none=True)
        for _ in range(micro):
            method.accumulate(losses(model, step, 1 / (micro * ranks)), shared, task_params)
        method.apply(shared, task_params)
        weights.append(method.last_weights.clone())
        grads.append([p.grad.clone() for p in model.parameters()])
    return weights, grads


def saved(method) -> dict:
    """Its state as a resume file holds it: through torch.save, loaded with weights_only."""
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)


def assert_same(a, b) -> None:
    """Two states alike: the same structure, equal values (floats up to rounding)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, torch.Tensor) and a.is_floating_point():
        torch.testing.assert_close(a, b)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("name", NAMES)
def test_the_gradient_is_the_weighted_sum_of_the_task_gradients(name):
    method, model = strategy(name), TwoHeads()
    for step in range(5):
        model.zero_grad(set_to_none=True)
        method.backward(losses(model, step), *model.groups())
        w = method.last_weights
        assert w.shape == (2,) and torch.isfinite(w).all() and (w > 0).all()
        task = losses(model, step)
        expected = torch.autograd.grad(float(w[0]) * task["a"] + float(w[1]) * task["b"], list(model.parameters()))
        for p, g in zip(model.parameters(), expected):
            torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-12)
        # Each head: its own task's w_t ∇L_t (the other task's loss does not reach it).
        (own,) = torch.autograd.grad(float(w[0]) * losses(model, step)["a"], [model.heads["a"].weight])
        torch.testing.assert_close(model.heads["a"].weight.grad, own, rtol=1e-12, atol=1e-12)


def test_rlw_draws_t_times_the_softmax_of_a_normal_draw_from_its_own_generator():
    method, model = strategy("rlw"), TwoHeads()
    peek = torch.Generator().manual_seed(SETTINGS.seed)
    before = torch.get_rng_state()
    for w in run(method, 3, model=model)[0]:
        assert math.isclose(w.sum().item(), 2.0, rel_tol=1e-12)
        draw = torch.randn(2, generator=peek, dtype=torch.float64)
        torch.testing.assert_close(w, 2 * torch.exp(draw) / torch.exp(draw).sum(), rtol=1e-12, atol=0)
    assert torch.equal(torch.get_rng_state(), before)  # the dropout masks' stream is untouched


def test_dwa_weighs_one_for_two_windows_then_by_the_last_two_windows_loss_ratio():
    model, window = TwoHeads(), 2
    weights, _ = run(strategy("dwa", dwa_window=window), 6)
    assert all(w.tolist() == [1.0, 1.0] for w in weights[: 2 * window])
    means = [(values(model, 0) + values(model, 1)) / 2, (values(model, 2) + values(model, 3)) / 2]
    # By hand: a's loss grows by step, b's falls, so a's ratio is larger and a gets more weight.
    ratio = means[1] / means[0]
    assert ratio[0] > 1 > ratio[1]
    expected = 2 * torch.exp(ratio / 2.0) / torch.exp(ratio / 2.0).sum()
    for w in weights[2 * window :]:
        torch.testing.assert_close(w, expected, rtol=1e-12, atol=0)
    assert weights[4][0] > 1 > weights[4][1]


def test_uncertainty_weighs_exp_minus_s_and_s_moves_against_its_gradient():
    method, model = strategy("uncertainty"), TwoHeads()
    weights, _ = run(method, 2)
    assert weights[0].tolist() == [1.0, 1.0]  # s = 0: the summed loss
    # ∂/∂s_t (exp(−s_t) L_t + s_t) at s = 0 is 1 − L_t: a loss above 1 raises s (less weight), one
    # below lowers it; Adam's first step moves each by its lr, against the gradient's sign.
    first = values(model, 0)
    assert first[0] < 1 < first[1]
    torch.testing.assert_close(weights[1], torch.exp(-0.01 * torch.sign(first - 1)), rtol=1e-6, atol=0)
    torch.testing.assert_close(method.step_weights(2), torch.exp(-method.values.detach()), rtol=0, atol=0)


def test_famo_weighs_the_normalised_log_loss_gradient_and_learns_from_the_loss_decrease():
    method, model = strategy("famo"), TwoHeads()
    weights, _ = run(method, 2)
    assert weights[0].tolist() == [1.0, 1.0]  # no previous losses yet
    # Step 1: ξ = 0 (z = ½, ½) and the weights are 2 · (z / L(0)) / Σ (z / L(0)).
    inverse = 1 / values(model, 0)
    torch.testing.assert_close(weights[1], 2 * inverse / inverse.sum(), rtol=1e-12, atol=0)
    # Then δ = log L(0) − log L(1): b's loss fell, a's rose, so b loses weight: ξ_b < ξ_a; the next
    # step's weights read the new ξ and L(1).
    delta = values(model, 0).log() - values(model, 1).log()
    assert delta[1] > 0 > delta[0]
    xi = method.values.detach()
    assert xi[1] < 0 < xi[0]
    # Adam's first step is its lr against each gradient's sign (γ ξ is 0 at ξ = 0).
    torch.testing.assert_close(xi, torch.tensor([0.025, -0.025], dtype=torch.float64), rtol=1e-6, atol=0)
    z = torch.softmax(xi, 0)
    inverse = z / values(model, 1)
    torch.testing.assert_close(method.step_weights(2), 2 * inverse / inverse.sum(), rtol=1e-12, atol=0)


def assert_same_steps(one: tuple, other: tuple) -> None:
    """Two ``run`` results: the same weights and gradients at every step."""
    for a, b in zip(one[0], other[0]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    for step_a, step_b in zip(one[1], other[1]):
        for a, b in zip(step_a, step_b):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_micro_batches_give_the_gradients_and_state_of_one_batch(name):
    whole, halves = strategy(name), strategy(name)
    assert_same_steps(run(whole, 6), run(halves, 6, micro=2))
    assert_same(whole.state_dict(), halves.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_ranks_with_a_share_of_the_batch_each_take_the_step_of_one_process(name, monkeypatch):
    # Two ranks whose halves of the batch are alike: every sum over the ranks is twice this
    # rank's. Learnt terms (uncertainty's +s) must count once per step, not once per rank.
    alone = run(one := strategy(name), 6)
    monkeypatch.setattr(distributed, "all_reduce_", lambda tensor: tensor.mul_(2))
    monkeypatch.setattr(distributed, "all_reduce_gradients", lambda params: [p.grad.mul_(2) for p in params])
    assert_same_steps(alone, run(two := strategy(name), 6, micro=2, ranks=2))
    assert_same(one.state_dict(), two.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_a_restored_strategy_continues_with_the_same_weights(name):
    first = strategy(name)
    run(first, 3)  # mid-window for DWA (window 2): its partial sums must travel too
    resumed = strategy(name)
    resumed.load_state_dict(saved(first))
    # Both go on from step 3 of the same sequence of losses.
    model = TwoHeads()
    for step in range(3, 7):
        for method in (first, resumed):
            model.zero_grad(set_to_none=True)
            method.backward(losses(model, step), *model.groups())
        torch.testing.assert_close(resumed.last_weights, first.last_weights, rtol=0, atol=0)


def test_a_fresh_state_restores_as_fresh():
    for name in NAMES:
        fresh = strategy(name)
        restored = strategy(name)
        restored.load_state_dict(saved(fresh))
        assert run(restored, 3)[0][2].tolist() == run(strategy(name), 3)[0][2].tolist()


def test_each_is_registered_and_its_hyperparameters_are_checked():
    for method in METHODS:
        assert STRATEGIES[method.name] is method
        assert type(make_strategy(SETTINGS.replace(surgery=method.name), 3)) is method
    dwa = strategy("dwa", dwa_window=7, dwa_temperature=3.0)
    assert (dwa.window, dwa.temperature) == (7, 3.0)
    assert strategy("uncertainty", uncertainty_lr=0.5).lr == 0.5
    famo = strategy("famo", famo_lr=0.1, famo_gamma=0.0)
    assert (famo.lr, famo.gamma) == (0.1, 0.0)
    refused = {
        "dwa_window": (0, "^param dwa_window must be >= 1, got 0$"),
        "dwa_temperature": (0.0, "^param dwa_temperature must be positive, got 0.0$"),
        "uncertainty_lr": (-1.0, "^param uncertainty_lr must be positive, got -1.0$"),
        "famo_lr": (0.0, "^param famo_lr must be positive, got 0.0$"),
        "famo_gamma": (-0.1, "^param famo_gamma must be >= 0, got -0.1$"),
    }
    for setting, (value, message) in refused.items():
        with pytest.raises(UserError, match=message):
            resolve({setting: value})
    with pytest.raises(UserError, match="^param dwa_window must be a whole number, got 2.5$"):
        resolve({"dwa_window": 2.5})


@pytest.mark.parametrize("name", NAMES)
def test_losses_scaled_for_fp16_weigh_as_the_unscaled_do(name):
    """fp16 training hands the strategy every loss times the gradient scaler's factor, and says
    which (``loss_scale``): the weights and what the method learns are the unscaled losses', the
    gradients the scaled ones' (the scaler divides them back)."""
    plain, scaled = strategy(name), strategy(name)
    scaled.loss_scale = 1024.0
    model = TwoHeads()
    shared, task_params = model.groups()
    for step in range(5):
        grads = []
        for method, factor in ((plain, 1.0), (scaled, 1024.0)):
            model.zero_grad(set_to_none=True)
            method.accumulate({t: loss * factor for t, loss in losses(model, step).items()}, shared, task_params)
            method.apply(shared, task_params)
            grads.append([p.grad.clone() for p in model.parameters()])
        torch.testing.assert_close(scaled.last_weights, plain.last_weights, rtol=1e-6, atol=0)
        for mine, theirs in zip(*grads):
            torch.testing.assert_close(theirs, mine * 1024, rtol=1e-5, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_a_joint_run_trains_with_each_method(name, tmp_path, tiny_prepared, tiny_params, one_thread):
    settings = tiny_params.replace(surgery=name, epochs=1, steps_per_epoch=3, dwa_window=1)
    history = train_tiny(settings, STUDY_TASKS, "siamese", tiny_prepared, tmp_path / "run")
    assert all(math.isfinite(v) for v in history[0]["train_loss"].values())
    assert all(math.isfinite(v) for v in history[0]["dev"].values())
