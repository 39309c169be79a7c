"""TorchJD's multitask methods as gradient strategies (surgery/torchjd.py): TorchJD's PCGrad and
ours give the same update on the same per-task gradients; every method fills the gradients from
the global Jacobian, resumes exactly, leaves the global random stream alone, and names a missing
optional solver in one line."""

from __future__ import annotations

import io

import pytest
import torch
from conftest import train_tiny
from test_surgery import TwoHeads

from optiminbert.errors import UserError
from optiminbert.phases import STUDY_TASKS
from optiminbert.settings import resolve
from optiminbert.surgery import STRATEGIES, PCGrad, make_strategy
from optiminbert.surgery.torchjd import METHODS

aggregation = pytest.importorskip("torchjd.aggregation")
SETTINGS = resolve({"seed": 5})


def jacobian(seed: int, tasks: int = 3, width: int = 40) -> torch.Tensor:
    """Per-task gradients that conflict: a shared direction pulled apart per task."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(width, generator=g) * 0.2 + torch.randn(tasks, width, generator=g)


@pytest.mark.parametrize("tasks, seed", [(2, 0), (3, 1), (4, 2)])
def test_torchjds_pcgrad_and_ours_give_the_same_update(tasks, seed):
    matrix = jacobian(seed, tasks)
    gram = matrix @ matrix.T
    assert (gram < 0).any()  # conflicts: the projections matter
    ours = PCGrad(resolve({"seed": seed})).combine(matrix)
    torch.manual_seed(seed)  # TorchJD draws its task orders from the global generator, we from our own
    theirs = aggregation.PCGrad()(matrix)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", METHODS, ids=lambda cls: cls.name)
def test_each_method_is_registered_and_fills_every_gradient(method):
    assert STRATEGIES[method.name] is method
    model = TwoHeads()
    shared, task_params = model.groups()
    make_strategy(SETTINGS.replace(surgery=method.name), 2).backward(model.losses(), shared, task_params)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    for task, params in task_params.items():  # each head: its own gradient, untouched
        for p, own in zip(params, torch.autograd.grad(model.losses()[task], params)):
            assert torch.equal(p.grad, own)


@pytest.mark.parametrize("method", METHODS, ids=lambda cls: cls.name)
def test_each_method_resumes_exactly_and_leaves_the_global_random_stream_alone(method):
    first = method(SETTINGS, 3)
    for seed in (10, 11):
        first.combine(jacobian(seed))
    saved = io.BytesIO()
    torch.save(first.state_dict(), saved)  # as a resume file holds it: tensors only
    state = torch.load(io.BytesIO(saved.getvalue()), weights_only=True)
    resumed = method(SETTINGS, 3)
    resumed.load_state_dict(state)
    before = torch.get_rng_state()
    expected = first.combine(jacobian(12))
    assert torch.equal(torch.get_rng_state(), before)
    torch.testing.assert_close(resumed.combine(jacobian(12)), expected, rtol=0, atol=0)


def test_a_missing_optional_solver_is_one_line(monkeypatch):
    def needs_cvxpy(**kwargs):
        raise ImportError("CAGradWeighting requires ['cvxpy', 'clarabel'] to be installed. Install them with: pip install x")

    monkeypatch.setattr(aggregation, "CAGradWeighting", needs_cvxpy)
    with pytest.raises(UserError) as refused:
        make_strategy(SETTINGS.replace(surgery="cagrad"), 3)
    assert str(refused.value) == (
        "surgery cagrad needs an optional solver (CAGradWeighting requires ['cvxpy', 'clarabel'] to be installed): "
        "pip install 'optiminbert[solvers]'"
    )


def test_a_joint_run_trains_with_a_torchjd_method(tmp_path, tiny_prepared, tiny_params, one_thread):
    settings = tiny_params.replace(surgery="upgrad", epochs=1, steps_per_epoch=3)
    history = train_tiny(settings, STUDY_TASKS, "siamese", tiny_prepared, tmp_path / "run")
    assert all(torch.isfinite(torch.tensor(v)) for v in history[0]["train_loss"].values())
