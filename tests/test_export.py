"""Models users take away (export.py): a siamese run loads in sentence-transformers (the test
oracle) and gives our sentence embeddings; every export's encoder loads in transformers, its
heads are ours key by key, and its model card holds the run's dev scores and settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from conftest import assert_one_line_error
from safetensors.torch import load_file

from optiminbert.batching import pad
from optiminbert.export import export_run
from optiminbert.rundir import HEADS, RunDir
from optiminbert.tokenizer import load_tokenizer

SENTENCES = ["A gorgeous, witty, seductive movie.", "The plot is thin.", "How do I learn Python quickly?"]

pytestmark = pytest.mark.usefixtures("one_thread")


@torch.no_grad()
def our_embeddings(run_dir: Path) -> torch.Tensor:
    model, meta = RunDir(run_dir).load()
    tokenizer = load_tokenizer(RunDir(run_dir).encoder_path, meta["settings"]["max_length"])
    batch = pad([e.ids for e in tokenizer.encode_batch(SENTENCES)])
    hidden = model.encoder(batch["input_ids"], batch["attention_mask"]).last_hidden_state
    return model.embedding(hidden, batch["attention_mask"])


def test_a_siamese_run_is_a_sentence_transformers_model_with_our_embeddings(joint_run, tmp_path: Path) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    assert export_run(joint_run.dir, tmp_path / "export", "mtl_embed")
    loaded = sentence_transformers.SentenceTransformer(str(tmp_path / "export"), device="cpu")
    theirs = loaded.encode(SENTENCES, convert_to_tensor=True)
    torch.testing.assert_close(theirs, our_embeddings(joint_run.dir), rtol=0, atol=1e-5)
    # the trained layer, not the identity it starts from, is what they load
    assert not torch.allclose(load_file(tmp_path / "export/2_Dense/model.safetensors")["linear.weight"], torch.eye(theirs.shape[1]))


def test_every_export_holds_the_encoder_heads_and_a_model_card(finetuned_run, tmp_path: Path) -> None:
    assert not export_run(finetuned_run.dir, tmp_path / "export", "baseline-sst-finetune")  # cross-encoded
    out = tmp_path / "export"
    hf = transformers.AutoModel.from_pretrained(out)
    ours = load_file(finetuned_run.dir / "encoder/model.safetensors")
    assert all(torch.equal(hf.state_dict()[k], v) for k, v in ours.items() if k in hf.state_dict())
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ids = load_tokenizer(finetuned_run.dir / "encoder", 32).encode("a gorgeous movie").ids
    assert tokenizer("a gorgeous movie")["input_ids"] == ids  # the same token ids as ours
    assert load_file(out / HEADS).keys() == load_file(finetuned_run.dir / HEADS).keys()
    card = (out / "README.md").read_text()
    meta = RunDir(finetuned_run.dir).meta()
    kept = max(meta["history"], key=lambda h: (h["selection"], -h["epoch"]))
    assert f"| sst | {kept['dev']['sst']:.4f} |" in card and "`ids-sst-train.csv`" in card
    assert json.dumps(meta["settings"], indent=2, sort_keys=True) in card
    assert not (out / "modules.json").exists()


def test_the_cli_exports_replaces_an_earlier_export_and_refuses_other_folders(cli, finetuned_run, tmp_path: Path) -> None:
    out = tmp_path / "export"
    for _ in range(2):  # the second replaces the first, whole
        result = cli("export", finetuned_run.dir, "--to", out, cwd=tmp_path)
        assert result.returncode == 0 and result.stdout == f"{finetuned_run.dir} exported to {out} as a Hugging Face model\n"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert_one_line_error(cli("export", finetuned_run.dir, "--to", tmp_path / "mine", cwd=tmp_path),
                          f"{tmp_path / 'mine'} exists and is not an earlier export")
    assert_one_line_error(cli("export", "specialist", "--to", tmp_path / "new", cwd=tmp_path),
                          "specialist has 3 runs (specialist-sst, specialist-quora, specialist-sts): choose one with --task")
