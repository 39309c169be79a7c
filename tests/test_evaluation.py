"""The evaluation step (evaluation.py): a phase's dev metrics, its prediction files (what the
ensemble reads back) and its error analysis, on a tiny trained run."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from optiminbert import phases
from optiminbert.data import TASKS
from optiminbert.ensemble import read_probabilities
from optiminbert.evaluation import evaluate_phase, write_predictions
from optiminbert.prepared import TaskSplit, split_path
from optiminbert.settings import resolve_step

HEADERS = {
    "sst": "id,prediction,prob_0,prob_1,prob_2,prob_3,prob_4",
    "quora": "id,prediction,probability",
    "sts": "id,prediction",
}


@pytest.mark.parametrize("task", ["sst", "quora", "sts"])
def test_prediction_files_hold_what_the_ensemble_reads_back(tmp_path, tiny_prepared, task):
    data = TaskSplit.load(split_path(tiny_prepared, task, "dev"))
    generator = torch.Generator().manual_seed(0)
    raw = torch.randn((len(data), 5) if task == "sst" else (len(data),), generator=generator)
    if task == "sts":
        raw = raw.abs() * 2  # a similarity on 0..5
    path = tmp_path / f"{task}-dev.csv"
    write_predictions(task, data, raw, path)
    lines = path.read_text().splitlines()
    assert lines[0] == HEADERS[task] and len(lines) == len(data) + 1
    kind = TASKS[task].kind
    ids, probs = read_probabilities(task, path)
    assert ids == data.ids
    # what is averaged is what was computed, to the file's rounding; its decisions are the model's
    assert np.allclose(probs, kind.probabilities(raw), atol=1e-4)
    if kind.metric == "pearson":  # the score itself, rounded
        assert np.allclose(kind.decide(probs), kind.predictions(raw), atol=1e-4)
    else:  # a class: the very one
        assert np.array_equal(kind.decide(probs), kind.predictions(raw))
    written = np.array([line.split(",")[1] for line in lines[1:]], dtype=float)
    assert np.allclose(written, kind.predictions(raw), atol=1e-4)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, joint_run, tiny_prepared, one_thread):
    """The joint siamese run (sst, quora, sts) evaluated as phase mtl_embed, whose one run it fits."""
    out = tmp_path_factory.mktemp("evaluated")
    (out / "models").mkdir()
    os.symlink(joint_run.dir, out / "models" / "mtl_embed")
    settings = resolve_step({"device": "cpu", "precision": "fp32", "eval_batch_size": 16}, "evaluate")
    metrics = evaluate_phase(phases.get("mtl_embed"), out / "models", tiny_prepared, out, settings)
    return out, metrics, joint_run


def test_a_phase_s_metrics_are_its_selected_epochs_dev_scores(evaluated):
    out, metrics, run = evaluated
    assert json.loads((out / "metrics/mtl_embed.json").read_text()) == metrics
    selected = max(run.history, key=lambda h: h["selection"])["dev"]
    dev = metrics["dev"]
    assert (dev["sst_acc"], dev["para_acc"], dev["sts_pearson"]) == pytest.approx(
        (selected["sst"], selected["quora"], selected["sts"]), abs=1e-4
    )
    assert dev["overall"] == pytest.approx((dev["sst_acc"] + dev["para_acc"] + (dev["sts_pearson"] + 1) / 2) / 3, abs=2e-4)


def test_a_phase_writes_dev_and_test_predictions_for_every_task(evaluated, tiny_prepared):
    out, _, _ = evaluated
    for task in ("sst", "quora", "sts"):
        for split in ("dev", "test"):
            lines = (out / f"predictions/mtl_embed/{task}-{split}.csv").read_text().splitlines()
            ids = TaskSplit.load(split_path(tiny_prepared, task, split)).ids
            assert lines[0] == HEADERS[task] and [line.split(",")[0] for line in lines[1:]] == ids


def test_a_study_phase_writes_its_analysis_and_sst_confusion(evaluated, tiny_prepared):
    out, _, _ = evaluated
    dev = TaskSplit.load(split_path(tiny_prepared, "sst", "dev"))
    rows = (out / "plots/confusion/mtl_embed-sst.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == len(dev) + 1
    assert [int(r.split(",")[0]) for r in rows[1:]] == dev.labels.long().tolist()
    analysis = (out / "metrics/analysis/mtl_embed.md").read_text()
    for heading in ("# Error analysis: mtl_embed (dev)", "## sst: most confident errors", "## quora: most confident errors",
                    "## SST confusion matrix", "## STS residuals"):
        assert heading in analysis
