"""Gradient strategies (surgery/) against gradients worked out by hand: PCGrad's projection and
the summed loss; which strategy a run gets from its settings, and a strategy's own setting."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from optiminbert import settings as settings_module
from optiminbert.errors import UserError
from optiminbert.schema import RunShape, positive
from optiminbert.settings import resolve
from optiminbert.surgery import (
    STRATEGIES,
    GradientStrategy,
    PCGrad,
    SumLosses,
    hyperparameter,
    make_strategy,
)
from optiminbert.surgery.pcgrad import project_conflicting


def grads(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_two_conflicting_gradients_by_hand() -> None:
    # g1·g2 = -1 < 0.  g1 - (-1/2) g2 = (0.5, 0.5);  g2 - (-1/1) g1 = (0, 1).
    projected = project_conflicting(grads((1, 0), (-1, 1)), generator())
    assert projected.tolist() == [[0.5, 0.5], [0.0, 1.0]]
    assert projected.sum(0).tolist() == [0.5, 1.5]


# g1 = (1, 0), g2 = (-1, 1), g3 = (-1, -2): every pair conflicts (dots -1, -1, -1) and
# |g1|² = 1, |g2|² = 2, |g3|² = 5. Each task's result for each order of the other two, by hand:
THREE = grads((1, 0), (-1, 1), (-1, -2))
THREE_BY_HAND = {
    # g1 onto g2's normal plane: (0.5, 0.5); its dot with g3 is -1.5: + 1.5/5 g3 -> (0.2, -0.1)
    (0, (1, 2)): (0.2, -0.1),
    # g1 onto g3's: (0.8, -0.4); its dot with g2 is -1.2: + 1.2/2 g2 -> (0.2, 0.2)
    (0, (2, 1)): (0.2, 0.2),
    # g2 + g1 = (0, 1); dot with g3 -2: + 2/5 g3 -> (-0.4, 0.2)
    (1, (0, 2)): (-0.4, 0.2),
    # g2 + 1/5 g3 = (-1.2, 0.6); dot with g1 -1.2: + 1.2 g1 -> (0, 0.6)
    (1, (2, 0)): (0.0, 0.6),
    # g3 + g1 = (0, -2); dot with g2 -2: + 2/2 g2 -> (-1, -1)
    (2, (0, 1)): (-1.0, -1.0),
    # g3 + 1/2 g2 = (-1.5, -1.5); dot with g1 -1.5: + 1.5 g1 -> (0, -1.5)
    (2, (1, 0)): (0.0, -1.5),
}


def orders_drawn(seed: int, tasks: int) -> list[tuple[int, ...]]:
    """The order over the other tasks that project_conflicting draws for each task, read from
    an identically seeded generator (one randperm per task, in task order)."""
    peek = generator(seed)
    return [tuple(j for j in torch.randperm(tasks, generator=peek).tolist() if j != i) for i in range(tasks)]


def test_three_conflicting_gradients_follow_the_drawn_order() -> None:
    seen = set()
    for seed in range(20):
        projected = project_conflicting(THREE, generator(seed))
        for task, order in enumerate(orders_drawn(seed, 3)):
            expected = torch.tensor(THREE_BY_HAND[task, order], dtype=torch.float64)
            torch.testing.assert_close(projected[task], expected, rtol=0, atol=1e-12)
            seen.add((task, order))
    assert seen == set(THREE_BY_HAND)  # both orders were exercised for every task, and they differ


def test_order_is_reproducible_per_seed_and_differs_across_seeds() -> None:
    first = project_conflicting(THREE, generator(3))
    assert torch.equal(first, project_conflicting(THREE, generator(3)))
    assert any(not torch.equal(first, project_conflicting(THREE, generator(s))) for s in range(20))


@pytest.mark.parametrize(
    "rows",
    [
        ((1, 2), (2, 1), (0.5, 3)),  # all dots positive
        ((1, 0), (1, 1), (0, 1)),  # positive and zero (orthogonal) dots
    ],
)
def test_non_conflicting_gradients_are_unchanged(rows) -> None:
    original = grads(*rows)
    assert torch.equal(project_conflicting(original, generator()), original)


# -- strategies on a tiny two-head model ----------------------------------------------------------


class TwoHeads(nn.Module):
    """shared: z = W x + b; task a: loss h_a·z, task b: loss h_b·z (one input row x = (1, 1)).

    dL/dW = h xᵀ and dL/db = h, so g_a = (1,1,0,0 | 1,0) and g_b = (-1,-1,1,1 | -1,1):
    g_a·g_b = -3 < 0, the gradients conflict by construction.
    """

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(2, 2)
        self.heads = nn.ModuleDict({"a": nn.Linear(2, 1), "b": nn.Linear(2, 1)})
        with torch.no_grad():
            self.shared.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
            self.shared.bias.copy_(torch.tensor([0.5, -0.5]))
            self.heads["a"].weight.copy_(torch.tensor([[1.0, 0.0]]))
            self.heads["b"].weight.copy_(torch.tensor([[-1.0, 1.0]]))
            for head in self.heads.values():
                head.bias.zero_()

    def losses(self) -> dict[str, torch.Tensor]:
        z = self.shared(torch.ones(1, 2))
        return {task: head(z).sum() for task, head in self.heads.items()}

    def groups(self) -> tuple[list[nn.Parameter], dict[str, list[nn.Parameter]]]:
        return list(self.shared.parameters()), {t: list(h.parameters()) for t, h in self.heads.items()}


def per_task_grads(model: TwoHeads, params: list[nn.Parameter]) -> dict[str, list[torch.Tensor]]:
    """Each task's own gradient, from a fresh forward pass per task."""
    return {task: list(torch.autograd.grad(model.losses()[task], params)) for task in model.heads}


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def test_pcgrad_backward_on_a_two_head_model() -> None:
    model = TwoHeads()
    shared, task_params = model.groups()
    g = {task: flat(gs) for task, gs in per_task_grads(model, shared).items()}
    assert g["a"].tolist() == [1, 1, 0, 0, 1, 0] and g["b"].tolist() == [-1, -1, 1, 1, -1, 1]
    dot = g["a"] @ g["b"]
    assert dot < 0
    # By hand: each projected onto the other's normal plane, then summed.
    expected = (g["a"] - dot / g["b"].dot(g["b"]) * g["b"]) + (g["b"] - dot / g["a"].dot(g["a"]) * g["a"])
    assert expected.tolist() == [0.5, 0.5, 1.5, 1.5, 0.5, 1.5]  # (0.5, ...) + (0, 0, 1, 1, 0, 1)

    PCGrad(resolve({"seed": 0})).backward(model.losses(), shared, task_params)

    assert flat([p.grad for p in shared]).tolist() == expected.tolist()
    for task, params in task_params.items():
        own = torch.autograd.grad(model.losses()[task], params)  # its own loss only
        for p, g_own in zip(params, own):
            assert torch.equal(p.grad, g_own)
    # h·z differentiated by the head is z = W x + b = (3.5, 6.5), the same for both heads.
    assert model.heads["a"].weight.grad.tolist() == [[3.5, 6.5]]


