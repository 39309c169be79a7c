"""The README quotes the committed metrics in tables; they must be the numbers in metrics/, ablation/ and study/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("sst_acc", "para_acc", "sts_pearson", "overall")
# The label each phase has in the two tables: "At a glance", and Table 2's "ours" rows.
GLANCE = {
    "mtl": "round-robin multitask",
    "mtl_embed": "multitask + sentence embeddings, PCGrad",
    "specialist": "specialists",
    "distill": "one student distilled from the specialists (ours only)",
    "ensemble": "ensemble of the three (ours only)",
}
TABLE2 = {
    "mtl": "Round-robin MTL",
    "mtl_embed": "MTL + sentence embeddings",
    "specialist": "Specialists",
    "distill": "Distilled multitask student",
    "ensemble": "Ensemble of the phases",
}


def committed(phase: str) -> list[str]:
    dev = json.loads((ROOT / "metrics" / f"{phase}.json").read_text(encoding="utf-8"))["dev"]
    return [f"{dev[k]:.4f}" for k in KEYS]


def scores_in_row(starts: str, also: str = "") -> list[str]:
    """The four-decimal scores of the one README table row that starts with ``starts`` and
    holds ``also`` (a paper number in parentheses after a score is left out)."""
    rows = [
        line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith(starts) and also in line
    ]
    assert len(rows) == 1, f"{len(rows)} README rows start with {starts!r} and hold {also!r}"
    return re.findall(r"(?<![(\d.])\d\.\d{4}\b", rows[0])


@pytest.mark.parametrize("phase", GLANCE)
def test_at_a_glance_quotes_the_committed_metrics(phase: str) -> None:
    assert scores_in_row(f"| {GLANCE[phase]} |") == committed(phase)


@pytest.mark.parametrize("phase", TABLE2)
def test_table_2_quotes_the_committed_metrics(phase: str) -> None:
    assert scores_in_row(f"| {TABLE2[phase]}", "| ours |") == committed(phase)


@pytest.mark.parametrize("task, label", [("quora", "| Quora | paraphrase acc |"), ("sts", "| STS | Pearson r |")])
def test_the_loss_ablation_table_quotes_ablation_metrics(task: str, label: str) -> None:
    runs = json.loads((ROOT / "ablation" / "metrics.json").read_text(encoding="utf-8"))[task]
    assert scores_in_row(label) == [f"{runs[loss]['dev']:.4f}" for loss in ("none", "mnrl", "gist")]


@pytest.mark.parametrize("variant", ["default", "cagrad", "nash_mtl", "imtl_g", "smart", "uncertainty", "none", "cosent", "famo", "mgda"])
def test_the_methods_study_table_quotes_study_metrics(variant: str) -> None:
    runs = json.loads((ROOT / "study" / "metrics.json").read_text(encoding="utf-8"))
    assert scores_in_row(f"| `{variant}`") == [f"{runs[variant][k]:.4f}" for k in KEYS]
