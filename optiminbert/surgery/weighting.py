"""Multitask methods that weigh the task losses: each step's update is Σ_t w_t ∇L_t, taken with
one backward pass of Σ_t w_t L_t per micro-batch, so a method costs what the summed loss costs
(no per-task gradient is ever formed). Each head gets its own task's w_t ∇L_t the same way.

    rlw          RLW (Lin et al. 2022): random weights, T · softmax of a normal draw, every step
    dwa          DWA (Liu, Johns & Davison 2019): more weight to the tasks whose loss fell least
    uncertainty  Uncertainty weighting (Kendall, Gal & Cipolla 2018): learnt log variances
    famo         FAMO (Liu et al. 2023): learnt logits that even out the tasks' loss decrease

A step's weights are fixed before its first micro-batch, from the method's state alone. What a
method learns from it reads the step's *global* losses: each micro-batch's detached losses
(already weighted by their micro-batch's and rank's share) summed, then summed over the ranks,
which is the whole batch's mean loss per task on every rank. Every rank thus keeps the same state
and draws the same weights, and the gradients are summed over ranks as the summed loss's are.
"""

from __future__ import annotations

import torch

from optiminbert import distributed
from optiminbert.schema import at_least, positive
from optiminbert.surgery.base import GradientStrategy, hyperparameter


class LossWeighting(GradientStrategy):
    """A method that weighs the losses: ``step_weights`` gives the step's w (T,), ``observe``
    sees the step's global losses (T,) once its gradient is complete."""

    family = "loss weighting"
    reads_losses = True

    def __init__(self, settings, tasks: int = 0):
        super().__init__(settings, tasks)
        self.weights: torch.Tensor | None = None  # this step's, set at its first micro-batch
        self.last_weights: torch.Tensor | None = None  # the latest step's, to look at
        # (2, T): the step's summed losses so far, and in how many micro-batches each came
        self.totals: torch.Tensor | None = None

    def step_weights(self, tasks: int) -> torch.Tensor:
        """w (T,), float64 on the CPU, from the method's state only."""
        raise NotImplementedError

    def observe(self, losses: torch.Tensor) -> None:
        """The step's global mean loss per task (T,), float64 on the CPU."""

    def accumulate(self, losses, shared, task_params) -> None:
        if self.weights is None:
            self.weights = self.last_weights = self.step_weights(len(losses))
            self.totals = torch.zeros(2, len(losses), device=shared[0].device)
        terms = []
        for i, loss in enumerate(losses.values()):
            if loss is not None:
                self.totals[0, i] += loss.detach().float() / self.loss_scale
                self.totals[1, i] += 1
                terms.append(float(self.weights[i]) * loss)
        if terms:
            torch.stack(terms).sum().backward()

    def apply(self, shared, task_params) -> None:
        super().apply(shared, task_params)
        totals = distributed.all_reduce_(self.totals).double().cpu()
        self.weights = self.totals = None
        if not (totals[1] > 0).all():
            # Every round-robin step has a batch of every task; each method's rule needs them all.
            raise RuntimeError(f"surgery {self.name}: a step without every task's loss ({totals[1].tolist()})")
        self.observe(totals[0])


