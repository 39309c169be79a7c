"""The round-robin schedule (roundrobin.py): one batch of every task per step, an epoch one pass
of the largest task, the smaller tasks cycling and reshuffled, reproducible per seed."""

from __future__ import annotations

import math
from collections import Counter
from functools import partial

import torch

from optiminbert.roundrobin import RoundRobin

SIZES = {"big": 10, "mid": 4, "small": 3}  # batches per pass


def fake_orders(sizes: dict[str, int]):
    """Orders that hand out each pass as distinct one-element tensors 0..n-1 and log every pass."""
    passes: dict[str, list[list[int]]] = {task: [] for task in sizes}

    def order(task: str, n: int, generator: torch.Generator) -> list[torch.Tensor]:
        permutation = torch.randperm(n, generator=generator).tolist()
        passes[task].append(permutation)
        return [torch.tensor([k]) for k in permutation]

    return {task: partial(order, task, n) for task, n in sizes.items()}, passes


def schedule(seed: int = 0, epochs: int = 3):
    orders, passes = fake_orders(SIZES)
    rr = RoundRobin(orders, SIZES, seed)
    return [[{t: b.item() for t, b in step.items()} for step in rr.epoch()] for _ in range(epochs)], passes, rr


def test_round_robin_epoch_is_one_pass_of_the_largest_task() -> None:
    epochs, passes, rr = schedule()
    assert rr.steps_per_epoch == 10
    for steps in epochs:
        assert len(steps) == 10
        assert all(list(step) == list(SIZES) for step in steps)  # one batch of every task per step
        assert sorted(step["big"] for step in steps) == list(range(10))  # each seen exactly once
    assert len(passes["big"]) == 3  # one fresh pass per epoch, never cut

    # The smaller tasks cycle: 10 steps are 2.5 passes of 4 batches and 3⅓ passes of 3.
    first = epochs[0]
    assert sorted(Counter(s["mid"] for s in first).values()) == [2, 2, 3, 3]
    assert sorted(Counter(s["small"] for s in first).values()) == [3, 3, 4]
    everything = [step for steps in epochs for step in steps]
    assert Counter(s["mid"] for s in everything[:20]) == {k: 5 for k in range(4)}  # 20 steps: 5 passes
    assert set(Counter(s["small"] for s in everything).values()) == {10}  # 30 steps: 10 passes


def test_round_robin_reshuffles_each_pass_and_carries_it_across_epochs() -> None:
    epochs, passes, _ = schedule()
    seen = {task: [step[task] for steps in epochs for step in steps] for task in SIZES}
    for task, n in SIZES.items():
        # A new pass is drawn only when the last one ran out, and each is a full permutation ...
        assert len(passes[task]) == math.ceil(30 / n)
        assert all(sorted(p) == list(range(n)) for p in passes[task])
        # ... and the schedule is exactly those passes back to back, across epoch boundaries.
        assert seen[task] == [k for p in passes[task] for k in p][: len(seen[task])]
        assert len({tuple(p) for p in passes[task]}) > 1  # reshuffled, not one order repeated
    # Epoch 1 stops half-way through mid's third pass; epoch 2 opens with the rest of it.
    assert {s["mid"] for s in epochs[0][8:] + epochs[1][:2]} == set(range(4))
    assert passes["mid"][2][2:] == [s["mid"] for s in epochs[1][:2]]
    assert any(a != b for a, b in zip(passes["mid"], passes["mid"][1:]))


def test_round_robin_is_reproducible_per_seed() -> None:
    assert schedule(seed=5)[0] == schedule(seed=5)[0]
    assert schedule(seed=5)[0] != schedule(seed=6)[0]
