"""Scoring new text (predict.py and `optiminbert predict`): reading a CSV/TSV of inputs, which run
answers a task, and predictions that are the trained model's own."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error

from optiminbert.data import TASKS
from optiminbert.errors import UserError
from optiminbert.evaluation import score_run
from optiminbert.paths import MODELS
from optiminbert.predict import Predictor, predict_texts, read_inputs, run_dir_for
from optiminbert.rundir import RunDir
from optiminbert.settings import resolve_step


@pytest.fixture(scope="module")
def sst_run(trained, one_thread) -> Path:
    """A siamese SST run (one epoch of the tiny model): what `predict RUN_DIR --task sst` loads."""
    return trained("predict-sst", ["sst"], "siamese", epochs=1).dir


# -- reading inputs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, ids, texts",
    [
        ("in.csv", 'id,sentence\na,A good film .\nb,"Dull, slow and long ."\n', ["a", "b"], [("A good film .",), ("Dull, slow and long .",)]),
        # A one-column header such as "sentence" once had one of its letters sniffed as the separator.
        ("one.csv", "sentence\nA good film .\nDull and slow .\n", ["0", "1"], [("A good film .",), ("Dull and slow .",)]),
        ("in.tsv", "id\tsentence\nx\tA good film , really .\n", ["x"], [("A good film , really .",)]),
        ("bom.csv", "\ufeffid,sentence\n7,Fine .\n", ["7"], [("Fine .",)]),  # Excel's UTF-8 byte order mark
    ],
)
def test_read_inputs_takes_csv_or_tsv_with_optional_ids(tmp_path, name, content, ids, texts):
    (tmp_path / name).write_text(content, encoding="utf-8")
    assert read_inputs(tmp_path / name, "sst") == (ids, texts)


def test_read_inputs_reads_pairs_in_column_order(tmp_path):
    (tmp_path / "pairs.csv").write_text("sentence2,sentence1\nHow to cook rice?,How do I cook rice?\n")
    assert read_inputs(tmp_path / "pairs.csv", "quora") == (["0"], [("How do I cook rice?", "How to cook rice?")])


@pytest.mark.parametrize(
    "content, message",
    [
        ('sentence\nA good film .\n""\n', "bad.csv row 2: empty sentence$"),
        ("sentence\n", "bad.csv: no rows to score below the header$"),
        ("text\nA good film .\n", "bad.csv: needs column(s) sentence for task sst; found text$"),
        ('sentence\n"A good film .\n', "bad.csv: cannot read as CSV"),
        # an unquoted comma: once read with the text's first words as the id, exit 0
        ("id,sentence\n1,A gorgeous, witty movie.\n", "bad.csv row 1: 3 fields, the header has 2; quote a text that holds the separator$"),
    ],
)
def test_read_inputs_names_what_is_wrong(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(UserError, match=re.escape(message).replace(r"\$", "$")):
        read_inputs(tmp_path / "bad.csv", "sst")


def test_a_pair_row_short_of_its_second_sentence_is_named(tmp_path):
    (tmp_path / "pairs.csv").write_text("sentence1,sentence2\nHow do I cook rice?,How to cook rice?\nonly one\n")
    with pytest.raises(UserError, match=r"pairs.csv row 2: empty sentence2$"):
        read_inputs(tmp_path / "pairs.csv", "quora")


# -- which run answers ---------------------------------------------------------------------------


def test_run_dir_for_a_phase_is_its_run_for_the_task(tmp_path):
    assert run_dir_for("specialist", "quora") == MODELS / "specialist/quora"
    assert run_dir_for("mtl-embed", "sst") == MODELS / "mtl_embed"
    assert run_dir_for("baseline", "cfimdb") == MODELS / "baseline/cfimdb-finetune"  # the fine-tuned one
    assert run_dir_for(str(tmp_path), "sts") == tmp_path  # a directory is taken as is
    with pytest.raises(UserError, match=re.escape("unknown task 'foo'")):
        run_dir_for(str(tmp_path), "foo")
    with pytest.raises(UserError, match=re.escape("unknown phase 'nonsense'")):
        run_dir_for("nonsense", "sst")


# -- predictions ---------------------------------------------------------------------------------


def test_predictions_are_the_trained_models_own(sst_run, tiny_prepared):
    # New text scored like the dev set it was evaluated on: same tokens, same outputs.
    settings = resolve_step({"device": "cpu", "precision": "fp32", "eval_batch_size": 16}, "evaluate")
    data, raw = score_run(RunDir(sst_run), tiny_prepared, settings)["sst"]["dev"]
    frame = predict_texts(sst_run, "sst", data.ids, data.texts, settings)
    assert list(frame.columns) == ["id", "prediction", "label", "probability"]
    assert frame["id"].tolist() == data.ids
    assert np.array_equal(frame["prediction"].to_numpy(), TASKS["sst"].kind.predictions(raw))
    assert frame["label"].tolist() == [TASKS["sst"].class_names[p] for p in frame["prediction"]]


def test_predict_from_text_and_csv(cli, tmp_path, sst_run):
    result = cli("predict", sst_run, "--task", "sst", "--text", "A good film .", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.match(r"\s*id\s+prediction\s+label\s+probability\n\s*1\s+[0-4]\s", result.stdout)
    (tmp_path / "in.csv").write_text("id,sentence\na,A good film .\nb,\"Dull, slow and long .\"\n")
    result = cli("predict", sst_run, "--task", "sst", "--csv", "in.csv", "--out", "out.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wrote 2 predictions to out.csv"
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "id,prediction,label,probability" and [line.split(",")[0] for line in lines[1:]] == ["a", "b"]


def test_predict_scores_pairs_with_a_joint_run(cli, tmp_path, joint_run):
    result = cli("predict", joint_run.dir, "--task", "quora", "--text", "How do I cook rice?", "--text2", "How to cook rice?",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.match(r"\s*id\s+prediction\s+probability\n\s*1\s+[01]\s+[01]\.\d+\s*$", result.stdout)
    (tmp_path / "pairs.tsv").write_text("id\tsentence1\tsentence2\np\tA man plays .\tA man sings .\n")
    result = cli("predict", joint_run.dir, "--task", "sts", "--csv", "pairs.tsv", "--out", "sts.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header, row = (tmp_path / "sts.csv").read_text().splitlines()
    assert header == "id,prediction" and row.startswith("p,") and 0 <= float(row.split(",")[1]) <= 5


@pytest.mark.parametrize(
    "content, fragments",
    [
        ('sentence\nA good film .\n""\n', ["bad.csv row 2: empty sentence"]),
        ("sentence\n", ["bad.csv", "no rows"]),
        ("text\nA good film .\n", ["needs column(s) sentence", "found text"]),
        ('sentence\n"A good film .\n', ["bad.csv: cannot read as CSV"]),
    ],
)
def test_predict_names_what_is_wrong_with_a_csv_and_writes_nothing(cli, tmp_path, sst_run, content, fragments):
    (tmp_path / "bad.csv").write_text(content)
    result = cli("predict", sst_run, "--task", "sst", "--csv", "bad.csv", "--out", "out.csv", cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--task", "sst", "--text", "a", "--text2", "b"], "task sst scores single sentences: --text2 is for the pair tasks quora and sts"),
        (["--task", "sst", "--text", "a", "--csv", "in.csv"], "give --csv or --text, not both"),
        (["--task", "quora", "--text", "a"], "task quora needs --text and --text2, or --csv"),
        (["--task", "sst"], "task sst needs --text, or --csv"),
        (["--task", "foo", "--text", "a"], "unknown task 'foo'"),
        (["--task", "sst", "--text", "   "], "--text holds no text"),  # as an empty CSV field is refused
    ],
)
def test_predict_rejects_unknown_or_contradictory_options(cli, tmp_path, sst_run, args, fragment):
    (tmp_path / "in.csv").write_text("sentence\nA good film .\n")
    assert_one_line_error(cli("predict", sst_run, *args, cwd=tmp_path), fragment)


def test_predict_out_that_is_a_directory_is_named(cli, tmp_path, sst_run):
    # It once failed after scoring, in a traceback naming a temporary file.
    (tmp_path / "out").mkdir()
    result = cli("predict", sst_run, "--task", "sst", "--text", "A good film .", "--out", "out", cwd=tmp_path)
    assert_one_line_error(result, "cannot write out: it is a directory")
    assert list((tmp_path / "out").iterdir()) == []


def test_predict_rejects_a_task_the_run_was_not_trained_for(cli, tmp_path, sst_run):
    result = cli("predict", sst_run, "--task", "sts", "--text", "a", "--text2", "b", cwd=tmp_path)
    assert_one_line_error(result, f"{sst_run} was trained for sst, not sts")


def test_predict_by_phase_name_reads_models_in_the_working_directory(cli, tmp_path):
    # nothing trained here: the phase's run directory is named
    result = cli("predict", "specialist", "--task", "sst", "--text", "A good film .", cwd=tmp_path)
    assert_one_line_error(result, "models/specialist/sst: no trained model here (run.json missing)")


def test_a_predictor_loads_once_predicts_often_and_leaves_the_process_alone(sst_run, monkeypatch):
    # A library user's process keeps its own threads and allocator: nothing here may change them.
    import torch

    from optiminbert import runtime

    def forbidden(*args):
        raise AssertionError("a Predictor changed a process-wide setting")

    monkeypatch.setattr(torch, "set_num_threads", forbidden)
    monkeypatch.setattr(runtime, "keep_freed_memory", forbidden)
    predictor = Predictor(sst_run, device="cpu", precision="fp32")
    first = predictor.predict("sst", ["A good film .", "Dull and slow ."])
    again = predictor.predict("sst", [("A good film .",)], ids=["x"])
    assert list(first.columns) == ["id", "prediction", "label", "probability"] and list(first["id"]) == ["0", "1"]
    assert again.iloc[0].tolist()[1:] == first.iloc[0].tolist()[1:]
    with pytest.raises(UserError, match="trained for sst, not quora"):
        predictor.predict("quora", [("a", "b")])
    with pytest.raises(UserError, match="task sst scores single texts: give 1 text"):
        predictor.predict("sst", [("a", "b")])