class RLW(LossWeighting):
    """Random Loss Weighting, "Reasonable Effectiveness of Random Weighting: A Litmus Test for
    Multi-Task Learning" (Lin et al., TMLR 2022). Each step draws new weights:

        w = T · softmax(z),  z ~ N(0, I_T)

    The paper (and LibMTL) use softmax(z), which sums to 1; times T the weights sum to T as the
    summed loss's do, so ``lr`` and ``grad_clip`` keep their meaning across methods. Drawn from a
    generator seeded from the run's ``seed`` that resumes with the run, never the global stream
    (which draws the dropout masks)."""

    name = "rlw"

    def __init__(self, settings, tasks: int = 0):
        super().__init__(settings, tasks)
        self.generator = torch.Generator().manual_seed(self.seed)

    def step_weights(self, tasks: int) -> torch.Tensor:
        return tasks * torch.softmax(torch.randn(tasks, generator=self.generator, dtype=torch.float64), 0)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class DWA(LossWeighting):
    """Dynamic Weight Average, "End-to-End Multi-Task Learning with Attention" (Liu, Johns &
    Davison, CVPR 2019): a task whose loss fell least over the last period gets more weight,

        w_t = T · softmax(r / temperature)_t,  r_t = L̄_t(n − 1) / L̄_t(n − 2)

    with L̄_t(n) the mean global loss of task t over period n, and w = 1 in periods 0 and 1. The
    paper's period is an epoch; our default run trains one, so a period here is ``dwa_window``
    steps, counted over the whole run. The temperature 2 is the paper's."""

    name = "dwa"
    settings = (
        hyperparameter("dwa", "dwa_window", 50, "steps per period (the paper's period is an epoch)",
                       check=at_least(1)),
        hyperparameter("dwa", "dwa_temperature", 2.0, "softmax temperature (larger: more even weights)",
                       check=positive),
    )

    def __init__(self, settings, tasks: int = 0):
        super().__init__(settings, tasks)
        self.window, self.temperature = settings["dwa_window"], settings["dwa_temperature"]
        self.steps, self.sums = 0, None
        self.means: list[torch.Tensor] = []  # the last two periods' mean losses, older first

    def step_weights(self, tasks: int) -> torch.Tensor:
        if len(self.means) < 2:
            return torch.ones(tasks, dtype=torch.float64)
        return tasks * torch.softmax(self.means[1] / self.means[0] / self.temperature, 0)

    def observe(self, losses: torch.Tensor) -> None:
        self.sums = losses if self.sums is None else self.sums + losses
        self.steps += 1
        if self.steps % self.window == 0:
            self.means, self.sums = [*self.means[-1:], self.sums / self.window], None

    def state_dict(self) -> dict:
        return {"steps": self.steps, "sums": self.sums, "means": self.means}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.sums, self.means = state["steps"], state["sums"], list(state["means"])


