"""Distillation: the teachers' soft targets, the annealed loss, the teach step's file and the
distilled student end to end on tiny data."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import assert_one_line_error

from optiminbert.data import TASKS
from optiminbert.errors import UserError
from optiminbert.losses import CrossEntropyLoss, MSELoss, SiameseParaphraseLoss
from optiminbert.losses.distillation import DistillationLoss
from optiminbert.multitask import PairLogit
from optiminbert.prepared import TaskSplit, split_path
from optiminbert.teachers import TeacherSplit, load_targets, save_predictions

SST, QUORA, STS = (TASKS[t].kind for t in ("sst", "quora", "sts"))


def test_soft_targets_average_the_teachers_in_probability_space():
    logits = torch.tensor([[[2.0, 0.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, 0.0, 2.0]]])  # two teachers, one example
    expected = (logits.softmax(-1).sum(0) / 2)
    torch.testing.assert_close(SST.soft_targets(logits, 1.0), expected)
    # a temperature flattens each teacher's distribution before they are averaged
    flat = SST.soft_targets(logits, 4.0)
    assert flat.max() < expected.max() and math.isclose(flat.sum().item(), 1.0, rel_tol=1e-6)
    torch.testing.assert_close(QUORA.soft_targets(torch.tensor([[0.0], [2.0]]), 1.0), torch.tensor([[(0.5 + 1 / (1 + math.exp(-2))) / 2]]))
    torch.testing.assert_close(STS.soft_targets(torch.tensor([[1.0, 3.0], [3.0, 5.0]]), 1.0), torch.tensor([[2.0], [4.0]]))


def test_distillation_loss_per_kind_by_hand():
    logits = torch.tensor([[1.0, 2.0, 0.0, 0.0, -1.0]])
    targets = torch.tensor([[0.1, 0.6, 0.1, 0.1, 0.1]])
    by_hand = -(targets * (logits / 2).log_softmax(-1)).sum() * 4  # T² keeps the gradients' scale
    torch.testing.assert_close(SST.distillation_loss(logits, targets, 2.0), by_hand)
    torch.testing.assert_close(QUORA.distillation_loss(torch.tensor([0.5]), torch.tensor([[0.8]]), 1.0),
                               F.binary_cross_entropy_with_logits(torch.tensor([0.5]), torch.tensor([0.8])))
    torch.testing.assert_close(STS.distillation_loss(torch.tensor([4.0]), torch.tensor([[3.0]]), 1.0), torch.tensor(0.04))


def test_teacher_annealing_moves_the_weight_from_the_teachers_to_the_gold_labels():
    logits = torch.tensor([[3.0, 0.0, 0.0, 0.0, 0.0]])
    labels = torch.tensor([[4.0, 1.0, 0.0, 0.0, 0.0, 0.0]])  # gold class 4; the teachers say class 0
    loss = DistillationLoss(CrossEntropyLoss(), SST, anneal=True)
    gold = F.cross_entropy(logits, torch.tensor([4]))
    taught = SST.distillation_loss(logits, labels[:, 1:], 1.0)
    seen = []
    for step in (0, 5, 10):
        loss.at_step(step, 10)
        seen.append(loss(logits, labels))
    torch.testing.assert_close(seen[0], taught)  # λ = 0: the teachers only
    torch.testing.assert_close(seen[1], 0.5 * gold + 0.5 * taught)
    torch.testing.assert_close(seen[2], gold)  # λ = 1: the gold labels only
    fixed = DistillationLoss(CrossEntropyLoss(), SST, anneal=False, gold_weight=0.25)
    fixed.at_step(10, 10)  # without annealing the weight never moves
    torch.testing.assert_close(fixed(logits, labels), 0.25 * gold + 0.75 * taught)


def test_the_paraphrase_gold_loss_keeps_its_contrastive_term_on_the_embeddings():
    prediction = PairLogit(torch.tensor([0.3, -0.2]), torch.randn(2, 2, 4, generator=torch.Generator().manual_seed(0)))
    labels = torch.tensor([[1.0, 0.9], [0.0, 0.2]])
    gold = SiameseParaphraseLoss(weight=0.1)
    loss = DistillationLoss(gold, QUORA, anneal=False, gold_weight=1.0)
    torch.testing.assert_close(loss(prediction, labels), gold(prediction, labels[:, 0]))
    regression = DistillationLoss(MSELoss(), STS, anneal=False, gold_weight=0.0)
    torch.testing.assert_close(regression(torch.tensor([2.5]), torch.tensor([[5.0, 2.5]])), torch.tensor(0.0))


def test_saved_predictions_are_checked_against_the_split_and_the_teachers(tmp_path, tiny_prepared):
    split = TaskSplit.load(split_path(tiny_prepared, "sts", "train"))
    raw = [torch.linspace(0, 5, len(split)), torch.linspace(5, 0, len(split))]
    path = tmp_path / "sts.safetensors"
    save_predictions(raw, ["mtl", "specialist"], split, path)
    torch.testing.assert_close(load_targets(path, split, ["mtl", "specialist"], 1.0), torch.full((len(split), 1), 2.5))
    with pytest.raises(UserError, match=r"sts.safetensors: made by mtl,specialist, not specialist; run `dvc repro teach` again"):
        load_targets(path, split, ["specialist"], 1.0)
    other = TaskSplit.load(split_path(tiny_prepared, "quora", "train"))
    with pytest.raises(UserError, match="made for other quora training examples"):
        load_targets(path, other, ["mtl", "specialist"], 1.0)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(UserError, match="unreadable teachers' predictions"):
        load_targets(path, split, ["mtl", "specialist"], 1.0)
    with pytest.raises(UserError, match="not found; run `dvc repro teach`"):
        load_targets(tmp_path / "none.safetensors", split, ["specialist"], 1.0)


def test_a_teacher_split_batches_the_soft_targets_beside_the_gold_labels(tiny_prepared):
    split = TaskSplit.load(split_path(tiny_prepared, "sst", "train"))
    targets = torch.eye(5)[torch.arange(len(split)) % 5]
    taught = TeacherSplit(split, targets)
    indices = torch.tensor([3, 0, 7])
    batch, plain = taught.batch(indices, "siamese", 32), split.batch(indices, "siamese", 32)
    assert torch.equal(batch["labels"][:, 0], plain["labels"]) and torch.equal(batch["labels"][:, 1:], targets[indices])
    assert torch.equal(batch["input_ids"], plain["input_ids"]) and len(taught) == len(split)


@pytest.fixture
def distill_project(tmp_path, tiny_prepared, tiny_params, cli):
    """A tiny project whose specialists are trained: the teachers."""
    (tmp_path / "data").mkdir()
    os.symlink(tiny_prepared, tmp_path / "data" / "prepared")
    tree = {k: tiny_params[k] for k in ("checkpoint", "device", "precision", "batch_size", "eval_batch_size", "lr", "max_length")}
    tree.update(epochs=1, specialist={"match_multitask_steps": False})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tree))
    assert cli("train", "specialist", cwd=tmp_path).returncode == 0
    return tmp_path


def test_the_student_learns_from_the_teach_step_and_is_evaluated_like_a_phase(distill_project, cli):
    assert_one_line_error(cli("train", "distill", cwd=distill_project), "teachers' predictions not found; run `dvc repro teach`")
    result = cli("teach", cwd=distill_project)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (distill_project / "data" / "teachers").iterdir()) == [
        "quora.safetensors", "sst.safetensors", "sts.safetensors"]
    result = cli("train", "distill", cwd=distill_project)
    assert result.returncode == 0, result.stderr
    record = json.loads((distill_project / "models" / "distill" / "run.json").read_text())
    assert record["tasks"] == ["sst", "quora", "sts"] and record["pairs"] == "siamese"
    assert {k: record["settings"][k] for k in ("teachers", "anneal", "surgery")} == {"teachers": ["specialist"], "anneal": True, "surgery": "pcgrad"}
    assert "gold_weight" not in record["settings"]  # annealed: the fixed weight is not used
    result = cli("evaluate", "distill", cwd=distill_project)
    assert result.returncode == 0, result.stderr
    assert set(json.loads((distill_project / "metrics" / "distill.json").read_text())["dev"]) == {"sst_acc", "para_acc", "sts_pearson", "overall"}
    # teachers changed without scoring them again: named, not trained on stale targets
    (distill_project / "params.yaml").write_text((distill_project / "params.yaml").read_text() + "distill:\n  teachers: [mtl_embed]\n")
    assert_one_line_error(cli("train", "distill", cwd=distill_project), "made by specialist, not mtl_embed; run `dvc repro teach` again")
