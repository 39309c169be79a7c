"""A smoke `dvc repro` of the real dvc.yaml on tiny params: a tiny random BERT, 40 rows per file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from optiminbert.prepared import TaskSplit, split_path

ROOT = Path(__file__).resolve().parents[1]
HEADERS = {
    "sst": "id,prediction,prob_0,prob_1,prob_2,prob_3,prob_4",
    "quora": "id,prediction,probability",
    "sts": "id,prediction",
}


def run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory, tiny_data: Path, tiny_checkpoint: Path) -> tuple[Path, dict]:
    if shutil.which("dvc", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("dvc is not installed beside this Python")
    repo = tmp_path_factory.mktemp("repo")
    for name in ("dvc.yaml", "stages", "optiminbert", "ablation/dvc.yaml"):
        source = ROOT / name
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, repo / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.update(
        checkpoint=str(tiny_checkpoint), guide=str(tiny_checkpoint), data=str(tiny_data), device="cpu",
        precision="fp32", max_length=32, epochs=2, batch_size=8, eval_batch_size=16, lr=1e-3,
    )
    params["prepare"]["cfimdb_max_length"] = 48
    params["baseline"]["pretrain"]["epochs"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    # `python` in the stage commands must be this interpreter; one thread keeps tiny runs quick.
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "OMP_NUM_THREADS": "1",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    run(["git", "init", "-q"], repo, env)
    run(["dvc", "init", "-q"], repo, env)
    run(["dvc", "repro"], repo, env)
    return repo, env


def test_repro_writes_every_metric_and_report(tiny_repo):
    repo, _ = tiny_repo
    baseline = json.loads((repo / "metrics/baseline.json").read_text())
    assert set(baseline) == {"sst", "cfimdb"}
    assert all(0 <= baseline[t][m]["dev_acc"] <= 1 for t in baseline for m in ("pretrain", "finetune"))
    for phase in ("mtl", "mtl_embed", "specialist"):
        dev = json.loads((repo / f"metrics/{phase}.json").read_text())["dev"]
        assert set(dev) == {"sst_acc", "para_acc", "sts_pearson", "overall"}
        assert dev["overall"] == pytest.approx((dev["sst_acc"] + dev["para_acc"] + (dev["sts_pearson"] + 1) / 2) / 3, abs=2e-4)
        for task in ("sst", "quora", "sts"):
            for split in ("dev", "test"):
                lines = (repo / f"predictions/{phase}/{task}-{split}.csv").read_text().splitlines()
                assert lines[0] == HEADERS[task] and len(lines) > 30
        assert "confusion matrix" in (repo / f"metrics/analysis/{phase}.md").read_text()
    # A specialist's own section (params.yaml's specialist.sst, .quora) sets its batch size or
    # head lr, and its matched steps cover the largest task once at its batch size: the examples
    # mtl shows each task.
    largest = max(len(TaskSplit.load(split_path(repo / "data/prepared", t, "train"))) for t in ("sst", "quora", "sts"))
    runs = {t: json.loads((repo / f"models/specialist/{t}/run.json").read_text())["settings"] for t in ("sst", "quora")}
    assert (runs["sst"]["batch_size"], runs["quora"]["batch_size"]) == (16, 8)
    assert (runs["sst"]["head_lr"], runs["quora"]["head_lr"]) == (1e-3, 3e-3)
    assert runs["sst"]["steps_per_epoch"] == -(-largest // 16) and runs["quora"]["steps_per_epoch"] == -(-largest // 8)
    # each run records the settings it reads: the paraphrase head's only where there is one
    assert runs["quora"]["online_contrastive_margin"] == 0.5 and "token_alignment" in runs["quora"]
    assert {"token_alignment", "online_contrastive", "pooling", "gist_margin"}.isdisjoint(runs["sst"])
    ensemble = json.loads((repo / "metrics/ensemble.json").read_text())
    assert ensemble["members"] == ["mtl", "mtl_embed", "specialist"] and set(ensemble["dev"]) == set(dev)
    report = (repo / "metrics/report.md").read_text()
    assert "Table 1" in report and "Table 2" in report and "0.390" in report


def test_ablation_is_its_own_pipeline_and_sets_each_loss_beside_the_defaults(tiny_repo):
    repo, env = tiny_repo
    assert not (repo / "ablation/metrics.json").exists()  # the default `dvc repro` leaves it alone
    ran = run(["dvc", "repro", "ablation/dvc.yaml"], repo, env).stdout
    assert set(re.findall(r"Running stage '([^']+)'", ran)) == {
        "ablation/dvc.yaml:train@mnrl-quora", "ablation/dvc.yaml:train@mnrl-sts",
        "ablation/dvc.yaml:train@gist-quora", "ablation/dvc.yaml:train@gist-sts", "ablation/dvc.yaml:report",
    }
    results = json.loads((repo / "ablation/metrics.json").read_text())
    specialist = json.loads((repo / "metrics/specialist.json").read_text())["dev"]
    for task, key in (("quora", "para_acc"), ("sts", "sts_pearson")):
        assert results[task]["none"]["dev"] == pytest.approx(specialist[key], abs=1e-4)
        for loss in ("mnrl", "gist"):
            run_meta = json.loads((repo / f"ablation/{loss}/models/specialist/{task}/run.json").read_text())
            assert run_meta["settings"]["contrastive"] == loss and "contrastive" in run_meta["history"][0]["train_loss"]
            # the loss's own settings recorded, the other loss's not
            assert ("gist_temperature" in run_meta["settings"]) == (loss == "gist")
            assert ("mnrl_scale" in run_meta["settings"]) == (loss == "mnrl")
            change = results[task][loss]["dev"] - results[task]["none"]["dev"]
            assert results[task][loss]["change"] == pytest.approx(change, abs=1e-4)
    assert "| quora | paraphrase acc |" in (repo / "ablation/report.md").read_text()
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo, env).stdout)
    assert any("ablation/metrics.json" in str(entry) for entry in shown.values())


def test_lr_change_reruns_only_what_reads_lr(tiny_repo):
    repo, env = tiny_repo
    assert json.loads(run(["dvc", "status", "--json"], repo, env).stdout) == {}
    params = repo / "params.yaml"
    before = params.read_text()
    try:
        params.write_text(re.sub(r"(?m)^lr: .*$", "lr: 2.0e-3", before))
        changed = json.loads(run(["dvc", "status", "--json", "dvc.yaml"], repo, env).stdout)
    finally:
        params.write_text(before)
    # The stages whose own params hold lr (the stages after them re-run on their new outputs).
    assert set(changed) == {"baseline_finetune@sst", "baseline_finetune@cfimdb", "mtl", "mtl_embed", "specialist", "distill"}
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "tiny study"], repo, env)
    try:
        experiment = run(["dvc", "exp", "run", "-S", "lr=2e-3", "evaluate@mtl"], repo, env).stdout
        assert set(re.findall(r"Running stage '([^']+)'", experiment)) == {"mtl", "evaluate@mtl"}
        diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo, env).stdout)
        assert "metrics/mtl.json" in diff and "dev.overall" in diff["metrics/mtl.json"]
    finally:  # the committed study again, for the tests after this one
        run(["git", "checkout", "--", "."], repo, env)
        run(["dvc", "checkout", "--force"], repo, env)


def test_a_student_setting_reruns_the_student_not_the_teachers(tiny_repo):
    # The teachers' predictions are the teach stage's output: the student's own settings never
    # make them score the training data again (dvc status names the stages whose own params changed).
    repo, env = tiny_repo
    params = repo / "params.yaml"
    before = params.read_text()
    try:
        params.write_text(before.replace("anneal: true", "anneal: false"))
        assert "anneal: false" in params.read_text()
        changed = json.loads(run(["dvc", "status", "--json", "dvc.yaml"], repo, env).stdout)
        assert set(changed) == {"distill"}
    finally:
        params.write_text(before)
