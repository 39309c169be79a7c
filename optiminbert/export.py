"""A trained run as a directory other tools load, with a model card.

Every export is a Hugging Face directory: the encoder (``config.json``, ``model.safetensors``, the
tokenizer's files) that ``transformers.AutoModel`` loads, the task heads (``heads.safetensors``,
keys as in ``MultitaskBert``) and ``README.md``, a model card with the run's dev scores, settings
and training data. A siamese run (``mtl_embed``, the specialists, the distilled student) is also
a sentence-transformers model: Transformer, then mean pooling, then the trained embedding layer
as a Dense module with no activation (``modules.json``), so ``SentenceTransformer(DIR).encode``
gives the embeddings its heads read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from optiminbert.atomic import atomic_dir, write_json_atomic, write_safetensors_atomic, write_text_atomic
from optiminbert.data import TASKS
from optiminbert.errors import UserError
from optiminbert.rundir import HEADS, RunDir

CARD = "README.md"
ST_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
]


def export_run(run_dir: str | Path, to: str | Path, name: str) -> bool:
    """Write run ``run_dir`` to ``to`` (replaced whole if it is an earlier export); True if it
    is a sentence-transformers model too."""
    run, to = RunDir(run_dir), Path(to)
    model, meta = run.load()
    if to.exists() and any(to.iterdir()) and not (to / HEADS).is_file():
        raise UserError(f"{to} exists and is not an earlier export: give a new directory")
    settings = meta["settings"]
    siamese = model.embedding is not None  # the shared sentence-embedding layer of siamese runs
    with atomic_dir(to) as tmp:
        # The run's own files, which load() has just checked: its encoder directory (weights,
        # config, tokenizer) and its heads.
        shutil.copytree(run.encoder_path, tmp, dirs_exist_ok=True)
        shutil.copyfile(run.path / HEADS, tmp / HEADS)
        if siamese:
            width = model.encoder.config.hidden_size
            write_json_atomic(ST_MODULES, tmp / "modules.json")
            write_json_atomic({"max_seq_length": settings["max_length"], "do_lower_case": False},
                              tmp / "sentence_bert_config.json")
            write_json_atomic({"word_embedding_dimension": width, "pooling_mode_mean_tokens": True,
                               "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False,
                               "pooling_mode_mean_sqrt_len_tokens": False}, tmp / "1_Pooling" / "config.json")
            linear = model.embedding.linear
            write_json_atomic({"in_features": linear.in_features, "out_features": linear.out_features, "bias": True,
                               "activation_function": "torch.nn.modules.linear.Identity"}, tmp / "2_Dense" / "config.json")
            write_safetensors_atomic({"linear.weight": linear.weight.detach().contiguous(),
                                      "linear.bias": linear.bias.detach().contiguous()}, tmp / "2_Dense" / "model.safetensors")
        write_text_atomic(model_card(name, meta, siamese), tmp / CARD)
    return siamese


def _selected(history: list[dict]) -> dict:
    """The epoch the run kept: the best selection score (max keeps the first of equals, as training does)."""
    return max(history, key=lambda h: h["selection"])


def model_card(name: str, meta: dict, siamese: bool) -> str:
    tasks, settings = meta["tasks"], meta["settings"]
    best = _selected(meta["history"])
    library = "sentence-transformers" if siamese else "transformers"
    header = [
        "---", f"library_name: {library}", "tags: [optiminbert, bert, multitask]",
        f"pipeline_tag: {'sentence-similarity' if siamese else 'feature-extraction'}", "---", "",
        f"# optiminbert: {name}", "",
        f"A BERT encoder fine-tuned by optiminbert on {', '.join(tasks)} ({meta['pairs']} pairs), from "
        f"checkpoint `{settings.get('checkpoint', '?')}`; the task heads are in `{HEADS}`.", "",
        f"## Dev scores (epoch {best['epoch']}, the one kept)", "",
        "| task | dev |", "|---|---|",
        *(f"| {task} | {score:.4f} |" for task, score in best["dev"].items()), "",
        "## Training data", "",
        *(f"- {task}: `{TASKS[task].filename('train')}` (CS224N layout)" for task in tasks if task in TASKS), "",
        "## Settings", "", "```json", json.dumps(settings, indent=2, sort_keys=True), "```", "",
        "## Use", "",
    ]
    if siamese:
        use = ["```python", "from sentence_transformers import SentenceTransformer",
               "embeddings = SentenceTransformer(\"THIS_DIRECTORY\").encode([\"A gorgeous, witty movie.\"])", "```"]
    else:
        use = ["```python", "from transformers import AutoModel, AutoTokenizer",
               "encoder, tokenizer = AutoModel.from_pretrained(\"THIS_DIRECTORY\"), AutoTokenizer.from_pretrained(\"THIS_DIRECTORY\")",
               "```"]
    return "\n".join(header + use) + "\n"
