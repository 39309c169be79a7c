"""Shared fixtures: a tiny random BERT checkpoint, small slices of the real CS224N files, their
prepared (tokenized) form and the params of a fast CPU training run. All session-scoped and
deterministic, so the training tests share one tokenization and one checkpoint."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from optiminbert.data import TASKS
from optiminbert.model import BertConfig, BertModel
from optiminbert.phases import Run
from optiminbert.prepared import prepare
from optiminbert.settings import Settings, resolve
from optiminbert.training import train_run

# No test reaches the Hugging Face Hub: a checkpoint name that is not a directory is looked up in
# the cache only (CI machines have no route to it, and a hung request would stall the suite).
os.environ["HF_HUB_OFFLINE"] = "1"

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/cs224n"
SLICE_ROWS = 40
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Used for the vocabulary only when the real data is absent (model-only tests still run then).
FALLBACK_TEXT = "a the film movie is good bad what how why do you i it ' s . , ? !"
TINY_ENCODER = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=128
)


def slice_lines(path: Path, rows: int = SLICE_ROWS) -> bytes:
    """The header and the first ``rows`` data lines of a task file, byte for byte.

    Cut by lines, not by re-writing parsed rows (that would change the quoting); checked to
    parse as exactly one CSV row per line, so no quoted field spans the cut.
    """
    with path.open("rb") as handle:
        kept = b"".join(line for _, line in zip(range(rows + 1), handle))
    text = kept.decode("utf-8", errors="surrogateescape")
    parsed = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t"))
    assert len(parsed) == len(text.splitlines()), f"{path.name}: a quoted field spans lines in the kept part"
    return kept


def vocabulary(texts: list[str]) -> list[str]:
    """Special tokens, then the sorted lower-cased words and punctuation marks of ``texts``."""
    words = {w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())}
    return SPECIAL_TOKENS + sorted(words - set(SPECIAL_TOKENS))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on one torch thread. ``configure_cpu`` (called by every training run) takes
    every core unless OMP_NUM_THREADS is set, and two threads on two cores shared with another
    job make each tiny step about 50x slower than one thread does."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"the CS224N data is not at {REAL_DATA}")
    directory = tmp_path_factory.mktemp("data")
    for spec in TASKS.values():
        for split in ("train", "dev", "test"):
            name = spec.filename(split)
            (directory / name).write_bytes(slice_lines(REAL_DATA / name))
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random BERT in Hugging Face layout, with a vocabulary drawn from the data slices."""
    if REAL_DATA.is_dir():
        texts = [slice_lines(path).decode("utf-8", errors="replace") for path in sorted(REAL_DATA.glob("*.csv"))]
    else:
        texts = [FALLBACK_TEXT]
    vocab = vocabulary(texts)
    directory = tmp_path_factory.mktemp("checkpoint")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), **TINY_ENCODER)).save_pretrained(directory)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}), encoding="utf-8")
    return directory


