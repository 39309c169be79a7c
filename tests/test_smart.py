"""SMART (smart.py): each kind's divergence, the adversarial perturbation, and training with it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import dropout_free, run_weights, train_tiny

from optiminbert.data import TASKS
from optiminbert.kinds import KINDS
from optiminbert.model import BertModel
from optiminbert.multitask import MultitaskBert
from optiminbert.smart import Smart


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return (p * (p.log() - q.log())).sum(-1)


def test_each_kinds_divergence_is_the_symmetric_kl_or_the_squared_difference() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    p, q = a.softmax(-1), b.softmax(-1)
    assert torch.allclose(KINDS["classification"].divergence(a, b), (kl(p, q) + kl(q, p)).mean(), atol=1e-6)
    a, b = a[:, 0], b[:, 0]
    p, q = (torch.stack([x.sigmoid(), 1 - x.sigmoid()], -1) for x in (a, b))
    assert torch.allclose(KINDS["binary"].divergence(a, b), (kl(p, q) + kl(q, p)).mean(), atol=1e-6)
    assert torch.allclose(KINDS["regression"].divergence(a, b), (((a - b) / 5) ** 2).mean())  # STS's 0..5 on 0..1
    for kind in KINDS.values():
        x, y = (a, b) if kind.name != "classification" else (torch.randn(6, 5), torch.randn(6, 5))
        assert torch.allclose(kind.divergence(x, y), kind.divergence(y, x))
        assert kind.divergence(x, x) == 0


@pytest.fixture
def model(tmp_path, tiny_checkpoint) -> MultitaskBert:
    torch.manual_seed(0)
    encoder = BertModel.from_pretrained(dropout_free(tmp_path / "ckpt", tiny_checkpoint))
    return MultitaskBert(encoder, ["sst", "quora", "sts"], pairs="cross", dropout=0.0).train()


def batch(model: MultitaskBert) -> dict[str, torch.Tensor]:
    # Token ids past the special tokens, within the vocabulary (the fallback's, without the data, is small).
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, min(60, model.encoder.config.vocab_size), (4, 9), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


@pytest.mark.parametrize("task", ["sst", "quora", "sts"])
def test_the_perturbation_stays_within_epsilon_and_moves_the_outputs_more_than_noise(model, task) -> None:
    inputs = batch(model)
    clean = model(task, inputs)
    smart = Smart(weight=2.0, epsilon=1e-2, step=1.0, noise=1e-2)
    seen = {}
    original = smart.perturbed

    def spy(embeddings, delta):  # keep the δ each forward used
        seen.setdefault("deltas", []).append(delta)
        return original(embeddings, delta)

    smart.perturbed = spy
    regulariser = smart(model, task, inputs, clean)
    (delta,) = seen["deltas"]
    assert delta["x"].abs().max() <= 1e-2 + 1e-7
    assert delta["x"].shape == (*inputs["input_ids"].shape, model.encoder.config.hidden_size)
    # the divergence is the weight times ℓ_s at the adversarial δ: more than at a random δ of that size
    divergence = TASKS[task].kind.divergence
    random = Smart(weight=2.0, epsilon=1e-2, step=1.0, noise=1e-2)
    random_delta = {"x": 1e-2 * torch.randn_like(delta["x"]).sign()}
    with random.perturbed(model.encoder.embeddings, random_delta), torch.no_grad():
        at_random = divergence(clean, model(task, inputs))
    assert regulariser > 2.0 * at_random > 0
    # and its gradient reaches the weights through both passes
    regulariser.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.layers[0].parameters())


@pytest.mark.parametrize("task", ["sst", "quora", "sts"])
def test_the_step_climbs_from_the_random_start(model, task) -> None:
    # Unclipped (a large epsilon) and short, the step moves δ from its random start to where the
    # outputs differ more: a step downhill, or none, fails this.
    inputs = batch(model)
    clean = model(task, inputs)
    smart, holders = Smart(weight=1.0, epsilon=10.0, step=3e-2, noise=3e-2), []
    smart.perturbed = lambda embeddings, delta, original=smart.perturbed: holders.append(delta) or original(embeddings, delta)
    torch.manual_seed(5)
    regulariser = smart(model, task, inputs, clean)
    torch.manual_seed(5)  # the start is the first draw (no dropout here): drawn again
    start = 3e-2 * torch.randn_like(holders[0]["x"])
    assert not torch.equal(holders[0]["x"], start)
    divergence = TASKS[task].kind.divergence
    with smart.perturbed(model.encoder.embeddings, {"x": start}), torch.no_grad():
        at_start = divergence(clean, model(task, inputs))
    assert regulariser > 1.5 * at_start > 0


def test_no_perturbation_is_left_behind(model) -> None:
    inputs = batch(model)
    before = model("sst", inputs)
    Smart(1.0, 1e-2, 1.0, 1e-2)(model, "sst", inputs, before)
    assert torch.equal(model("sst", inputs), before)


def test_a_run_with_smart_trains_differently_and_one_at_weight_0_identically(tiny_params, tiny_prepared, tmp_path,
                                                                             one_thread) -> None:
    settings = tiny_params.replace(steps_per_epoch=3, batch_size=4)
    tasks = ["sst", "quora", "sts"]
    plain = train_tiny(settings, tasks, "siamese", tiny_prepared, tmp_path / "plain")
    off = train_tiny(settings.replace(smart_weight=0.0, smart_epsilon=0.5), tasks, "siamese", tiny_prepared, tmp_path / "off")
    on = train_tiny(settings.replace(smart_weight=1.0), tasks, "siamese", tiny_prepared, tmp_path / "on")
    weights = {name: run_weights(tmp_path / name) for name in ("plain", "off", "on")}
    assert all(torch.equal(weights["plain"][k], weights["off"][k]) for k in weights["plain"])
    assert any(not torch.equal(weights["plain"][k], weights["on"][k]) for k in weights["plain"])
