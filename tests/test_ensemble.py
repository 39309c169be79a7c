"""The ensemble averages the phases' written probabilities and scores them like a phase."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from optiminbert.evaluation import evaluate_ensemble, prediction_table
from optiminbert.atomic import write_csv_atomic
from optiminbert.errors import UserError
from optiminbert.metrics import overall
from optiminbert.prepared import TaskSplit, split_path


def _write(out, member, task, split, ids, probs):
    write_csv_atomic(*prediction_table(task, ids, probs), out / "predictions" / member / f"{task}-{split}.csv")


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


def test_one_member_or_a_missing_phase_is_refused(tmp_path, tiny_prepared):
    with pytest.raises(Exception, match="two or more"):
        evaluate_ensemble(["mtl"], tiny_prepared, tmp_path)
    with pytest.raises(Exception, match="predictions not found"):
        evaluate_ensemble(["mtl", "specialist"], tiny_prepared, tmp_path)
    assert not (tmp_path / "metrics").exists()


@pytest.mark.parametrize("members", ["mtl", ["mtl", "mtl"], ["mtl", "foo"], ["mtl", ["specialist"]]])
def test_members_must_be_a_list_of_different_phases(tmp_path, tiny_prepared, members):
    # A string would otherwise be read letter by letter, and a repeated phase averaged with itself.
    with pytest.raises(UserError, match=re.escape(f"two or more different phases of mtl, mtl_embed, specialist, got {members!r}")):
        evaluate_ensemble(members, tiny_prepared, tmp_path)


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
