"""SMART's smoothness-inducing adversarial regulariser (Jiang et al. 2020, "SMART: Robust and
Efficient Fine-Tuning for Pre-trained Natural Language Models through Principled Regularized
Optimization"), without the paper's Bregman proximal point step (its momentum copy of the model).

With f the model's raw output for a task and x the encoder's embedding-layer output, a task's
batch trains on its loss plus ``smart_weight`` (the paper's λ_s) times

    R(θ) = mean_i ℓ_s(f(x_i; θ), f(x_i + δ_i; θ)),   δ_i ≈ argmax_{‖δ_i‖∞ ≤ ε} ℓ_s(f(x_i), f(x_i + δ_i))

where ℓ_s is the task kind's ``divergence`` (symmetric KL between class or Bernoulli
distributions; squared difference between scores, on the 0..1 scale the STS loss uses). The
inner maximum is the paper's one step of projected, normalised gradient ascent: δ starts as
N(0, σ²) noise, moves by η · g / ‖g‖∞ with g = ∇_δ ℓ_s(f(x) held fixed, f(x + δ)), and is
clipped to [−ε, ε]. R's gradient then reaches θ through both the clean and the perturbed outputs.

The forward passes run in training mode, so the perturbed one draws its own dropout masks: R
also penalises how much two masks disagree (what R-Drop, Liang et al. 2021, trains on alone).
Data-parallel, each rank perturbs its own examples; a loss weighting (``surgery/weighting.py``)
sees each task's loss with R added.

The paper's values are σ = ε = 1e-5 and η = 1e-3, in fp32. Under bf16 autocast (the default
where a CPU or GPU has it) x reaches the first layer rounded to 8 bits of mantissa, and a shift of
1e-5 changes about 2.5% of its entries (their mean size is about 0.36); 1e-3 changes two thirds
(``benchmarks/smart_bf16.py``). The defaults here are the paper's values times 100.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from optiminbert.data import TASKS
from optiminbert.multitask import MultitaskBert, PairLogit
from optiminbert.schema import Setting, at_least, fine_tuning, positive


def _on(values: dict) -> bool:
    return values["smart_weight"] > 0


SETTINGS: tuple[Setting, ...] = (
    Setting("smart_weight", 0.0, "SMART's adversarial smoothness regulariser, added to each task's loss with this weight "
            "(the paper's lambda_s, 1 to 5 there; 0: off)", check=at_least(0), applies=fine_tuning),
    Setting("smart_epsilon", 1.0e-3, "SMART: the perturbation's largest entry (the paper's 1e-5 is below bf16's resolution)",
            check=positive, applies=fine_tuning, when=_on),
    Setting("smart_step", 0.1, "SMART: the ascent step's largest entry, before clipping to smart_epsilon",
            check=positive, applies=fine_tuning, when=_on),
    Setting("smart_noise", 1.0e-3, "SMART: the standard deviation of the perturbation's random start",
            check=positive, applies=fine_tuning, when=_on),
)


def raw(prediction: torch.Tensor | PairLogit) -> torch.Tensor:
    return prediction.logit if isinstance(prediction, PairLogit) else prediction


class Smart:
    def __init__(self, weight: float, epsilon: float, step: float, noise: float):
        self.weight, self.epsilon, self.step, self.noise = weight, epsilon, step, noise

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "Smart | None":
        """The run's regulariser; None where it is off."""
        if not settings["smart_weight"]:
            return None
        return cls(settings["smart_weight"], settings["smart_epsilon"], settings["smart_step"], settings["smart_noise"])

    @contextmanager
    def perturbed(self, embeddings: nn.Module, delta: dict[str, torch.Tensor]) -> Iterator[None]:
        """Within it, ``delta["x"]`` is added to the embedding layer's output; the first forward
        draws it (the random start) once the output's shape is known."""

        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            if "x" not in delta:
                delta["x"] = (self.noise * torch.randn_like(output, dtype=torch.float32)).requires_grad_()
            return output + delta["x"].to(output.dtype)

        handle = embeddings.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def __call__(self, model: MultitaskBert, task: str, batch: dict[str, torch.Tensor],
                 clean: torch.Tensor | PairLogit) -> torch.Tensor:
        """``smart_weight`` · R for a batch whose output ``clean`` the model has just computed."""
        divergence, clean = TASKS[task].kind.divergence, raw(clean)
        delta: dict[str, torch.Tensor] = {}
        with self.perturbed(model.encoder.embeddings, delta):
            ascent = divergence(clean.detach(), raw(model(task, batch)))
            (grad,) = torch.autograd.grad(ascent, delta["x"])
            largest = grad.flatten(1).abs().amax(1).clamp(min=torch.finfo(grad.dtype).tiny)
            step = self.step * grad / largest.view(-1, *(1,) * (grad.dim() - 1))  # each example's own ∞-norm
            delta["x"] = (delta["x"].detach() + step).clamp(-self.epsilon, self.epsilon)
            adversarial = raw(model(task, batch))
        return self.weight * divergence(clean, adversarial)
