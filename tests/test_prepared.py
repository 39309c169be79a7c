"""The prepared (tokenized) data (prepared.py): byte-identical on every run, over-long texts cut
to the length asked for and counted, the cache written whole and checked when read back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from unittest import mock

import pytest
from conftest import tiny_run

from optiminbert.atomic import torch_save_atomic
from optiminbert.data import TASKS
from optiminbert.errors import UserError
from optiminbert.prepared import MANIFEST, TaskSplit, check_tokenizer, prepare, split_path
from optiminbert.training import train_run


def test_prepare_writes_the_same_bytes_every_time(tiny_data: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """DVC hashes data/prepared: a re-run that changed a byte would re-run every stage after it."""
    for run in ("first", "second"):
        prepare(tiny_data, tmp_path / run, str(tiny_checkpoint), {task: 32 for task in TASKS})
    first = sorted(p.name for p in (tmp_path / "first").iterdir())
    assert first == sorted(p.name for p in (tmp_path / "second").iterdir()) and any(n.endswith(".pt") for n in first)
    for name in first:
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes(), name


def test_overlong_texts_are_truncated_and_counted(tiny_prepared: Path) -> None:
    summary = json.loads((tiny_prepared / "summary.json").read_text())
    cfimdb = TaskSplit.load(split_path(tiny_prepared, "cfimdb", "train"))
    at_limit = int((cfimdb.lengths >= 32).sum())  # the fixture prepares with max_length 32
    assert summary["cfimdb-train"]["truncated"] == at_limit > 0  # reviews run to hundreds of tokens
    assert int(cfimdb.lengths.max()) == 32


# -- the cache is whole, checked, and tied to its tokenizer ---------------------------------------


@pytest.fixture
def cache(tiny_prepared: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_prepared, tmp_path / "prepared"))


def load_error(path: Path) -> str:
    with pytest.raises(UserError) as refused:
        TaskSplit.load(path)
    return str(refused.value)


def test_a_changed_split_file_is_refused(cache: Path) -> None:
    path = split_path(cache, "sst", "dev")
    content = bytearray(path.read_bytes())
    content[-30] ^= 1
    path.write_bytes(bytes(content))
    assert load_error(path) == (
        f"{path}: changed or damaged since it was prepared (its checksum differs); run `dvc repro prepare` (or `optiminbert prepare`) again"
    )


def test_a_cache_without_its_manifest_is_refused(cache: Path) -> None:
    (cache / MANIFEST).unlink()
    assert load_error(split_path(cache, "sst", "dev")).startswith(f"{cache / MANIFEST} not found: the prepared data is incomplete")


def test_a_prepare_cut_short_leaves_the_old_cache_whole(tiny_data: Path, tiny_checkpoint: Path, cache: Path) -> None:
    """A kill during prepare once left SST from the new data beside the other tasks from the old."""
    before = {p.name: p.read_bytes() for p in cache.iterdir()}
    saves = []

    def third_save_fails(obj, path):
        saves.append(path)
        if len(saves) == 3:
            raise OSError(28, "injected")
        torch_save_atomic(obj, path)

    with mock.patch("optiminbert.prepared.torch_save_atomic", third_save_fails), pytest.raises(OSError, match="injected"):
        prepare(tiny_data, cache, str(tiny_checkpoint), {task: 32 for task in TASKS})
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before
    assert [p.name for p in cache.parent.iterdir()] == ["prepared"]


def test_a_checkpoint_with_another_vocabulary_is_refused(cache: Path, tiny_checkpoint: Path, tiny_params, tmp_path: Path) -> None:
    """Same size, another order: without the check the ids would silently index other embeddings."""
    other = Path(shutil.copytree(tiny_checkpoint, tmp_path / "other"))
    vocab = (other / "vocab.txt").read_text().split("\n")
    (other / "vocab.txt").write_text("\n".join(vocab[:5] + vocab[5:][::-1]))
    check_tokenizer(cache, tiny_checkpoint)
    with pytest.raises(UserError) as refused:
        train_run(tiny_run(["sst"], "cross"), tiny_params.replace(checkpoint=str(other)), cache, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert str(refused.value) == (
        f"{cache} was tokenized with another vocabulary than checkpoint {other}: "
        "prepare it with this checkpoint (`dvc repro prepare`, or `optiminbert prepare`)"
    )
