"""The ensemble averages the phases' written probabilities and scores them like a phase."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from optiminbert.atomic import write_csv_atomic
from optiminbert.data import TASKS
from optiminbert.ensemble import evaluate_ensemble, read_probabilities
from optiminbert.errors import UserError
from optiminbert.metrics import overall
from optiminbert.prepared import TaskSplit, split_path


def _write(out, member, task, split, ids, probs):
    write_csv_atomic(*TASKS[task].kind.table(ids, probs), out / "predictions" / member / f"{task}-{split}.csv")


def test_mean_of_two_members_is_scored_against_dev(tmp_path, tiny_prepared):
    rng = np.random.default_rng(0)
    expected = {}
    for task in ("sst", "quora", "sts"):
        for split in ("dev", "test"):
            data = TaskSplit.load(split_path(tiny_prepared, task, split))
            n = len(data)
            if task == "sst":
                a, b = rng.dirichlet(np.ones(5), n), rng.dirichlet(np.ones(5), n)
            elif task == "quora":
                a, b = rng.random(n), rng.random(n)
            else:
                a, b = rng.random(n) * 5, rng.random(n) * 5
            _write(tmp_path, "mtl", task, split, data.ids, a)
            _write(tmp_path, "specialist", task, split, data.ids, b)
            if split == "dev":
                # What the files hold is rounded to 5 decimals: average what was written.
                mean = (np.round(a, 5) + np.round(b, 5)) / 2 if task != "sts" else (np.round(a, 4) + np.round(b, 4)) / 2
                gold = data.labels.numpy()
                if task == "sst":
                    expected[task] = np.mean(mean.argmax(-1) == gold)
                elif task == "quora":
                    expected[task] = np.mean((mean > 0.5) == gold)
                else:
                    expected[task] = np.corrcoef(mean, gold)[0, 1]
    metrics = evaluate_ensemble(["mtl", "specialist"], tiny_prepared, tmp_path)
    assert metrics["dev"]["sst_acc"] == pytest.approx(expected["sst"], abs=1e-4)
    assert metrics["dev"]["para_acc"] == pytest.approx(expected["quora"], abs=1e-4)
    assert metrics["dev"]["sts_pearson"] == pytest.approx(expected["sts"], abs=1e-4)
    assert metrics["dev"]["overall"] == pytest.approx(overall(*expected.values()), abs=2e-4)
    assert json.loads((tmp_path / "metrics" / "ensemble.json").read_text()) == metrics
    assert (tmp_path / "predictions" / "ensemble" / "sst-test.csv").is_file()


def test_a_phase_not_evaluated_is_named_and_nothing_is_written(tmp_path, tiny_prepared):
    with pytest.raises(UserError, match=re.escape("predictions not found; evaluate that phase first")):
        evaluate_ensemble(["mtl", "specialist"], tiny_prepared, tmp_path)
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "predictions").exists()


# (Which members are allowed is the ensemble's ``members`` setting's check, made where params are
# read, before any stage runs: test_settings.py.)


def test_a_prediction_file_without_probabilities_is_named(tmp_path):
    # a file from before prediction files held probabilities: averaging the labels would be wrong
    path = tmp_path / "sst-dev.csv"
    path.write_text("id,prediction\na,3\n")
    with pytest.raises(UserError, match=re.escape(f"{path}: no probability columns; re-run its evaluation stage")):
        read_probabilities("sst", path)


def test_members_listing_different_ids_are_refused(tmp_path, tiny_prepared):
    for task in ("sst", "quora", "sts"):
        for split in ("dev", "test"):
            data = TaskSplit.load(split_path(tiny_prepared, task, split))
            probs = np.full((len(data), 5), 0.2) if task == "sst" else np.full(len(data), 0.5)
            _write(tmp_path, "mtl", task, split, data.ids, probs)
            ids = data.ids[::-1] if (task, split) == ("quora", "dev") else data.ids  # same rows, another order
            _write(tmp_path, "specialist", task, split, ids, probs)
    with pytest.raises(UserError, match=re.escape("predictions of mtl, specialist for quora-dev list different ids")):
        evaluate_ensemble(["mtl", "specialist"], tiny_prepared, tmp_path)
    assert not (tmp_path / "metrics").exists()


def test_a_member_missing_a_file_leaves_no_ensemble_output(tmp_path, tiny_prepared):
    for task in ("sst", "quora", "sts"):
        for split in ("dev", "test"):
            data = TaskSplit.load(split_path(tiny_prepared, task, split))
            probs = np.full((len(data), 5), 0.2) if task == "sst" else np.full(len(data), 0.5)
            for member in ("mtl", "specialist"):
                if (member, task, split) != ("specialist", "sts", "test"):
                    _write(tmp_path, member, task, split, data.ids, probs)
    with pytest.raises(UserError, match="sts-test"):
        evaluate_ensemble(["mtl", "specialist"], tiny_prepared, tmp_path)
    assert not (tmp_path / "predictions" / "ensemble").exists() and not (tmp_path / "metrics").exists()