def test_sum_losses_backward_is_the_gradient_of_the_summed_loss() -> None:
    model = TwoHeads()
    params = list(model.parameters())
    expected = torch.autograd.grad(sum(model.losses().values()), params)
    SumLosses(resolve({})).backward(model.losses(), *model.groups())
    for p, g in zip(params, expected):
        assert torch.equal(p.grad, g)


def test_make_strategy_sums_one_task_and_names_the_strategy_for_several() -> None:
    pcgrad = resolve({"surgery": "pcgrad", "seed": 3})
    assert type(make_strategy(pcgrad, 3)) is PCGrad
    assert type(make_strategy(pcgrad, 1)) is SumLosses  # no other task to conflict with
    assert type(make_strategy(resolve({"surgery": "none"}), 3)) is SumLosses
    # PCGrad draws its projection orders from the run's seed.
    assert torch.equal(make_strategy(pcgrad, 3).generator.get_state(), generator(3).get_state())
    for tasks in (1, 3):  # a one-task run's name is checked too: the settings refuse it first
        with pytest.raises(UserError, match="^unknown surgery 'nope': choose one of none, pcgrad, upgrad, mgda, cagrad, nash_mtl, aligned_mtl, gradvac, imtl_g, dual_proj, graddrop, rlw, dwa, uncertainty, famo$"):
            make_strategy(resolve({"surgery": "nope"}), tasks)


class Scaled(GradientStrategy):
    """The summed loss times a factor: a strategy with one hyperparameter of its own."""

    name = "scaled"
    settings = (hyperparameter("scaled", "scaled_factor", 1.0, "multiply the summed loss by this", check=positive),)

    def __init__(self, settings, tasks: int = 0):
        super().__init__(settings, tasks)
        self.factor = settings["scaled_factor"]

    def accumulate(self, losses, shared, task_params) -> None:
        (self.factor * sum(loss for loss in losses.values() if loss is not None)).backward()


@pytest.fixture
def scaled_registered(monkeypatch):
    """``Scaled`` registered as the real strategies are at import: in ``STRATEGIES``, as a choice of
    ``surgery``, and its hyperparameter in the settings' schema (all undone after the test)."""
    schema = settings_module.SCHEMA
    monkeypatch.setitem(STRATEGIES, Scaled.name, Scaled)
    monkeypatch.setitem(schema, "surgery", dataclasses.replace(schema["surgery"], choices=(*schema["surgery"].choices, "scaled")))
    for setting in Scaled.settings:
        monkeypatch.setitem(schema, setting.name, setting)


def test_a_strategy_reads_its_hyperparameter_from_the_settings(scaled_registered) -> None:
    joint = RunShape("test", ("sst", "quora"), "cross")
    settings = resolve({"surgery": "scaled", "scaled_factor": 2.5}, shape=joint)
    strategy = make_strategy(settings, 2)
    assert type(strategy) is Scaled and strategy.factor == 2.5 and strategy.seed == settings.seed
    # Declared once: recorded where the run uses it, left out where surgery names another
    # strategy or the run has one task, checked like any setting, described with its strategy.
    assert settings.record()["scaled_factor"] == 2.5
    assert "scaled_factor" not in resolve({"surgery": "pcgrad", "scaled_factor": 2.5}, shape=joint).record()
    assert "scaled_factor" not in resolve({"surgery": "scaled"}, shape=RunShape("test", ("sst",), "cross")).record()
    with pytest.raises(UserError, match="^param scaled_factor must be positive, got -1$"):
        resolve({"surgery": "scaled", "scaled_factor": -1})
    assert Scaled.settings[0].help == "scaled: multiply the summed loss by this"
    # And it trains with that factor: twice the summed loss's gradients.
    model = TwoHeads()
    expected = torch.autograd.grad(2.5 * sum(model.losses().values()), list(model.parameters()))
    strategy.backward(model.losses(), *model.groups())
    for p, g in zip(model.parameters(), expected):
        assert torch.equal(p.grad, g)

