"""Data-parallel training: 2 gloo ranks launched by torchrun take the same steps as one process
on the same global batches, with and without PCGrad."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import train_tiny
from safetensors.torch import load_file

from optiminbert.phases import STUDY_TASKS

BIN = Path(sys.executable).parent


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return {**load_file(run_dir / "heads.safetensors"), **load_file(run_dir / "encoder" / "model.safetensors")}


@pytest.mark.skipif(shutil.which("torchrun", path=str(BIN)) is None, reason="torchrun not installed")
@pytest.mark.parametrize("surgery", ["none", "pcgrad"])
def test_two_gloo_ranks_equal_one_process(tmp_path, tiny_prepared, tiny_params, tiny_checkpoint, one_thread, surgery):
    # No dropout anywhere: one process and two ranks draw different masks; all else must agree.
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_checkpoint, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (checkpoint / "config.json").write_text(json.dumps(config))
    p = tiny_params.replace(checkpoint=str(checkpoint), epochs=2, steps_per_epoch=3, dropout=0.0, surgery=surgery)
    train_tiny(p, STUDY_TASKS, "siamese", tiny_prepared, tmp_path / "single", name="single")

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    os.symlink(tiny_prepared, project / "data" / "prepared")
    keys = ("checkpoint", "device", "precision", "batch_size", "eval_batch_size", "lr", "max_length", "epochs",
            "steps_per_epoch", "dropout")
    (project / "params.yaml").write_text(yaml.safe_dump({k: p[k] for k in keys} | {"mtl_embed": {"surgery": surgery}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "optiminbert"), "train", "mtl_embed"]
    result = subprocess.run(launch, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    single, ranks = _weights(tmp_path / "single"), _weights(project / "models" / "mtl_embed")
    assert single.keys() == ranks.keys()
    for key in single:
        torch.testing.assert_close(ranks[key], single[key], rtol=1e-5, atol=1e-6, msg=key)
    start = load_file(Path(p["checkpoint"]) / "model.safetensors")
    moved = sum(not torch.equal(start[k], single[k]) for k in start if k in single)
    assert moved > 0  # the runs trained: agreeing on untouched weights would prove nothing
