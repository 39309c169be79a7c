"""The command line: help, one-line errors for bad input (no traceback, nothing written), predict."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from optiminbert import params as params_file
from optiminbert import phases, pipeline
from optiminbert.errors import UserError
from optiminbert.phases import train_run
from optiminbert.predict import read_inputs

CLI = str(Path(sys.executable).parent / "optiminbert")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([CLI, *args], cwd=cwd, env=env, capture_output=True, text=True)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_the_commands(tmp_path):
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("prepare", "train", "evaluate", "report", "predict"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["prepare", "--data", "no/such/dir"], ["no/such/dir"]),
        (["prepare", "--checkpoint", "not-a-bert"], ["not-a-bert", "not a directory"]),
        (["train", "nonsense"], ["unknown phase 'nonsense'", "baseline"]),
        (["train", "baseline", "--task", "imdb"], ["unknown task 'imdb'"]),
        (["train", "baseline", "--mode", "half"], ["unknown mode 'half'"]),
        (["train", "mtl", "--task", "sst"], ["mtl trains sst, quora and sts in one model", "--task"]),
        (["train", "specialist", "--mode", "pretrain"], ["--mode pretrain is for baseline runs"]),
        (["prepare", "--max-length", "2"], ["param max_length must be a whole number from 3 to 512", "got 2"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, fragments):
    assert_one_line_error(cli(*args, cwd=tmp_path), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_train_phase_trains_only_what_was_asked_for(tmp_path):
    # The library call the stages use: a joint phase given tasks, or the baseline (whose runs
    # are per task and mode), is refused before anything is read or written.
    with pytest.raises(UserError, match="mtl_embed trains sst, quora and sts in one model"):
        pipeline.train_phase({}, "mtl_embed", tasks=["sst"], root=tmp_path)
    with pytest.raises(UserError, match="unknown phase 'baseline'"):
        pipeline.train_phase({}, "baseline", root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_invalid_param_values_are_named(tmp_path, tiny_prepared, tiny_checkpoint):
    (tmp_path / "data").mkdir()
    os.symlink(tiny_prepared, tmp_path / "data" / "prepared")
    common = ["train", "baseline", "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    assert_one_line_error(cli(*common, "--lr", "-1", cwd=tmp_path), "param lr must be positive")
    assert_one_line_error(cli(*common, "--batch-size", "0", cwd=tmp_path), "param batch_size must be positive")
    (tmp_path / "params.yaml").write_text("lr: abc\n")
    assert_one_line_error(cli(*common, cwd=tmp_path), "param lr must be a number, got 'abc'")
    (tmp_path / "params.yaml").write_text("compile: 1\n")
    assert_one_line_error(cli(*common, cwd=tmp_path), "param compile must be true or false, got 1")
    assert not (tmp_path / "models").exists()


def test_exponent_floats_as_dvc_writes_them_are_numbers(tmp_path):
    # `dvc exp run -S lr=2e-5` writes "lr: 2e-05", a string to a YAML 1.1 reader such as PyYAML's.
    (tmp_path / "params.yaml").write_text("lr: 2e-05\nwarmup: .5E-1\nbaseline:\n  finetune:\n    head_lr: 1e+3\n")
    resolved = params_file.resolve(params_file.load(tmp_path / "params.yaml"), "baseline.finetune")
    assert (resolved["lr"], resolved["warmup"], resolved["head_lr"]) == (2e-05, 0.05, 1000.0)


@pytest.mark.parametrize(
    "text, message",
    [
        ("specialst:\n  lr: 1.0e-3\n", "unknown section specialst; known: prepare, baseline, mtl"),
        ("specialist:\n  quroa:\n    lr: 1.0\n", "unknown section specialist.quroa; known: specialist.sst, specialist.quora"),
        ("mtl:\n  sst:\n    lr: 1.0\n", "unknown section mtl.sst; known: none (mtl takes params only)"),
    ],
)
def test_a_misspelt_section_is_named_not_ignored(tmp_path, text, message):
    # Stages read only the sections they know, so these once changed nothing, silently.
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(UserError, match=re.escape(message)):
        params_file.load(tmp_path / "params.yaml")


def test_known_sections_are_the_stages_and_their_subsections():
    # params.py stays torch-free, so it spells out names phases.py holds: a new phase or task
    # added there alone would make its params.yaml section an "unknown section" error.
    joint = {name: {} for name, spec in phases.PHASES.items() if spec.joint}
    per_task = {name: {t: {} for t in phases.STUDY_TASKS} for name, spec in phases.PHASES.items() if not spec.joint}
    baseline = {k: {} for k in (*phases.BASELINE_MODES, *phases.BASELINE_TASKS)}
    expected = {"prepare": {}, "baseline": baseline, **joint, **per_task, "evaluate": {}, "ensemble": {}}
    assert params_file.SECTIONS == expected


def test_the_projects_params_yaml_has_only_known_sections():
    loaded = params_file.load(Path(__file__).parents[1] / "params.yaml")
    assert loaded["specialist"]["quora"]["head_lr"] == 3.0e-3


@pytest.fixture(scope="module")
def sst_run(tmp_path_factory, tiny_prepared, tiny_params, one_thread) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "sst"
    train_run({**tiny_params, "epochs": 1}, ["sst"], "siamese", tiny_prepared, run_dir, "sst")
    return run_dir


def test_predict_from_text_and_csv(tmp_path, sst_run):
    result = cli("predict", str(sst_run), "--task", "sst", "--text", "A good film .", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "prediction" in result.stdout and "probability" in result.stdout
    source = tmp_path / "in.csv"
    source.write_text("id,sentence\na,A good film .\nb,\"Dull, slow and long .\"\n")
    out = tmp_path / "out.csv"
    result = cli("predict", str(sst_run), "--task", "sst", "--csv", str(source), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "id,prediction,label,probability" and [l.split(",")[0] for l in lines[1:]] == ["a", "b"]


def test_predict_reads_one_column_csv_and_tsv(tmp_path, sst_run):
    # A one-column header such as "sentence" once had one of its letters sniffed as the separator.
    for name, content, ids in [
        ("one.csv", "sentence\nA good film .\nDull and slow .\n", ["0", "1"]),
        ("in.tsv", "id\tsentence\nx\tA good film , really .\n", ["x"]),
    ]:
        (tmp_path / name).write_text(content)
        out = tmp_path / f"{name}.out.csv"
        result = cli("predict", str(sst_run), "--task", "sst", "--csv", name, "--out", str(out), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert [line.split(",")[0] for line in out.read_text().splitlines()[1:]] == ids


@pytest.mark.parametrize(
    "content, fragments",
    [
        ('sentence\nA good film .\n""\n', ["bad.csv row 2: empty sentence"]),
        ("sentence\n", ["bad.csv", "no rows"]),
        ("text\nA good film .\n", ["needs column(s) sentence", "found text"]),
        ('sentence\n"A good film .\n', ["bad.csv: cannot read as CSV"]),
    ],
)
def test_predict_names_what_is_wrong_with_a_csv_and_writes_nothing(tmp_path, sst_run, content, fragments):
    (tmp_path / "bad.csv").write_text(content)
    out = tmp_path / "out.csv"
    result = cli("predict", str(sst_run), "--task", "sst", "--csv", "bad.csv", "--out", str(out), cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert not out.exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--task", "sst", "--text", "a", "--text2", "b"], "--text2 is for the pair tasks"),
        (["--task", "sst", "--text", "a", "--csv", "in.csv"], "--csv or --text, not both"),
        (["--task", "foo", "--text", "a"], "unknown task 'foo'"),
    ],
)
def test_predict_rejects_unknown_or_contradictory_options(tmp_path, sst_run, args, fragment):
    (tmp_path / "in.csv").write_text("sentence\nA good film .\n")
    assert_one_line_error(cli("predict", str(sst_run), *args, cwd=tmp_path), fragment)


def test_predict_out_that_is_a_directory_is_named(tmp_path, sst_run):
    # It once failed after scoring, in a traceback naming a temporary file.
    (tmp_path / "out").mkdir()
    result = cli("predict", str(sst_run), "--task", "sst", "--text", "A good film .", "--out", "out", cwd=tmp_path)
    assert_one_line_error(result, "cannot write out: it is a directory")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_pair_row_short_of_its_second_sentence_is_named(tmp_path):
    (tmp_path / "pairs.csv").write_text("sentence1,sentence2\nHow do I cook rice?,How to cook rice?\nonly one\n")
    with pytest.raises(UserError, match=r"pairs.csv row 2: empty sentence2$"):
        read_inputs(tmp_path / "pairs.csv", "quora")


def test_predict_rejects_a_task_the_run_was_not_trained_for(tmp_path, sst_run):
    assert_one_line_error(cli("predict", str(sst_run), "--task", "sts", "--text", "a", "--text2", "b", cwd=tmp_path), "not sts")


def _damaged_copy(tiny_data: Path, tmp_path: Path, name: str, content: bytes) -> Path:
    data = tmp_path / "input"
    shutil.copytree(tiny_data, data)
    (data / name).write_bytes(content)
    return data


@pytest.mark.parametrize(
    "name, content, fragments",
    [
        ("ids-sst-train.csv", b"", ["ids-sst-train.csv", "empty"]),
        ("sts-dev.csv", b"\tid\tsentence1\tsimilarity\n0\ta\tx\t1\n", ["sts-dev.csv", "sentence2"]),
        ("quora-train.csv", b"\tid\tsentence1\tsentence2\tis_duplicate\n", ["quora-train.csv"]),
    ],
)
def test_structural_data_defects_stop_prepare_before_anything_is_written(tmp_path, tiny_data, name, content, fragments):
    data = _damaged_copy(tiny_data, tmp_path, name, content)
    work = tmp_path / "work"
    work.mkdir()
    assert_one_line_error(cli("prepare", "--data", str(data), cwd=work), *fragments)
    assert list(work.iterdir()) == []


def test_unknown_surgery_and_corrupt_checkpoint_are_named(tmp_path, tiny_prepared, tiny_checkpoint):
    (tmp_path / "data").mkdir()
    os.symlink(tiny_prepared, tmp_path / "data" / "prepared")
    common = ["train", "mtl", "--device", "cpu"]
    result = cli(*common, "--checkpoint", str(tiny_checkpoint), "--surgery", "magic", cwd=tmp_path)
    assert_one_line_error(result, "unknown surgery 'magic'", "pcgrad")
    # A one-task run has nothing to project, but a typo is still named, not passed over.
    result = cli("train", "specialist", "--task", "sts", "--device", "cpu", "--checkpoint", str(tiny_checkpoint), "--surgery", "magic", cwd=tmp_path)
    assert_one_line_error(result, "unknown surgery 'magic'")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert_one_line_error(cli(*common, "--checkpoint", str(broken), cwd=tmp_path), "model.safetensors")
    assert not (tmp_path / "models").exists()
