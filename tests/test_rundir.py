"""A trained run on disk (rundir.py): it loads back into a model that predicts exactly as the one
training kept in memory, its encoder loads in transformers, evaluation reuses its dev outputs,
run.json records only the settings the run used, and a damaged run is refused in one line."""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path
from unittest import mock

import pytest
import torch
import transformers
from conftest import tiny_run
from safetensors.torch import load_file, save_file

from optiminbert import evaluation
from optiminbert.errors import UserError
from optiminbert.inference import predict
from optiminbert.locks import directory_lock
from optiminbert.prepared import TaskSplit, split_path
from optiminbert.rundir import DEV_OUTPUTS, HEADS, RUN_JSON, RunDir
from optiminbert.runtime import Runtime
from optiminbert.settings import SCHEMA, resolve
from optiminbert.training import train_run

CPU = Runtime(torch.device("cpu"), None)


def dev_split(prepared: Path, task: str) -> TaskSplit:
    return TaskSplit.load(split_path(prepared, task, "dev"))


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(f.relative_to(directory)): f.read_bytes() for f in sorted(directory.rglob("*")) if f.is_file()}


pytestmark = pytest.mark.usefixtures("one_thread")


# -- a saved run loads back -----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["finetuned_run", "joint_run", "aligned_run"])
def test_a_saved_run_predicts_exactly_like_the_in_memory_model(which: str, request, tiny_prepared: Path) -> None:
    run = request.getfixturevalue(which)
    loaded, meta = RunDir(run.dir).load()
    assert not loaded.training and meta["tasks"] == list(run.model.tasks) and meta["pairs"] == run.model.pairs
    for task in meta["tasks"]:
        split = dev_split(tiny_prepared, task)
        ours = predict(run.model, task, split, CPU, 16, 32)
        assert torch.equal(predict(loaded, task, split, CPU, 16, 32), ours), task


def test_transformers_loads_the_saved_encoder(finetuned_run, tiny_prepared: Path) -> None:
    hf = transformers.BertModel.from_pretrained(finetuned_run.dir / "encoder", attn_implementation="eager").eval()
    split = dev_split(tiny_prepared, "quora")  # pairs: padding and both segment ids
    batch = split.batch(torch.arange(16), "cross", 32)
    ours = finetuned_run.model.encoder.eval()
    with torch.no_grad():
        theirs = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"])
        mine = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert batch["attention_mask"].min() == 0 and batch["token_type_ids"].max() == 1
    real = batch["attention_mask"].bool()  # padded positions carry no meaning (ours are zeros on CPU)
    torch.testing.assert_close(mine.last_hidden_state[real], theirs.last_hidden_state[real], rtol=0, atol=1e-4)
    torch.testing.assert_close(mine.pooler_output, theirs.pooler_output, rtol=0, atol=1e-4)


@pytest.mark.parametrize("which", ["finetuned_run", "joint_run", "frozen_run"])
def test_evaluation_reuses_the_trained_dev_outputs_at_the_same_precision(which: str, request, tiny_prepared: Path, tiny_params) -> None:
    """A run saves its selected epoch's dev outputs; evaluation scores only test with them,
    unless it runs at another precision than training did."""
    run = request.getfixturevalue(which)
    saved = load_file(run.dir / DEV_OUTPUTS)
    loaded, meta = RunDir(run.dir).load()
    assert sorted(saved) == sorted(meta["tasks"]) and meta["dev_outputs_precision"] == "fp32"
    for task in meta["tasks"]:
        expected = predict(loaded, task, dev_split(tiny_prepared, task), CPU, 16, 32)
        torch.testing.assert_close(saved[task], expected, rtol=0, atol=1e-5)
    for precision, scored_splits in (("fp32", {"test"}), ("bf16", {"dev", "test"})):
        with mock.patch.object(evaluation, "predict", wraps=evaluation.predict) as scored:
            results = evaluation.score_run(RunDir(run.dir), tiny_prepared, tiny_params.replace(precision=precision))
        assert {call.args[2].split for call in scored.call_args_list} == scored_splits
        if precision == "fp32":
            assert all(torch.equal(results[t]["dev"][1], saved[t]) for t in meta["tasks"])


# -- run.json records what the run used ---------------------------------------------------------

ALWAYS = {"checkpoint", "device", "precision", "seed", "max_length", "lr", "epochs", "batch_size", "dropout"}
NEVER = {"data", "cfimdb_max_length", "members"}  # read by the steps that train nothing


@pytest.mark.parametrize(
    "tasks, pairs, frozen, recorded, not_recorded",
    [
        # cross-encoded: its heads read the pooling; no siamese head to align tokens for
        (["quora"], "cross", False, {"pooling", "head_lr", "freeze_word_embeddings"},
         {"token_alignment", "online_contrastive", "contrastive", "surgery"}),
        # siamese: the alignment features and the paraphrase loss's weight; contrastive 'none'
        # leaves its own settings out, a weight of 0 the margin, one task the surgery
        (["quora"], "siamese", False, {"token_alignment", "online_contrastive", "contrastive"},
         {"pooling", "mnrl_scale", "gist_temperature", "contrastive_sts_min", "online_contrastive_margin", "surgery"}),
        # the frozen encoder: nothing about fine-tuning it
        (["sst"], "cross", True, {"pooling"}, {"head_lr", "freeze_word_embeddings", "freeze_layers", "compile", "token_alignment"}),
    ],
    ids=["cross", "siamese", "frozen"],
)
def test_run_json_records_only_the_settings_the_run_uses(tiny_params, tiny_prepared: Path, tmp_path: Path,
                                                         tasks, pairs, frozen, recorded, not_recorded) -> None:
    run = tiny_run(tasks, pairs, frozen=frozen)
    settings = resolve({**tiny_params, "epochs": 1, "steps_per_epoch": 1}, shape=run.shape)
    train_run(run, settings, tiny_prepared, tmp_path / "run")
    meta = RunDir(tmp_path / "run").meta()
    kept = set(meta["settings"])
    assert ALWAYS | recorded <= kept
    assert not (NEVER | not_recorded) & kept
    assert meta["settings"] == {k: settings[k] for k in settings.used}
    # Read back: what it recorded, the schema's defaults for the rest; and it loads and runs.
    back = RunDir(tmp_path / "run").settings(meta)
    assert set(back.used) == kept and all(back[k] == settings[k] for k in kept)
    assert all(back[k] == SCHEMA[k].default for k in SCHEMA if k not in kept)
    model, _ = RunDir(tmp_path / "run").load()
    assert predict(model, tasks[0], dev_split(tiny_prepared, tasks[0]), CPU, 16, 32).isfinite().all()


