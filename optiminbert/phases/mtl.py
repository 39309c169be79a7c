"""Round-robin multitask: pairs cross-encoded ([CLS] a [SEP] b [SEP]), one head per task."""

from optiminbert.phases.base import JointPhase

MTL = JointPhase(
    name="mtl",
    title="Round-robin MTL",
    description="round-robin multitask, cross-encoded pairs, one head per task",
    pairs="cross",
    section={"surgery": "none", "pooling": "mean"},
    paper=(0.520, 0.475, -0.005),
)
