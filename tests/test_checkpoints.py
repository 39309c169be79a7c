"""Checkpoint names (checkpoints.py): a Hugging Face Hub name resolves through huggingface_hub's
cache, pinned revisions included; offline and not cached, it is one line naming the name and the
cache. Tested offline, with a cache filled the way huggingface_hub lays it out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from optiminbert.checkpoints import hub_checkpoint_dir, resolve_checkpoint
from optiminbert.errors import UserError
from optiminbert.model import BertModel

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def offline_cache(tmp_path: Path, tiny_checkpoint: Path, monkeypatch) -> Path:
    """``org/tiny-bert`` at COMMIT (its ``main``) in a Hub cache; no network is ever asked."""
    cache = tmp_path / "hub"
    repo = cache / "models--org--tiny-bert"
    shutil.copytree(tiny_checkpoint, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_checkpoint_dir.cache_clear()
    yield cache
    hub_checkpoint_dir.cache_clear()


def test_a_hub_name_resolves_to_its_cached_snapshot(offline_cache: Path, tiny_checkpoint: Path) -> None:
    snapshot = offline_cache / "models--org--tiny-bert" / "snapshots" / COMMIT
    assert resolve_checkpoint("org/tiny-bert") == snapshot
    assert resolve_checkpoint(f"org/tiny-bert@{COMMIT}") == snapshot  # a pinned revision
    ours, cached = BertModel.from_pretrained(tiny_checkpoint), BertModel.from_pretrained("org/tiny-bert")
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), cached.state_dict().values()))


@pytest.mark.parametrize("name", ["org/not-cached", "bert-base-uncased", f"org/tiny-bert@{'f' * 40}"])
def test_a_name_not_in_the_cache_offline_is_one_line(offline_cache: Path, name: str) -> None:
    with pytest.raises(UserError) as refused:
        resolve_checkpoint(name)
    assert str(refused.value) == (
        f"checkpoint {name}: not in {offline_cache} and offline (HF_HUB_OFFLINE); "
        "download it once with network access, or give a local directory"
    )


@pytest.mark.parametrize("name", ["./no/such/dir", "/no/such/dir", "a/b/c"])
def test_a_path_that_is_not_a_directory_is_not_taken_for_a_hub_name(offline_cache: Path, name: str) -> None:
    with pytest.raises(UserError, match=r"not a directory \(expected a Hugging Face BERT directory, a Hub name or 'default'\)"):
        resolve_checkpoint(name)
