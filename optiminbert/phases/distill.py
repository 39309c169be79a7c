"""A distilled multitask student (Clark et al. 2019, BAM): the ``mtl_embed`` architecture trained
round-robin on the three tasks against the teachers' predictions and the gold labels, with teacher
annealing (``losses/distillation.py``). The teachers (``teachers``: the specialists by default,
or several phases averaged) scored the training data once in the teach step (``teachers.py``)."""

from __future__ import annotations

from optiminbert.data import TASKS
from optiminbert.losses.distillation import DistillationLoss
from optiminbert.paths import TEACHERS
from optiminbert.phases.base import JointPhase, Run
from optiminbert.schema import Setting, positive, within
from optiminbert.teachers import TeacherSplit, load_targets, teachers_path

def _distill(shape) -> bool:
    return shape.phase == "distill"


def _teachers(value: list) -> str | None:
    from optiminbert.phases import STUDY_PHASES  # the registry this module is part of, loaded by now

    study = [name for name in STUDY_PHASES if name != "distill"]
    if value and all(isinstance(t, str) and t in study for t in value) and len(set(value)) == len(value):
        return None
    return f"one or more different phases of {', '.join(study)}"


class DistillPhase(JointPhase):
    def training(self, run: Run, settings, train: dict, losses: dict) -> tuple[dict, dict, dict]:
        """Each task's training split with the teachers' soft targets beside its labels, and its
        loss annealed from them to the gold labels."""
        fingerprints = {}
        for task in run.tasks:
            targets = load_targets(teachers_path(TEACHERS, task), train[task], settings["teachers"], settings["distill_temperature"])
            train[task] = TeacherSplit(train[task], targets)
            losses[task] = DistillationLoss(losses[task], TASKS[task].kind, settings["distill_temperature"],
                                            settings["anneal"], settings["gold_weight"])
            fingerprints[task] = train[task].digest()
        return train, losses, fingerprints


DISTILL = DistillPhase(
    name="distill",
    title="Distilled multitask student",
    description="the sentence-embeddings multitask model taught by the specialists, with teacher annealing",
    pairs="siamese",
    section={"surgery": "pcgrad", "contrastive": "none", "sts_loss": "cosine_similarity", "teachers": ["specialist"],
             "distill_temperature": 1.0, "anneal": True, "gold_weight": 0.5},
    settings=(
        Setting("teachers", ["specialist"], "the phases whose predictions teach the student (several: averaged, as the ensemble does)",
                check=_teachers, applies=_distill, top_level=False, sections=("distill",)),
        Setting("distill_temperature", 1.0, "softens the teachers' and the student's sentiment distributions (Hinton et al. 2015)",
                check=positive, applies=_distill, top_level=False, sections=("distill",)),
        Setting("anneal", True, "teacher annealing: the gold labels' weight rises from 0 to 1 over training (false: gold_weight throughout)",
                applies=_distill, top_level=False, sections=("distill",)),
        Setting("gold_weight", 0.5, "without annealing, the gold labels' weight (the teachers': 1 - it)",
                check=within(0, 1, high_open=False), applies=_distill, when=lambda values: not values["anneal"],
                top_level=False, sections=("distill",)),
    ),
)
