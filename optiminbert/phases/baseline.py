"""The baseline (the report's Table 1): pooled [CLS] → dropout → linear on SST and CFIMDB, with
the encoder frozen (*pretrain*: its features computed once, only the head trains) or fine-tuned."""

from __future__ import annotations

from optiminbert.phases.base import Phase, Run, check_choice

TASKS = ("sst", "cfimdb")
MODES = ("pretrain", "finetune")
# The CS224N handout's reference dev accuracies with bert-base-uncased.
HANDOUT = {"sst": {"pretrain": 0.390, "finetune": 0.515}, "cfimdb": {"pretrain": 0.780, "finetune": 0.966}}


class BaselinePhase(Phase):
    def runs(self) -> list[Run]:
        return [
            Run(self.name, f"{self.name}-{task}-{mode}", (task,), "cross",
                (self.name, f"{self.name}.{mode}", f"{self.name}.{task}"), f"{self.name}/{task}-{mode}",
                frozen=mode == "pretrain", label=f"{task}-{mode}")
            for task in TASKS
            for mode in MODES
        ]

    def select(self, task: str | None = None, mode: str | None = None) -> list[Run]:
        task, mode = task or "sst", mode or "finetune"
        check_choice("task", task, TASKS)
        check_choice("mode", mode, MODES)
        return [run for run in self.runs() if run.label == f"{task}-{mode}"]

    def metrics(self, scores: dict[str, float]) -> dict:
        """Dev accuracy per task and mode, from scores by run label."""
        return {task: {mode: {"dev_acc": round(scores[f"{task}-{mode}"], 4)} for mode in MODES} for task in TASKS}


BASELINE = BaselinePhase(
    name="baseline",
    title="Baseline",
    description="pooled [CLS] -> linear on SST and CFIMDB, encoder frozen (pretrain) or fine-tuned",
    pairs="cross",
    section={"pretrain": {"lr": 1.0e-3, "epochs": 10}, "finetune": {}, "sst": {}, "cfimdb": {"batch_size": 8}},
    study=False,
)