# -- a damaged run is refused, in one line naming the file ----------------------------------------


def drop_bias(heads: dict) -> str:
    key = next(k for k in heads if k.endswith(".bias"))
    del heads[key]
    return f"missing {key}"


def add_head(heads: dict) -> str:
    heads["heads.quora.weight"] = torch.zeros(1, 32)
    return "unexpected heads.quora.weight"


def reshape_weight(heads: dict) -> str:
    key = next(k for k in heads if k.endswith(".weight"))
    heads[key] = torch.zeros(heads[key].shape[0] + 1, *heads[key].shape[1:])
    return f"wrong shape {key}"


@pytest.fixture
def damaged(finetuned_run, tmp_path: Path) -> Path:
    """A copy of a trained run, to damage."""
    return Path(shutil.copytree(finetuned_run.dir, tmp_path / "run"))


def load_error(directory: Path) -> str:
    before = snapshot(directory)
    with pytest.raises(UserError) as caught:
        RunDir(directory).load()
    assert snapshot(directory) == before  # nothing written, nothing removed
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("damage", [drop_bias, add_head, reshape_weight], ids=["missing", "extra", "shape"])
def test_a_heads_file_that_does_not_match_the_model_is_refused(damaged: Path, damage) -> None:
    heads = load_file(damaged / HEADS)
    problem = damage(heads)
    save_file(heads, damaged / HEADS)
    assert load_error(damaged) == f"{damaged / HEADS}: does not match the run's model ({problem}); train the run again"


def test_an_unreadable_heads_file_is_refused(damaged: Path) -> None:
    (damaged / HEADS).write_bytes((damaged / HEADS).read_bytes()[:50])
    message = load_error(damaged)
    assert message.startswith(f"{damaged / HEADS}: unreadable heads file (") and message.endswith("; train the run again")


@pytest.mark.parametrize(
    "content, problem",
    [
        (b'{"tasks": ["sst"], "pairs": "cr', r"not a readable run record \(.+\); train the run again"),
        (b"\xff\xfe not text", r"not a readable run record \(.+\); train the run again"),
        (b'{"tasks": ["sst"], "pairs": "cross", "settings": {}}', r"not a run record of this version \(no history\); train the run again"),
        (b"[1, 2]", r"not a run record of this version \(no tasks, pairs, settings, history\); train the run again"),
    ],
    ids=["truncated", "not-utf8", "no-history", "not-a-mapping"],
)
def test_an_unreadable_run_json_is_refused(damaged: Path, content: bytes, problem: str) -> None:
    (damaged / RUN_JSON).write_bytes(content)
    assert re.fullmatch(re.escape(f"{damaged / RUN_JSON}: ") + problem, load_error(damaged))


def test_a_directory_without_run_json_is_not_a_trained_run(damaged: Path) -> None:
    (damaged / RUN_JSON).unlink()
    assert load_error(damaged) == f"{damaged}: no trained model here (run.json missing); train it first"
    assert not RunDir(damaged).exists()


# -- a run is saved whole, by one writer ----------------------------------------------------------


def save_again(directory: Path, **patches) -> None:
    model, meta = RunDir(directory).load()
    settings = RunDir(directory).settings(meta)
    with mock.patch.multiple("optiminbert.rundir", **patches) if patches else contextlib.nullcontext():
        RunDir(directory).save(model, settings, meta["history"], load_file(directory / DEV_OUTPUTS), "fp32")


@pytest.mark.parametrize("failing", ["write_json_atomic", "write_safetensors_atomic"])
def test_a_save_cut_short_leaves_the_old_run_whole(damaged: Path, failing: str) -> None:
    """The old run.json once stayed beside a new encoder: evaluation mixed two runs."""
    before = snapshot(damaged)
    with pytest.raises(OSError, match="injected"):
        save_again(damaged, **{failing: mock.Mock(side_effect=OSError(28, "injected"))})
    assert snapshot(damaged) == before
    assert [p.name for p in damaged.parent.iterdir()] == [damaged.name]  # no temporary left


def test_a_new_save_replaces_the_whole_run(damaged: Path) -> None:
    (damaged / "left-from-an-older-run.txt").write_text("stale")
    save_again(damaged)
    assert not (damaged / "left-from-an-older-run.txt").exists()
    RunDir(damaged).load()


def test_a_second_run_into_a_directory_in_use_is_refused_before_any_work(tiny_params, tiny_prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with directory_lock(out), pytest.raises(UserError, match=rf"^{re.escape(str(out))} is in use by another run \(pid \d+\)"):
        with mock.patch("optiminbert.training.build_model", side_effect=AssertionError("worked before refusing")):
            train_run(tiny_run(["sst"], "cross"), tiny_params, tiny_prepared, out)
    assert list(tmp_path.iterdir()) == []