class _Learnt(LossWeighting):
    """A method with T numbers of its own, trained by its own Adam in ``apply`` (so on every rank
    alike). They are made at the first step, when the number of tasks (an auxiliary contrastive
    task included) is known, or from a saved state."""

    lr_setting: str

    def __init__(self, settings, tasks: int = 0):
        super().__init__(settings, tasks)
        self.lr = settings[self.lr_setting]
        self.values: torch.nn.Parameter | None = None
        self.optimizer: torch.optim.Adam | None = None

    def optimizer_options(self) -> dict:
        return {}

    def learnt(self, tasks: int) -> torch.Tensor:
        if self.values is None:
            self.values = torch.nn.Parameter(torch.zeros(tasks, dtype=torch.float64))
            self.optimizer = torch.optim.Adam([self.values], lr=self.lr, **self.optimizer_options())
        return self.values

    def descend(self, gradient: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        self.values.grad = gradient
        self.optimizer.step()

    def state_dict(self) -> dict:
        if self.values is None:
            return {}
        return {"values": self.values.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state:
            with torch.no_grad():
                self.learnt(len(state["values"])).copy_(state["values"])
            self.optimizer.load_state_dict(state["optimizer"])


class Uncertainty(_Learnt):
    """Uncertainty weighting, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
    Geometry and Semantics" (Kendall, Gal & Cipolla, CVPR 2018). Each task learns s_t = log σ_t²
    by minimising, with the network,

        Σ_t exp(−s_t) · L_t + s_t,   so  w_t = exp(−s_t),  ∂/∂s_t = 1 − exp(−s_t) · L_t

    the form most implementations use for every task; the paper's regression loss halves both
    terms, and LibMTL's (which halves them for every task) has the same minimiser s_t = log L_t
    with weights half ours. s starts at 0 (w = 1: the summed loss) and is stepped once per step
    by its own Adam at ``uncertainty_lr``, from the step's global losses: its +s_t term counts
    once per step, not once per rank or micro-batch. The default 1e-2: Adam moves s by about its
    lr per step, so at the network's lr (1e-4) s would move 0.1 in 1000 steps, while log L is −3
    for a loss of 0.05; at 1e-2 it gets there in a few hundred steps, a small part of one epoch,
    and no step changes a weight by more than about 1%."""

    name = "uncertainty"
    lr_setting = "uncertainty_lr"
    settings = (hyperparameter("uncertainty", "uncertainty_lr", 1e-2, "Adam's lr for the log variances s",
                               check=positive),)

    def step_weights(self, tasks: int) -> torch.Tensor:
        return torch.exp(-self.learnt(tasks).detach())

    def observe(self, losses: torch.Tensor) -> None:
        s = self.values
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad((torch.exp(-s) * losses + s).sum(), s)
        self.descend(gradient)


FLOOR = 1e-8  # keeps the logarithm of a loss that reaches its minimum finite, as FAMO's code does


class FAMO(_Learnt):
    """FAMO, "FAMO: Fast Adaptive Multitask Optimization" (Liu et al., NeurIPS 2023). Logits ξ
    (z = softmax(ξ)) weigh the tasks' log-losses: the update is the normalised Σ_t z_t ∇log L_t,

        w_t = T · (z_t / L_t) / Σ_j (z_j / L_j)

    (T times the paper's weights, which sum to 1: as the summed loss's, see RLW), and after a step
    ξ learns from each task's log-loss decrease δ_t = log L_t(before) − log L_t(after):

        ξ ← Adam step on ∇_ξ(zᵀδ) + γ ξ   (lr ``famo_lr``, coupled weight decay γ = ``famo_gamma``)

    so the tasks whose loss fell most lose weight. The minimum losses L_t* are taken as 0, as in
    the official code (no loss of ours is negative), so L_t − L_t* = L_t, floored at 1e-8. The
    defaults are the official code's (lr 0.025, γ 0.01).

    Deviation: the official code evaluates the same batch again after the update to get δ, and
    weighs the step by its own losses. Here a step's weights must be known before its first
    micro-batch and no forward pass is added, so both read the previous step: the weights use the
    previous step's global losses L_t(n − 1) (on the first step, w = 1), and δ is
    log L_t(n − 1) − log L_t(n), the previous update's outcome measured on this step's batches,
    applied to the current ξ (one step late). The two batches differ, so δ is noisier; its noise
    is a difference of consecutive batches' losses, which telescopes over steps instead of
    accumulating in ξ, and its expectation is the decrease of the expected loss."""

    name = "famo"
    lr_setting = "famo_lr"
    settings = (
        hyperparameter("famo", "famo_lr", 0.025, "Adam's lr for the task logits", check=positive),
        hyperparameter("famo", "famo_gamma", 0.01, "weight decay of the task logits (towards equal weights)",
                       check=at_least(0)),
    )

    def __init__(self, settings, tasks: int = 0):
        super().__init__(settings, tasks)
        self.gamma = settings["famo_gamma"]
        self.previous: torch.Tensor | None = None  # the previous step's global losses

    def optimizer_options(self) -> dict:
        return {"weight_decay": self.gamma}

    def step_weights(self, tasks: int) -> torch.Tensor:
        z = torch.softmax(self.learnt(tasks).detach(), 0)
        if self.previous is None:
            return torch.ones(tasks, dtype=torch.float64)
        inverse = z / self.previous.clamp(min=FLOOR)
        return tasks * inverse / inverse.sum()

    def observe(self, losses: torch.Tensor) -> None:
        if self.previous is not None:
            delta = self.previous.clamp(min=FLOOR).log() - losses.clamp(min=FLOOR).log()
            with torch.enable_grad():
                (gradient,) = torch.autograd.grad(torch.softmax(self.values, 0), self.values, grad_outputs=delta)
            self.descend(gradient)
        self.previous = losses

    def state_dict(self) -> dict:
        return {**super().state_dict(), "previous": self.previous}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict({k: v for k, v in state.items() if k != "previous"})
        self.previous = state["previous"]


METHODS = (RLW, DWA, Uncertainty, FAMO)