def dropout_free(directory: Path, tiny_checkpoint: Path) -> Path:
    """A copy of the tiny checkpoint with no dropout inside the encoder: runs that split their
    batches differently (ranks, micro-batches) draw different masks; all else must agree."""
    shutil.copytree(tiny_checkpoint, directory)
    config = json.loads((directory / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def run_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """A saved run's heads and encoder weights, by name."""
    return {**load_file(run_dir / "heads.safetensors"), **load_file(run_dir / "encoder" / "model.safetensors")}


@pytest.fixture(scope="session")
def tiny_prepared(tiny_data: Path, tiny_checkpoint: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("work") / "prepared"
    prepare(tiny_data, out, str(tiny_checkpoint), {task: 32 for task in TASKS})
    return out


def tiny_run(tasks, pairs: str, name: str = "run", frozen: bool = False, phase: str = "test") -> Run:
    """A run outside the registered phases: any tasks, either pair design, no params sections."""
    return Run(phase, name, tuple(tasks), pairs, (), name, frozen=frozen)


def train_tiny(settings: Settings, tasks, pairs: str, prepared: Path, out: Path, name: str = "run",
               frozen: bool = False, **kwargs) -> list[dict]:
    """``training.train_run`` of a ``tiny_run``; returns its history."""
    return train_run(tiny_run(tasks, pairs, name, frozen), settings, prepared, out, **kwargs)


@pytest.fixture(scope="session")
def tiny_params(tiny_checkpoint: Path) -> Settings:
    """Settings of a fast CPU run: the embedded defaults with a tiny model and batches."""
    return resolve(
        {
            "checkpoint": str(tiny_checkpoint),
            "epochs": 2,
            "batch_size": 8,
            "eval_batch_size": 16,
            "lr": 1e-3,
            "device": "cpu",
            "precision": "fp32",
            "max_length": 32,
        }
    )


# -- tiny trained runs, shared by test_training.py, test_rundir.py and test_train.py -----------
# (added for the training-side tests: each run trains once per session, not once per file)

import contextlib  # noqa: E402 (this block's own imports, kept with it)
import dataclasses  # noqa: E402
from unittest import mock  # noqa: E402

from optiminbert.rundir import RunDir  # noqa: E402


@contextlib.contextmanager
def one_torch_thread():
    """``one_thread`` for code a session-scoped fixture runs (it cannot use a module fixture)."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


@dataclasses.dataclass
class TrainedRun:
    dir: Path
    settings: Settings
    history: list[dict]
    model: torch.nn.Module  # the in-memory MultitaskBert that train_run saved into ``dir``


def train_and_keep(settings: Settings, tasks, pairs: str, prepared: Path, out: Path, frozen: bool = False,
                   **kwargs) -> TrainedRun:
    """``train_tiny`` into ``out``, keeping the model it saved (``RunDir.save`` is wrapped, not replaced)."""
    with mock.patch.object(RunDir, "save", autospec=True, side_effect=RunDir.save) as save:
        history = train_tiny(settings, tasks, pairs, prepared, out, name=out.name, frozen=frozen, **kwargs)
    return TrainedRun(out, settings, history, save.call_args.args[1])


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def trained(tiny_params: Settings, tiny_prepared: Path, trained_runs: Path):
    """``trained(name, tasks, pairs="cross", frozen=False, **changes)``: ``tiny_params`` with
    ``changes`` trained into trained_runs/name, once per session (a name reused with other
    arguments is a test bug, refused)."""
    done: dict[str, tuple[tuple, TrainedRun]] = {}

    def train(name: str, tasks, pairs: str = "cross", frozen: bool = False, **changes) -> TrainedRun:
        key = (tuple(tasks), pairs, frozen, tuple(sorted(changes.items())))
        if name not in done:
            with one_torch_thread():
                run = train_and_keep(tiny_params.replace(**changes), list(tasks), pairs, tiny_prepared,
                                     trained_runs / name, frozen)
            done[name] = (key, run)
        assert done[name][0] == key, f"run {name!r} was trained with other arguments"
        return done[name][1]

    return train


@pytest.fixture(scope="session")
def finetuned_run(trained) -> TrainedRun:
    """SST, cross-encoded, the encoder fine-tuned."""
    return trained("finetune", ["sst"])


@pytest.fixture(scope="session")
def joint_run(trained) -> TrainedRun:
    """The three study tasks in one siamese model, PCGrad."""
    return trained("joint", ["sst", "quora", "sts"], "siamese", surgery="pcgrad")


@pytest.fixture(scope="session")
def aligned_run(trained) -> TrainedRun:
    """Siamese paraphrase with the token-alignment features."""
    return trained("aligned", ["quora"], "siamese", token_alignment=True)


@pytest.fixture(scope="session")
def frozen_run(trained) -> TrainedRun:
    """SST on the frozen encoder's features: only the head trains."""
    return trained("frozen", ["sst"], frozen=True)


# -- the command line in this process, and registering a toy phase: test_cli.py, test_predict.py,
# test_phases.py, test_dvc.py (added for the settings/CLI/pipeline-side tests) ----------------

import sys  # noqa: E402 (this block's own imports, kept with it)
from typing import NamedTuple  # noqa: E402


class CliResult(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli(*args, cwd=...)``: ``optiminbert ARGS`` run in ``cwd`` through ``cli.main`` (what the
    console script calls: one-line errors and exit codes included), in this process. A new Python
    per command costs seconds of imports on a loaded 2-core machine; test_cli.py runs the real
    console script too, so that path is still covered."""
    from optiminbert import cli as cli_module

    def invoke(*args, cwd: Path) -> CliResult:
        capsys.readouterr()
        with monkeypatch.context() as patch:
            patch.chdir(cwd)
            patch.setattr(sys, "argv", ["optiminbert", *map(str, args)])
            patch.setenv("OMP_NUM_THREADS", "1")
            try:
                cli_module.main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit status 1, one ``error: ...`` line on stderr holding every fragment, no traceback."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def register_phase(monkeypatch, phase) -> None:
    """Register ``phase`` for one test as a line in phases/__init__.py would: in ``PHASES`` and,
    for a study phase, in ``STUDY_PHASES``, also where a module imported that tuple by name
    (report.py does), since those names were bound when the real registry was built. A phase
    that declares its own settings would also need the schema rebuilt: not supported here."""
    from optiminbert import phases

    assert not phase.settings, "register_phase cannot add settings to the schema"
    monkeypatch.setitem(phases.PHASES, phase.name, phase)
    if phase.study:
        registered = phases.STUDY_PHASES
        for name, module in list(sys.modules.items()):
            if name.split(".")[0] == "optiminbert" and getattr(module, "STUDY_PHASES", None) is registered:
                monkeypatch.setattr(module, "STUDY_PHASES", (*registered, phase.name))
