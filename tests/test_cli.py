"""The command line (cli.py): its commands, one-line errors for bad input (no traceback, nothing
written), `--set` beside the options, and `optiminbert params`. Most commands run in this process
(the ``cli`` fixture, through the console script's own ``cli.main``); the first two tests run the
installed console script itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_one_line_error

CONSOLE_SCRIPT = str(Path(sys.executable).parent / "optiminbert")


def console(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([CONSOLE_SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_console_script_lists_the_commands(tmp_path):
    result = console("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("prepare", "train", "params", "evaluate", "report", "predict", "bench"):
        assert re.search(rf"^\W*{command}\b", result.stdout, re.M), command


def test_the_console_script_shows_an_error_as_one_line(tmp_path):
    assert_one_line_error(console("train", "nonsense", cwd=tmp_path), "unknown phase 'nonsense'", "baseline")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["prepare", "--data", "no/such/dir"], ["data source no/such/dir is not a directory"]),
        (["prepare", "--checkpoint", "not-a-bert"], ["checkpoint not-a-bert: not in ", "and offline (HF_HUB_OFFLINE)"]),
        (["prepare", "--max-length", "2"], ["param max_length must be a whole number from 3 to 512", "got 2"]),
        (["train", "nonsense"], ["unknown phase 'nonsense': choose one of baseline, mtl, mtl_embed, specialist"]),
        (["train", "baseline", "--task", "imdb"], ["unknown task 'imdb'"]),
        (["train", "baseline", "--mode", "half"], ["unknown mode 'half'"]),
        (["train", "mtl", "--task", "sst"], ["mtl trains sst, quora and sts in one model", "--task"]),
        (["train", "specialist", "--mode", "pretrain"], ["--mode pretrain is for baseline runs"]),
        (["train", "mtl", "--surgery", "magic"], ["unknown surgery 'magic': choose one of none, pcgrad"]),
        (["train", "mtl", "--lr", "-1"], ["param lr must be positive, got -1.0"]),
        (["train", "mtl", "--batch-size", "0"], ["param batch_size must be positive, got 0"]),
        (["train", "mtl", "--lr", "nan"], ["param lr must be a finite number, got nan"]),
        (["train", "mtl", "--params", "missing.yaml"], ["missing.yaml: params file not found"]),
        (["evaluate", "mtl", "--params", "missing.yaml"], ["missing.yaml: params file not found"]),
        (["report", "--params", "missing.yaml"], ["missing.yaml: params file not found"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, args, fragments):
    assert_one_line_error(cli(*args, cwd=tmp_path), *fragments)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, fragments",
    [
        # an option or --set that none of the runs reads: it would change nothing
        (["train", "mtl", "--token-alignment"], ["token_alignment does not apply to mtl (token_alignment: "]),
        (["train", "mtl", "--set", "contrastive=mnrl"], ["contrastive does not apply to mtl ("]),
        (["train", "baseline", "--mode", "pretrain", "--head-lr", "0.1"], ["head_lr does not apply to baseline-sst-pretrain"]),
        # a one-task run has no gradients to combine: its surgery typo is refused as such, not passed over
        (["train", "specialist", "--task", "sts", "--surgery", "magic"], ["surgery does not apply to specialist-sts"]),
        (["train", "specialist", "-S", "pooling=mean", "-S", "surgery=pcgrad"],
         ["surgery, pooling do not apply to specialist-sst, specialist-quora, specialist-sts"]),
        (["train", "mtl", "--lr", "1e-4", "--set", "lr=2e-4"], ["lr given both as an option and with --set: give it once"]),
        (["train", "mtl", "--set", "specialist.sst.lr=1e-4"], ["--set specialist.sst.lr: sections belong in params.yaml"]),
        (["train", "mtl", "--set", "lr"], ["--set 'lr': expected key=value"]),
        (["train", "mtl", "--set", "lrr=1"], ["--set lrr: unknown setting"]),
        (["train", "mtl", "--set", "lr=.nan"], ["param lr must be a finite number, got nan"]),
        (["params", "mtl", "--set", "token_alignment=false"], ["token_alignment does not apply to mtl"]),
    ],
)
def test_set_and_options_are_refused_where_they_would_change_nothing(cli, tmp_path, args, fragments):
    assert_one_line_error(cli(*args, cwd=tmp_path), *fragments)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("lr: abc\n", ["param lr must be a number, got 'abc'"]),
        ("compile: 1\n", ["param compile must be true or false, got 1"]),
        ("specialst:\n  lr: 1.0e-3\n", ["params.yaml: unknown section specialst"]),
        ("surgery: pcgrad\n", ["params.yaml: param surgery is set per section"]),
        ("mtl:\n  contrastive: mnrl\n", ["params.yaml: param contrastive in section mtl is read by none of its runs"]),
    ],
)
@pytest.mark.parametrize("command", [["train", "mtl"], ["params"], ["evaluate", "mtl"], ["report"], ["prepare"]])
def test_a_bad_params_yaml_is_named_by_every_command(cli, tmp_path, text, fragments, command):
    (tmp_path / "params.yaml").write_text(text)
    assert_one_line_error(cli(*command, cwd=tmp_path), *fragments)
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]


def test_params_shows_each_run_s_settings_with_meaning_and_source(cli, tmp_path):
    (tmp_path / "params.yaml").write_text("lr: 3.0e-4\nspecialist:\n  sts:\n    epochs: 2\n")
    result = cli("params", "specialist", "--task", "sts", "--set", "dropout=0.1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "# specialist-sts: specialist, specialist.sts over the top level"
    by_key = {line.split(":")[0]: line for line in lines[1:]}
    assert re.fullmatch(r"lr: +0\.0003 +# peak learning rate \(params\)", by_key["lr"])
    assert re.fullmatch(r"epochs: +2 +# .* \(specialist\.sts\)", by_key["epochs"])
    assert re.fullmatch(r"dropout: +0\.1 +# dropout before each task head \(set\)", by_key["dropout"])
    assert re.fullmatch(r"batch_size: +32 +# .* \(default\)", by_key["batch_size"])  # not in this params.yaml
    # only what the run reads: no cross-encoder pooling, no quora-only settings, no gist_* (contrastive: none)
    assert {"pooling", "token_alignment", "online_contrastive", "gist_margin", "surgery"}.isdisjoint(by_key)
    assert {"contrastive", "match_multitask_steps", "head_lr"} <= set(by_key)


def test_params_lists_one_block_per_run_and_every_setting_without_a_phase(cli, tmp_path):
    result = cli("params", "specialist", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.findall(r"^# (\S+):", result.stdout, re.M) == ["specialist-sst", "specialist-quora", "specialist-sts"]
    # the quora specialist's own section, and its online contrastive margin (used: its weight is 0.1)
    quora = result.stdout.split("# specialist-quora")[1].split("# specialist-sts")[0]
    assert re.search(r"^head_lr: +0\.003 .*\(specialist\.quora\)$", quora, re.M)
    assert re.search(r"^online_contrastive_margin: ", quora, re.M)
    everything = cli("params", cwd=tmp_path)
    assert everything.returncode == 0, everything.stderr
    from optiminbert.settings import SCHEMA

    assert [line.split(":")[0] for line in everything.stdout.splitlines()] == list(SCHEMA)


def test_params_reads_the_params_file_given(cli, tmp_path):
    (tmp_path / "other.yaml").write_text("mtl:\n  surgery: pcgrad\n")
    result = cli("params", "mtl", "--params", "other.yaml", "-S", "seed=7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^surgery: +pcgrad .*\(mtl\)$", result.stdout, re.M)
    assert re.search(r"^seed: +7 .*\(set\)$", result.stdout, re.M)


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
def test_structural_data_defects_stop_prepare_before_anything_is_written(cli, tmp_path, tiny_data, name, content, fragments):
    data = _damaged_copy(tiny_data, tmp_path, name, content)
    work = tmp_path / "work"
    work.mkdir()
    assert_one_line_error(cli("prepare", "--data", str(data), cwd=work), *fragments)
    assert list(work.iterdir()) == []


def test_a_corrupt_checkpoint_is_named(cli, tmp_path, tiny_checkpoint):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    work = tmp_path / "work"
    work.mkdir()
    result = cli("train", "mtl", "--device", "cpu", "--checkpoint", str(broken), cwd=work)
    assert_one_line_error(result, "model.safetensors")
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "mtl", "--epochs", "two"], "Invalid value for '--epochs'"),  # once Typer's framed, multi-line box
        (["train", "mtl", "--bogus"], "No such option: --bogus (see optiminbert train --help)"),
        (["nonsense"], "No such command 'nonsense'"),
    ],
)
def test_usage_errors_are_one_line_too(cli, tmp_path, args, message):
    assert_one_line_error(cli(*args, cwd=tmp_path), message)
    assert list(tmp_path.iterdir()) == []


def test_version(cli, tmp_path):
    result = cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and re.fullmatch(r"optiminbert \d+\.\d+\.\d+\n", result.stdout)
