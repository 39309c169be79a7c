"""The phase registry (phases/): the study's phases, their runs (tasks, sections, directories),
which runs a command selects, and that a phase added to the registry reaches the report and
params.yaml's known sections without another list to update."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import register_phase

from optiminbert import phases, report, settings
from optiminbert.errors import UserError
from optiminbert.phases import JointPhase, Run
from optiminbert.schema import RunShape

STUDY_TASKS = ("sst", "quora", "sts")


def test_the_registry_holds_the_reports_phases_and_compares_all_but_the_baseline():
    assert list(phases.PHASES)[:4] == ["baseline", "mtl", "mtl_embed", "specialist"]
    assert phases.STUDY_PHASES == tuple(name for name in phases.PHASES if name != "baseline")
    assert phases.STUDY_TASKS == STUDY_TASKS
    assert phases.get("mtl-embed") is phases.PHASES["mtl_embed"]
    with pytest.raises(UserError, match=re.escape("unknown phase 'nonsense': choose one of " + ", ".join(phases.PHASES))):
        phases.get("nonsense")


def test_baseline_runs_are_task_by_mode_with_sections_in_that_order():
    runs = phases.get("baseline").runs()
    assert [(r.name, r.tasks, r.pairs, r.frozen, r.directory, r.label) for r in runs] == [
        ("baseline-sst-pretrain", ("sst",), "cross", True, "baseline/sst-pretrain", "sst-pretrain"),
        ("baseline-sst-finetune", ("sst",), "cross", False, "baseline/sst-finetune", "sst-finetune"),
        ("baseline-cfimdb-pretrain", ("cfimdb",), "cross", True, "baseline/cfimdb-pretrain", "cfimdb-pretrain"),
        ("baseline-cfimdb-finetune", ("cfimdb",), "cross", False, "baseline/cfimdb-finetune", "cfimdb-finetune"),
    ]
    # the task's section after the mode's: baseline.cfimdb's batch size holds in both modes
    assert runs[2].sections == ("baseline", "baseline.pretrain", "baseline.cfimdb")
    assert runs[2].output_name("cfimdb") == "cfimdb-pretrain"
    assert runs[2].shape == RunShape("baseline", ("cfimdb",), "cross", True)


@pytest.mark.parametrize("name, pairs", [("mtl", "cross"), ("mtl_embed", "siamese")])
def test_a_joint_phase_is_one_run_of_the_three_tasks(name, pairs):
    (only,) = phases.get(name).runs()
    assert only == Run(name, name, STUDY_TASKS, pairs, (name,), name)
    assert only.shape.joint and only.output_name("sts") == "sts"
    assert only.path("models") == Path("models") / name


def test_specialists_are_one_siamese_run_per_study_task():
    runs = phases.get("specialist").runs()
    assert [(r.name, r.tasks, r.pairs, r.sections, r.directory) for r in runs] == [
        (f"specialist-{t}", (t,), "siamese", ("specialist", f"specialist.{t}"), f"specialist/{t}") for t in STUDY_TASKS
    ]
    assert not any(r.shape.joint for r in runs)


def test_select_picks_the_runs_a_command_trains():
    baseline = phases.get("baseline")
    assert [r.name for r in baseline.select()] == ["baseline-sst-finetune"]  # the defaults: sst, finetune
    assert [r.name for r in baseline.select("cfimdb", "pretrain")] == ["baseline-cfimdb-pretrain"]
    assert [r.name for r in phases.get("specialist").select()] == ["specialist-sst", "specialist-quora", "specialist-sts"]
    assert [r.name for r in phases.get("specialist").select("sts", "finetune")] == ["specialist-sts"]
    assert [r.name for r in phases.get("mtl").select(None, "finetune")] == ["mtl"]


@pytest.mark.parametrize(
    "phase, task, mode, message",
    [
        ("baseline", "imdb", None, "unknown task 'imdb': choose one of sst, cfimdb"),
        ("baseline", None, "half", "unknown mode 'half': choose one of pretrain, finetune"),
        ("specialist", "cfimdb", None, "unknown task 'cfimdb': choose one of sst, quora, sts"),
        ("specialist", None, "pretrain", "--mode pretrain is for baseline runs: specialist always fine-tunes the encoder"),
        # ignoring --task would train all three tasks, not the run asked for
        ("mtl", "sst", None, "mtl trains sst, quora and sts in one model: a task (--task) is for baseline and specialist runs"),
        ("mtl_embed", None, "pretrain", "--mode pretrain is for baseline runs: mtl_embed always fine-tunes"),
    ],
)
def test_select_refuses_what_the_phase_has_no_run_for(phase, task, mode, message):
    with pytest.raises(UserError, match=re.escape(message)):
        phases.get(phase).select(task, mode)


def test_run_for_is_the_run_that_answers_a_task():
    assert phases.get("specialist").run_for("quora").name == "specialist-quora"
    assert phases.get("mtl").run_for("sts").name == "mtl"
    # the baseline has a frozen and a fine-tuned run per task: predictions come from the fine-tuned one
    assert phases.get("baseline").run_for("cfimdb").name == "baseline-cfimdb-finetune"
    with pytest.raises(UserError, match=re.escape("unknown task for mtl 'cfimdb': choose one of sst, quora, sts")):
        phases.get("mtl").run_for("cfimdb")
    with pytest.raises(UserError, match=re.escape("unknown task for baseline 'sts': choose one of sst, cfimdb")):
        phases.get("baseline").run_for("sts")


def test_metrics_files_are_by_task_for_the_study_and_by_mode_for_the_baseline():
    scores = {"sst-pretrain": 0.31234, "sst-finetune": 0.4, "cfimdb-pretrain": 0.7, "cfimdb-finetune": 0.9}
    assert phases.get("baseline").metrics(scores) == {
        "sst": {"pretrain": {"dev_acc": 0.3123}, "finetune": {"dev_acc": 0.4}},
        "cfimdb": {"pretrain": {"dev_acc": 0.7}, "finetune": {"dev_acc": 0.9}},
    }
    dev = phases.get("specialist").metrics({"sst": 0.5, "quora": 0.8, "sts": 0.6})["dev"]
    assert dev == {"sst_acc": 0.5, "para_acc": 0.8, "sts_pearson": 0.6, "overall": round((0.5 + 0.8 + 0.8) / 3, 4)}


def test_specialists_match_the_multitask_steps_unless_told_otherwise():
    specialist, quora = phases.get("specialist"), phases.get("specialist").select("quora")[0]
    sizes = {"sst": 100, "quora": 1000, "sts": 50}
    tree = settings.load(Path(__file__).resolve().parents[1] / "params.yaml")
    base = settings.resolve(tree, quora.sections, {"batch_size": 32}, quora.shape)
    # one pass over the largest task (quora) at the run's batch size, rounded up
    assert specialist.adjust(quora, base, sizes.__getitem__).steps_per_epoch == 32  # ceil(1000 / 32)
    assert specialist.adjust(quora, base.replace(steps_per_epoch=7), sizes.__getitem__).steps_per_epoch == 7
    assert specialist.adjust(quora, base.replace(match_multitask_steps=False), sizes.__getitem__).steps_per_epoch == 0
    # the other phases leave the settings as resolved
    (mtl,) = phases.get("mtl").runs()
    assert phases.get("mtl").adjust(mtl, base, sizes.__getitem__) is base


# -- a phase added to the registry ----------------------------------------------------------


TOY = JointPhase(
    name="toy",
    title="Toy joint phase",
    description="a joint phase registered by a test",
    pairs="cross",
    section={"surgery": "pcgrad", "dropout": 0.2},
    paper=(0.25, 0.5, 0.75),
)


@pytest.fixture
def toy(monkeypatch) -> JointPhase:
    register_phase(monkeypatch, TOY)
    return TOY


def dev(sst: float, para: float, sts: float) -> dict:
    return {"dev": {"sst_acc": sst, "para_acc": para, "sts_pearson": sts, "overall": 0.5}}


def test_a_registered_phase_is_in_the_report_tables(toy, tmp_path):
    for name in ("mtl", "toy"):
        (tmp_path / f"{name}.json").write_text(json.dumps(dev(0.4, 0.6, 0.2)))
    tables = {title: rows for title, _, rows in report.build_tables(tmp_path)}
    table2 = tables["Table 2: dev results per phase"]
    assert ["Toy joint phase", "paper", "0.250", "0.500", "0.750", f"{(0.25 + 0.5 + 0.875) / 3:.3f}"] in table2
    assert ["Toy joint phase", "ours", "0.400", "0.600", "0.200", "0.500"] in table2
    # after the registered phases, in the registry's order
    assert [row[0] for row in table2][-2:] == ["Toy joint phase", "Toy joint phase"]
    assert [row[0] for row in tables["Table 3: test predictions (predictions/<phase>/<task>-test.csv)"]] == [
        "Round-robin MTL", "Toy joint phase",
    ]
    report.write_phase_bars(tmp_path, tmp_path / "phases.csv")
    assert [line.split(",")[0] for line in (tmp_path / "phases.csv").read_text().splitlines()] == ["phase", "mtl", "toy"]


def test_without_registering_the_toy_phase_is_nowhere(tmp_path):
    # the counterpart of the tests around it: what they find, registering the phase put there
    (tmp_path / "toy.json").write_text(json.dumps(dev(0.4, 0.6, 0.2)))
    assert not any(row[0] == "Toy joint phase" for _, _, rows in report.build_tables(tmp_path) for row in rows)
    assert "toy" not in settings.known_sections() and "toy" not in settings.defaults()


def test_a_registered_phase_has_its_params_section(toy, tmp_path):
    known = settings.known_sections()
    assert known["toy"] == {} and list(known)[-3:] == ["toy", "evaluate", "ensemble"]
    assert settings.defaults()["toy"] == {"surgery": "pcgrad", "dropout": 0.2}
    # its section is read like any phase's, and checked like any phase's
    path = tmp_path / "params.yaml"
    path.write_text("toy:\n  lr: 3.0e-5\n")
    tree = settings.load(path)
    (run,) = toy.runs()
    resolved = settings.resolve(tree, run.sections, None, run.shape)
    assert (resolved.lr, resolved.surgery, resolved.dropout, resolved.sources["lr"]) == (3.0e-5, "pcgrad", 0.2, "toy")
    path.write_text("toy:\n  contrastive: mnrl\n")
    with pytest.raises(UserError, match="param contrastive in section toy is read by none of its runs"):
        settings.load(path)
    path.write_text("toy:\n  sst:\n    lr: 1.0\n")
    with pytest.raises(UserError, match=re.escape("unknown section toy.sst; known: none (toy takes params only)")):
        settings.load(path)
    # ...and is an ensemble member like the others
    assert settings.resolve({"ensemble": {"members": ["mtl", "toy"]}}, ("ensemble",)).members == ["mtl", "toy"]
