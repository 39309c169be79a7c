"""The study's steps with their paths and params, shared by the DVC stages and the CLI.

Each step takes the loaded params.yaml and a dict of overrides (the CLI's options), resolves
its section(s) and calls into the core modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from optiminbert import ablation, distributed, evaluation, phases, prepared, report
from optiminbert.checkpoints import resolve_checkpoint
from optiminbert.data import TASKS
from optiminbert.errors import UserError
from optiminbert.model import BertConfig
from optiminbert.params import resolve

PREPARED = Path("data/prepared")
MODELS = Path("models")
METRICS = Path("metrics")
PLOTS = Path("plots")
ABLATION = Path("ablation")
RESUME = Path(".resume")  # interrupted runs' states; outside models/, which DVC clears before a stage runs

console = Console(stderr=True)


def _with(p: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    return {**p, **{k: v for k, v in overrides.items() if v is not None}}


def prepare(params: dict, overrides: dict | None = None) -> None:
    p = _with(resolve(params, "prepare"), overrides or {})
    # A wrong checkpoint or length fails before any data is read or written.
    config = BertConfig.from_json(resolve_checkpoint(p["checkpoint"]) / "config.json")
    lengths = {task: p["max_length"] for task in TASKS}
    lengths["cfimdb"] = p.get("cfimdb_max_length", p["max_length"])
    config.check_length("max_length", p["max_length"])
    config.check_length("cfimdb_max_length", lengths["cfimdb"])
    skipped = prepared.prepare(p["data"], PREPARED, p["checkpoint"], lengths)
    console.print(skipped or "no rows skipped")


def _resume_path(name: str, root: Path = Path(".")) -> Path:
    return root / RESUME / f"{name}.pt"


def run_params(params: dict, phase: str, task: str | None = None, mode: str = "finetune") -> dict[str, Any]:
    """One training run's settings: the shared values, then its phase's sections in order
    (a joint phase has no task; a baseline or specialist run adds its task's section)."""
    if phase == "baseline":
        return resolve(params, "baseline", f"baseline.{mode}", f"baseline.{task}")
    return resolve(params, phase) if task is None else resolve(params, phase, f"{phase}.{task}")


def train_baseline(
    params: dict, task: str, mode: str, overrides: dict | None = None, resume: bool = False
) -> list[dict]:
    _check("task", task, phases.BASELINE_TASKS)
    _check("mode", mode, phases.BASELINE_MODES)
    p = _with(run_params(params, "baseline", task, mode), overrides or {})
    name = f"baseline-{task}-{mode}"
    history = phases.train_run(
        p, [task], "cross", PREPARED, MODELS / "baseline" / f"{task}-{mode}", name,
        frozen=mode == "pretrain", resume_path=_resume_path(name), resume=resume,
    )
    if distributed.is_main():
        phases.write_curves(history, PLOTS, name)
    _resume_path(name).unlink(missing_ok=True)
    return history


def train(
    params: dict, phase: str, task: str | None = None, mode: str | None = None, overrides: dict | None = None,
    resume: bool = False,
) -> None:
    """`optiminbert train`: one baseline run (sst finetune unless told), a joint phase, or its
    specialists (all three unless ``task``)."""
    _check("phase", phase, ("baseline", *phases.PHASES))
    if phase == "baseline":
        train_baseline(params, task or "sst", mode or "finetune", overrides, resume=resume)
        return
    # An option that does not apply would otherwise be ignored, and the run would not be the one asked for.
    if mode not in (None, "finetune"):
        raise UserError(f"--mode {mode} is for baseline runs: {phase} always fine-tunes the encoder")
    train_phase(params, phase, overrides, [task] if task else None, resume=resume)


def train_phase(
    params: dict,
    phase: str,
    overrides: dict | None = None,
    tasks: list[str] | None = None,
    resume: bool = False,
    root: Path = Path("."),
) -> None:
    """One joint model (mtl, mtl_embed), or one specialist per task, into ``root``'s models/
    and plots/ (the loss ablation trains its specialists under ablation/<loss>/)."""
    _check("phase", phase, tuple(phases.PHASES))
    spec = phases.PHASES[phase]
    if spec.joint:
        if tasks is not None:  # ignoring them would train all three tasks, not the run asked for
            raise UserError(f"{phase} trains sst, quora and sts in one model: a task (--task) is for baseline and specialist runs")
        p = _with(run_params(params, phase), overrides or {})
        history = phases.train_run(
            p, list(phases.STUDY_TASKS), spec.pairs, PREPARED, root / MODELS / phase, phase,
            resume_path=_resume_path(phase, root), resume=resume,
        )
        if distributed.is_main():
            phases.write_curves(history, root / PLOTS, phase)
        _resume_path(phase, root).unlink(missing_ok=True)
        return
    train_sizes: dict[str, int] = {}  # loaded once, only if a specialist matches the multitask steps
    tasks = tasks or list(phases.STUDY_TASKS)
    for task in tasks:
        _check("task", task, phases.STUDY_TASKS)
        p = _with(run_params(params, phase, task), overrides or {})
        if p.get("match_multitask_steps") and not p["steps_per_epoch"]:
            train_sizes = train_sizes or {
                t: len(prepared.TaskSplit.load(prepared.split_path(PREPARED, t, "train"))) for t in phases.STUDY_TASKS
            }
            # One round-robin epoch of the joint phases: one pass over the largest task.
            p["steps_per_epoch"] = -(-max(train_sizes.values()) // p["batch_size"])
        name = f"{phase}-{task}"
        history = phases.train_run(
            p, [task], spec.pairs, PREPARED, root / MODELS / phase / task, name,
            resume_path=_resume_path(name, root), resume=resume,
        )
        if distributed.is_main():
            phases.write_curves(history, root / PLOTS, name)
    # Only now: an interrupted stage re-run by DVC (which first clears models/) skips finished specialists.
    for task in tasks:
        _resume_path(f"{phase}-{task}", root).unlink(missing_ok=True)


def train_ablation(params: dict, loss: str, task: str) -> None:
    """One specialist of the contrastive-loss ablation (ablation/dvc.yaml): the defaults plus
    ``loss`` as its extra round-robin task, into ablation/<loss>/."""
    _check("contrastive loss", loss, ablation.LOSSES)
    _check("task", task, ablation.PAIR_TASKS)
    train_phase(params, "specialist", {"contrastive": loss}, [task], resume=True, root=ABLATION / loss)


def ablation_report() -> str:
    return ablation.write_report(ABLATION, MODELS / "specialist")


def evaluate(params: dict, phase: str) -> dict:
    if phase == "ensemble":
        members = (params.get("ensemble") or {}).get("members", list(phases.PHASES))
        return evaluation.evaluate_ensemble(members, PREPARED, Path("."))
    _check("phase", phase, ("baseline", *phases.PHASES, "ensemble"))
    p = resolve(params, "evaluate")
    return evaluation.evaluate_phase(phase, MODELS, PREPARED, Path("."), p)


def make_report(params: dict) -> str:
    report.write_phase_bars(METRICS, PLOTS / "phases.csv")
    return report.render(METRICS, METRICS / "report.md")


def _check(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"unknown {kind} {value!r}: choose one of {', '.join(allowed)}")


def run_dir(phase: str, task: str) -> Path:
    """The trained run that answers ``task`` for ``phase`` (a directory path is taken as is)."""
    if Path(phase).is_dir():
        _check("task", task, tuple(TASKS))  # the run's own tasks are checked once it is loaded
        return Path(phase)
    phase = phase.replace("-", "_")
    if phase == "baseline":
        _check("task", task, phases.BASELINE_TASKS)
        return MODELS / "baseline" / f"{task}-finetune"
    _check("phase", phase, tuple(phases.PHASES))
    _check("task", task, phases.STUDY_TASKS)
    return MODELS / phase if phases.PHASES[phase].joint else MODELS / phase / task
