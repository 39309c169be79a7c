"""Our encoder against transformers.BertModel: same weights, same batches, one process.

``run`` loads one checkpoint into our ``BertModel`` and into ``transformers.BertModel`` (the
very same tensors, mapped with ``ours_to_hf``), cuts real SST training sentences into the
length-bucketed, dynamically padded batches training uses, and times both models on them:

- training throughput (forward + backward + AdamW step) and inference throughput
  (``torch.inference_mode``), in real (non-pad) tokens per second. Repetitions alternate
  between the two models (ours, HF, HF, ours, ...) and the medians are compared, so a
  background job slows both alike;
- the machine's matmul peak (one large fp32 and one bf16 matmul) and the FLOP/s our training
  step achieves as a fraction of it (the formula is in ``encoder_flops``);
- inference again on every dev split, cut into the batches the evaluation stage scores
  (``evaluation_batches``);
- the peak memory of one model's training, each model in a fresh subprocess;
- the padding fraction of ``length_bucketed_batches`` against plain random batches on every
  task's real training lengths;
- with ``--compile``, our encoder under ``torch.compile`` against itself in eager mode;
- each pipeline run's own training loop on the prepared data (``time_run``).

The same text is printed and written to ``benchmarks/results/encoder_speed-<device>.txt``
(``-quick.txt`` for the smoke run). ``benchmarks/encoder_speed.py`` (which ``optiminbert
bench`` runs) builds a ``BenchConfig`` from params.yaml and its options and calls ``run``; the
other benchmarks reuse the timing helpers.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from optiminbert import data, phases
from optiminbert.atomic import write_text_atomic
from optiminbert.batching import TokenizedTexts, length_bucketed_batches, pad, sequential_batches
from optiminbert.checkpoints import resolve_checkpoint
from optiminbert.contrastive import PositivePairs
from optiminbert.model import BertConfig, BertModel, ours_to_hf, side_by_side
from optiminbert.paths import PREPARED, RAW
from optiminbert.phases import Run
from optiminbert.prepared import TaskSplit
from optiminbert.runtime import adamw, autocast, configure_cpu, resolve_device, resolve_precision
from optiminbert.settings import Settings, resolve, resolve_step
from optiminbert.steps.prepare import lengths
from optiminbert.steps.train import run_settings
from optiminbert.tokenizer import load_tokenizer
from optiminbert.training import time_steps

RESULTS = Path("benchmarks/results")
# Published dense bf16 tensor-core peaks (FLOP/s), for an MFU against the spec sheet on CUDA.
SPEC_BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


@dataclass
class BenchConfig:
    """What to measure and how long. The study's settings (checkpoint, data, device, precision,
    batch sizes, lengths, lr, frozen word table) are not held here but resolved from ``tree``,
    so the benchmark measures what training runs; the fields are the benchmark's own knobs.
    ``quick()`` is the half-minute smoke version."""

    tree: Mapping[str, Any]  # the params tree (``settings.load``): the shared settings and every phase's sections
    overrides: dict[str, Any] = field(default_factory=dict)  # the command line's settings, over the tree for every run
    fp32_too: bool = True  # also time fp32 where the main precision is not fp32
    train_batches: int = 6  # batches per timed repetition
    train_reps: int = 5  # timed repetitions per model (after one untimed warm-up each)
    infer_batches: int = 3
    infer_reps: int = 5
    eval_sets: bool = True  # also time inference on every dev split, batched as the evaluation stage batches it
    eval_batches: int = 0  # batches per dev split, spread over its lengths (0: all of them)
    eval_reps: int = 3
    matmul_size: int = 0  # 0: 2048 on CPU, 8192 on CUDA
    matmul_reps: int = 5
    memory: bool = True
    padding: bool = True
    compile: bool = False  # also time our encoder under torch.compile against itself in eager mode
    phase_steps: int = 20  # each phase's real training loop for this many steps (0: skip)
    prepared: Path = PREPARED  # the prepared data those runs train on
    seed: int = 0
    note: str = ""  # free text for the report's header (e.g. what else ran on the machine)
    smoke: bool = False  # the --quick run: written to encoder_speed-<device>-quick.txt, never over the full one

    @classmethod
    def quick(cls, tree: Mapping[str, Any], overrides: dict[str, Any] | None = None, **knobs: Any) -> "BenchConfig":
        fast = dict(
            smoke=True, fp32_too=False, train_batches=2, train_reps=2, infer_batches=1, infer_reps=2, matmul_reps=3,
            eval_batches=1, eval_reps=1, phase_steps=0,
        )
        return cls(tree, overrides or {}, **{**fast, **knobs})

    @cached_property
    def settings(self) -> Settings:
        """The shared settings: the top level, the prepare step's section, the overrides."""
        return resolve_step(self.tree, "prepare", self.overrides)

    @property
    def max_length(self) -> dict[str, int]:
        """Tokens each task's texts are cut to, as ``optiminbert prepare`` cuts them."""
        return lengths(self.settings)

    def record(self) -> dict[str, Any]:
        """The knobs and the shared settings, as the results keep them."""
        knobs = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("tree", "overrides")}
        return {**knobs, "prepared": str(self.prepared), "settings": dict(self.settings)}


# -- the two models --------------------------------------------------------------------------


def hf_twin(ours: BertModel, attn_implementation: str = "sdpa"):
    """A ``transformers.BertModel`` holding exactly our weights (same config, same tensors' values)."""
    import transformers

    config = transformers.BertConfig(**ours.config.to_json(), attn_implementation=attn_implementation)
    theirs = transformers.BertModel(config)
    theirs.load_state_dict(ours_to_hf(ours.state_dict(), ours.config), strict=True)
    return theirs


def load_models(checkpoint: str) -> tuple[BertModel, Any]:
    ours = BertModel.from_pretrained(checkpoint)
    return ours, hf_twin(ours)


def word_embedding(model: torch.nn.Module) -> torch.nn.Parameter:
    if isinstance(model, BertModel):
        return model.embeddings.word.weight
    return model.get_input_embeddings().weight


def make_optimizer(model: torch.nn.Module, lr: float, freeze_word_embeddings: bool) -> torch.optim.Optimizer:
    word_embedding(model).requires_grad_(not freeze_word_embeddings)
    return adamw([p for p in model.parameters() if p.requires_grad], lr=lr)


def hf_inputs(batch: dict) -> dict:
    """A batch as ``transformers.BertModel`` takes it: side-by-side sequences (``sequence_ids``)
    become its per-query attention mask and position ids."""
    if "sequence_ids" not in batch:
        return batch
    keys, positions = side_by_side(batch["sequence_ids"])
    rest = {k: v for k, v in batch.items() if k not in ("sequence_ids", "attention_mask")}
    return {**rest, "attention_mask": keys[:, None], "position_ids": positions}


def training_step(model, optimizer, batch: dict, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    """One fine-tuning step: forward under autocast, a scalar loss of both outputs (the real
    tokens' states: padded positions mean nothing, and ours skips them), backward, AdamW."""
    with autocast(device, dtype):
        out = model(**batch)
        real = batch["attention_mask"].bool()
        loss = out.last_hidden_state[real].float().pow(2).mean() + out.pooler_output.float().pow(2).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.inference_mode()
def inference_step(model, batch: dict, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    with autocast(device, dtype):
        return model(**batch).last_hidden_state


def training_pass(model, optimizer, batches: list[dict], device, dtype) -> Callable[[], list]:
    """One timed repetition: a training step on each batch."""
    return lambda: [training_step(model, optimizer, b, device, dtype) for b in batches]


def inference_pass(model, batches: list[dict], device, dtype) -> Callable[[], list]:
    return lambda: [inference_step(model, b, device, dtype) for b in batches]


# -- batches and FLOPs -----------------------------------------------------------------------


def encode_column(tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(texts)]


def task_columns(
    data_dir: Path, task: str, checkpoint: str, max_length: int, split_name: str = "train"
) -> tuple[list[data.Example], list[list[list[int]]]]:
    """A task split's examples and every text column of them, tokenized as ``optiminbert prepare`` does."""
    split = data.load_split(data_dir, task, split_name)
    tokenizer = load_tokenizer(checkpoint, max_length)
    return split.examples, [
        encode_column(tokenizer, [ex.texts[c] for ex in split.examples])
        for c in range(len(split.task.text_columns))
    ]


def padded_batches(sequences: list[list[int]], batch_size: int, count: int, seed: int) -> list[dict]:
    """``count`` length-bucketed batches of ``sequences`` (as training draws them), dynamically padded."""
    lengths = torch.tensor([len(s) for s in sequences])
    order = length_bucketed_batches(lengths, batch_size, torch.Generator().manual_seed(seed))
    # Full batches first (a split's last batch of each chunk is short); stable, so still random.
    chosen = sorted(order, key=len, reverse=True)[:count]
    batches = []
    for indices in chosen:
        batch = pad([sequences[i] for i in indices.tolist()])
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        batches.append(batch)
    return batches


# What the evaluation stage scores: every dev split, in each layout a phase encodes it.
EVAL_SETS = [("sst", "single"), ("cfimdb", "single"), ("quora", "siamese"), ("quora", "cross"), ("sts", "siamese"), ("sts", "cross")]


def dev_split(data_dir: Path, task: str, config: BenchConfig) -> TaskSplit:
    """A task's dev split, tokenized as ``optiminbert prepare`` does."""
    examples, cols = task_columns(data_dir, task, config.settings.checkpoint, config.max_length[task], "dev")
    return TaskSplit.from_examples(task, "dev", examples, [TokenizedTexts.from_lists(c) for c in cols])


def evaluation_batches(split: TaskSplit, pairs: str, config: BenchConfig) -> list[dict]:
    """A dev split cut as ``train.predict`` cuts it (sorted by length, ``eval_batch_size``
    examples a batch, siamese pairs side by side): ``config.eval_batches`` of them spread over
    the lengths, or all."""
    order = list(sequential_batches(split.lengths, config.settings.eval_batch_size))
    if config.eval_batches:
        order = order[:: -(-len(order) // config.eval_batches)]
    batches = []
    for indices in order:
        batch = split.batch(indices, pairs, config.max_length[split.task])
        batch.pop("labels", None)
        batches.append(batch)
    return batches


def on_device(batches: list[dict], device: torch.device) -> list[dict]:
    return [{k: v.to(device) for k, v in b.items()} for b in batches]


def layer_parameters(config: BertConfig) -> int:
    """Parameters of the transformer layers: N in the FLOP formula (no embeddings, no pooler)."""
    h, i = config.hidden_size, config.intermediate_size
    per_layer = (4 * h * h + 4 * h) + (2 * h * i + i + h) + 2 * (2 * h)  # attention, FFN, two LayerNorms
    return config.num_hidden_layers * per_layer


def encoder_flops(config: BertConfig, lengths: torch.Tensor, training: bool) -> float:
    """Useful FLOPs of the encoder on sequences of real lengths ``lengths`` (padding not counted).

    forward  = 2 N T + 4 L h sum(s^2)     training = 3 x forward = 6 N T + 12 L h sum(s^2)

    N: transformer-layer parameters (``layer_parameters``; embeddings are lookups and the pooler
    sees one token per sequence, so both are left out), T = sum(s) real tokens, L layers, width h.
    2 N T is every weight's multiply-add once per token; 4 L h s^2 per sequence is QK^T and
    attention x V over its s real keys; backward costs twice the forward. Softmax, GELU,
    LayerNorm and the optimizer step are not counted (the usual MFU convention, as in PaLM).
    """
    s = lengths.double()
    forward = 2 * layer_parameters(config) * s.sum() + 4 * config.num_hidden_layers * config.hidden_size * (s * s).sum()
    return float(3 * forward if training else forward)


def real_lengths(batches: list[dict]) -> torch.Tensor:
    return torch.cat([b["attention_mask"].sum(1) for b in batches])


def padding_fraction(row_lengths: list[torch.Tensor]) -> float:
    """Padded share of all token slots, for batches given as their rows' real lengths."""
    real = sum(int(r.sum()) for r in row_lengths)
    slots = sum(int(r.max()) * len(r) for r in row_lengths)
    return 1 - real / slots if slots else 0.0


def task_padding(columns: list[list[list[int]]], batch_size: int, max_length: int, seed: int) -> dict[str, dict[str, float]]:
    """Padding of random vs length-bucketed batches, for every way this task's rows are batched.

    Single sentences: one row each. Pairs: ``cross`` joins [CLS] a [SEP] b [SEP] (``join_pair``,
    cut at max_length); ``siamese`` puts a and b side by side in one row (``pad_side_by_side``,
    each cut on its own). Bucketing sorts by len(a) + len(b), as training does.
    """
    lens = [torch.tensor([len(s) for s in col]) for col in columns]
    generator = torch.Generator().manual_seed(seed)
    random = list(torch.randperm(len(lens[0]), generator=generator).split(batch_size))
    key = sum(lens)
    layouts = {"single": key} if len(lens) == 1 else {"cross": (key - 1).clamp(max=max_length), "siamese": key}
    bucketed = length_bucketed_batches(key, batch_size, generator)
    return {
        layout: {name: padding_fraction([rows[idx] for idx in order]) for name, order in (("random", random), ("bucketed", bucketed))}
        for layout, rows in layouts.items()
    }


def contrastive_padding(splits: dict[str, TaskSplit], batch_size: int, sts_min: float, seed: int) -> dict[str, float]:
    """Padding of the contrastive task's batches (``contrastive.PositivePairs`` of the Quora and
    STS train ``splits``, each pair side by side in one row): random batches against the batches
    training draws (``no_duplicate_batches``: length-bucketed, no text twice in a batch)."""
    pairs = PositivePairs.from_splits(splits, sts_min)
    generator = torch.Generator().manual_seed(seed)
    orders = {
        "random": torch.randperm(len(pairs), generator=generator).split(batch_size),
        "bucketed": pairs.shuffled_batches(batch_size, generator),
    }
    return {name: padding_fraction([pairs.lengths[idx] for idx in order]) for name, order in orders.items()}


# -- timing ----------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, size: int, reps: int, device: torch.device) -> float:
    """Best FLOP/s of ``reps`` square ``size`` matmuls (after one warm-up)."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, generator=generator, device=device).to(dtype)
    b = torch.randn(size, size, generator=generator, device=device).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        started = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def interleaved(run_ours: Callable[[], None], run_hf: Callable[[], None], reps: int, device, advance) -> dict[str, list[float]]:
    """Seconds per repetition of each, in ABBA order (ours first on even reps, HF first on odd)
    after one untimed warm-up each; a background job then weighs on both alike."""
    runs = {"ours": run_ours, "hf": run_hf}
    for fn in runs.values():
        fn()
        advance()
    seconds: dict[str, list[float]] = {"ours": [], "hf": []}
    for rep in range(reps):
        for name in ("ours", "hf") if rep % 2 == 0 else ("hf", "ours"):
            _sync(device)
            started = time.perf_counter()
            runs[name]()
            _sync(device)
            seconds[name].append(time.perf_counter() - started)
            advance()
    return seconds


def summarise(seconds: dict[str, list[float]], tokens: int, flops: float) -> dict[str, Any]:
    ours, hf = statistics.median(seconds["ours"]), statistics.median(seconds["hf"])
    paired = [h / o for o, h in zip(seconds["ours"], seconds["hf"])]  # per repetition, ours/HF throughput
    return {
        "ours_tokens_per_s": tokens / ours,
        "hf_tokens_per_s": tokens / hf,
        "ratio": hf / ours,
        "paired_ratio_min": min(paired),
        "paired_ratio_max": max(paired),
        "ours_flops_per_s": flops / ours,
        "hf_flops_per_s": flops / hf,
        "ours_seconds": seconds["ours"],
        "hf_seconds": seconds["hf"],
    }


def compile_speedup(
    model: BertModel, config: BenchConfig, train_batches: list[dict], infer_batches: list[dict], device, dtype, advance
) -> dict[str, Any]:
    """Our encoder under ``torch.compile`` (dynamic shapes, as bucketed lengths vary) against
    the same weights in eager mode: the compile time (first call, timed alone) and the
    steady-state throughput ratio, for training and for inference. In the results, "ours" is
    compiled and "hf" is eager, so ``ratio`` is the speed-up."""
    import copy

    eager, compiled = model, copy.deepcopy(model)
    compiled.compile(dynamic=True)
    optimizers = {id(m): make_optimizer(m, config.settings.lr, config.settings.freeze_word_embeddings) for m in (eager, compiled)}
    out: dict[str, Any] = {}
    for kind, batches, reps in (("train", train_batches, config.train_reps), ("infer", infer_batches, config.infer_reps)):
        for m in (eager, compiled):
            m.train(kind == "train")

        def run_all(m):
            if kind == "train":
                return training_pass(m, optimizers[id(m)], batches, device, dtype)
            return inference_pass(m, batches, device, dtype)

        _sync(device)
        started = time.perf_counter()
        run_all(compiled)()  # compiles (training and inference are separate graphs)
        _sync(device)
        first = time.perf_counter() - started
        lengths = real_lengths(batches)
        flops = encoder_flops(model.config, lengths, kind == "train")
        out[kind] = {**summarise(interleaved(run_all(compiled), run_all(eager), reps, device, advance), int(lengths.sum()), flops),
                     "first_call_s": first}
    return out


# -- each phase's real training loop ----------------------------------------------------------

# The pipeline's training runs that take optimizer steps on the encoder (the frozen *pretrain*
# runs cost one features pass, not steps).
PHASE_RUNS: tuple[Run, ...] = tuple(run for phase in phases.PHASES.values() for run in phase.runs() if not run.frozen)


def time_run(tree: Mapping[str, Any], run: Run, steps: int, prepared_dir: Path,
             overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One pipeline training run through its real code path (``training.time_steps``) with the
    run's own settings (``steps.train.run_settings``: its model, losses, gradient strategy and
    length-bucketed batches of the prepared train data), for ``steps`` round-robin steps."""
    settings = run_settings(tree, run, overrides)
    return {"steps": steps, **time_steps(run, settings, steps, prepared_dir), "batch_size": settings.batch_size}


def phase_throughput(config: BenchConfig) -> dict[str, dict[str, Any]]:
    return {
        run.name: time_run(config.tree, run, config.phase_steps, Path(config.prepared), config.overrides)
        for run in PHASE_RUNS
    }


# -- memory, one model per fresh process -------------------------------------------------------


def _status_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: writing 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_child(spec: dict) -> dict:
    """Run in a fresh process: load one model, then measure its training steps' peak memory."""
    configure_cpu()
    device = torch.device(spec["device"])
    dtype = getattr(torch, spec["dtype"]) if spec["dtype"] else None
    batches = [{k: v.to(device) for k, v in b.items()} for b in torch.load(spec["batches"], weights_only=True)]
    if spec["model"] == "ours":
        model = BertModel.from_pretrained(spec["checkpoint"])
    else:
        import transformers

        model = transformers.BertModel.from_pretrained(
            resolve_checkpoint(spec["checkpoint"]), attn_implementation="sdpa", dtype=torch.float32
        )
    model.to(device).train()
    optimizer = make_optimizer(model, spec["lr"], spec["freeze_word_embeddings"])
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before_kib = _status_kib("VmRSS")
    reset = _reset_peak_rss()
    before_allocated = torch.cuda.memory_allocated() if device.type == "cuda" else 0
    for batch in batches:
        training_step(model, optimizer, batch, device, dtype)
    _sync(device)
    out = {"rss_before_mib": (before_kib or 0) / 1024, "method": "VmHWM" if reset else "ru_maxrss"}
    if reset and _status_kib("VmHWM") is not None:
        out["rss_peak_mib"] = _status_kib("VmHWM") / 1024
    else:
        import resource

        out["rss_peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if device.type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["cuda_before_mib"] = before_allocated / 2**20
    return out


def measure_memory(model: str, config: BenchConfig, device: torch.device, dtype, batches: list[dict]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "batches.pt"
        torch.save(batches, path)
        spec = dict(
            model=model, checkpoint=config.settings.checkpoint, device=str(device), lr=config.settings.lr,
            dtype=str(dtype).removeprefix("torch.") if dtype else None, batches=str(path),
            freeze_word_embeddings=config.settings.freeze_word_embeddings,
        )
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), json.dumps(spec)],
            capture_output=True, text=True, check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"memory subprocess for {model} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the machine -----------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return " ".join(f for f in wanted if f in flags)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def machine_info(device: torch.device) -> dict[str, Any]:
    import transformers

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": cores,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "load_average_start": load_average(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# -- the run ---------------------------------------------------------------------------------


def _fmt_rate(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} "


def run(config: BenchConfig, results_dir: Path | None = RESULTS, progress_console=None) -> dict[str, Any]:
    """Measure everything; print the report, write it to ``results_dir`` (None: don't) and
    return the numbers (with the report text under ``"text"``)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    started = time.perf_counter()
    configure_cpu()
    device = resolve_device(config.settings.device)
    main_dtype = resolve_precision(config.settings.precision, device)
    precisions: list[torch.dtype | None] = [main_dtype]
    if config.fp32_too and main_dtype is not None:
        precisions.append(None)
    info = machine_info(device)
    data_dir = data.readable_source(config.settings.data, RAW)
    console = progress_console or Console(stderr=True)
    results: dict[str, Any] = {"machine": info, "config": config.record(), "device": device.type}

    def name(dtype) -> str:
        return "fp32" if dtype is None else str(dtype).removeprefix("torch.").replace("bfloat16", "bf16").replace("float16", "fp16")

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        # Models and batches.
        step = progress.add_task("loading both models", total=None)
        ours, hf = load_models(config.settings.checkpoint)
        ours.to(device).train()
        hf.to(device).train()
        enc = ours.config
        sst = task_columns(data_dir, "sst", config.settings.checkpoint, config.max_length["sst"])[1][0]
        train_batches = padded_batches(sst, config.settings.batch_size, config.train_batches, config.seed)
        infer_batches = padded_batches(sst, config.settings.eval_batch_size, config.infer_batches, config.seed + 1)
        progress.remove_task(step)
        train_dev, infer_dev = on_device(train_batches, device), on_device(infer_batches, device)
        train_lengths, infer_lengths = real_lengths(train_batches), real_lengths(infer_batches)
        results["batches"] = {
            "train": {"batches": len(train_batches), "tokens": int(train_lengths.sum()),
                      "padding": padding_fraction([b["attention_mask"].sum(1) for b in train_batches]),
                      "mean_length": float(train_lengths.double().mean())},
            "infer": {"batches": len(infer_batches), "tokens": int(infer_lengths.sum()),
                      "padding": padding_fraction([b["attention_mask"].sum(1) for b in infer_batches])},
        }

        # Matmul peaks.
        size = config.matmul_size or (8192 if device.type == "cuda" else 2048)
        results["matmul"] = {"size": size}
        step = progress.add_task("matmul peak", total=2)
        for dtype in (torch.float32, torch.bfloat16):
            results["matmul"][name(None if dtype == torch.float32 else dtype)] = matmul_peak(dtype, size, config.matmul_reps, device)
            progress.advance(step)
        progress.remove_task(step)

        # Training and inference throughput.
        optimizers = {
            "ours": make_optimizer(ours, config.settings.lr, config.settings.freeze_word_embeddings),
            "hf": make_optimizer(hf, config.settings.lr, config.settings.freeze_word_embeddings),
        }
        results["train"], results["infer"] = {}, {}
        for dtype in precisions:
            label = name(dtype)
            step = progress.add_task(f"training steps, {label}", total=2 * (config.train_reps + 1))
            ours.train(), hf.train()
            seconds = interleaved(
                training_pass(ours, optimizers["ours"], train_dev, device, dtype),
                training_pass(hf, optimizers["hf"], train_dev, device, dtype),
                config.train_reps, device, lambda: progress.advance(step),
            )
            results["train"][label] = summarise(seconds, int(train_lengths.sum()), encoder_flops(enc, train_lengths, True))
            progress.remove_task(step)

            step = progress.add_task(f"inference, {label}", total=2 * (config.infer_reps + 1))
            ours.eval(), hf.eval()
            seconds = interleaved(
                inference_pass(ours, infer_dev, device, dtype), inference_pass(hf, infer_dev, device, dtype),
                config.infer_reps, device, lambda: progress.advance(step),
            )
            results["infer"][label] = summarise(seconds, int(infer_lengths.sum()), encoder_flops(enc, infer_lengths, False))
            progress.remove_task(step)

        # Inference again, on the batches the evaluation stage scores.
        if config.eval_sets:
            step = progress.add_task(
                f"inference on the dev sets, {name(main_dtype)}", total=len(EVAL_SETS) * 2 * (config.eval_reps + 1)
            )
            ours.eval(), hf.eval()
            results["eval_sets"], splits = {}, {}
            for task, pairs in EVAL_SETS:
                if task not in splits:  # Quora and STS are scored in two layouts: tokenize once
                    splits[task] = dev_split(data_dir, task, config)
                batches = on_device(evaluation_batches(splits[task], pairs, config), device)
                lengths = real_lengths(batches)
                seconds = interleaved(
                    inference_pass(ours, batches, device, main_dtype),
                    inference_pass(hf, [hf_inputs(b) for b in batches], device, main_dtype),
                    config.eval_reps, device, lambda: progress.advance(step),
                )
                results["eval_sets"][f"{task} {pairs}"] = {
                    **summarise(seconds, int(lengths.sum()), encoder_flops(enc, lengths, False)),
                    "batches": len(batches), "tokens": int(lengths.sum()),
                    "padding": padding_fraction([b["attention_mask"].sum(1) for b in batches]),
                }
            progress.remove_task(step)
        del hf, optimizers

        if config.compile:
            step = progress.add_task(
                f"torch.compile vs eager, {name(main_dtype)}", total=2 * (config.train_reps + config.infer_reps + 2)
            )
            results["compile"] = compile_speedup(
                ours, config, train_dev, infer_dev, device, main_dtype, lambda: progress.advance(step)
            )
            progress.remove_task(step)
        del ours

        # Peak memory, each model alone in a fresh process.
        if config.memory:
            step = progress.add_task(f"peak memory, {name(main_dtype)} (fresh process per model)", total=2)
            results["memory"] = {}
            for model_name in ("ours", "hf"):
                results["memory"][model_name] = measure_memory(model_name, config, device, main_dtype, train_batches)
                progress.advance(step)
            progress.remove_task(step)

        # Padding of bucketed vs random batches on every task's real training lengths.
        if config.padding:
            step = progress.add_task("padding per task", total=len(data.TASKS))
            results["padding"], pair_splits = {}, {}
            for task in data.TASKS:
                if task == "sst":
                    cols = [sst]
                else:
                    examples, cols = task_columns(data_dir, task, config.settings.checkpoint, config.max_length[task])
                    if task in ("quora", "sts"):  # the contrastive task's sources, read once
                        tokens = [TokenizedTexts.from_lists(c) for c in cols]
                        pair_splits[task] = TaskSplit.from_examples(task, "train", examples, tokens)
                results["padding"][task] = task_padding(cols, config.settings.batch_size, config.max_length[task], config.seed)
                progress.advance(step)
            sts_min = resolve(config.tree, ("specialist",), config.overrides).contrastive_sts_min
            results["padding"]["contrastive"] = {"siamese": contrastive_padding(pair_splits, config.settings.batch_size, sts_min, config.seed)}
            progress.remove_task(step)

    # Outside the progress display above: the training loop shows its own.
    if config.phase_steps:
        if (Path(config.prepared) / "sst-train.pt").is_file():
            results["phases"] = phase_throughput(config)
        else:
            results["phases_skipped"] = f"no prepared data in {config.prepared}: run `optiminbert prepare` first"

    info["load_average_end"] = load_average()
    info["wall_s"] = time.perf_counter() - started
    results["model"] = {
        "layers": enc.num_hidden_layers, "hidden": enc.hidden_size, "heads": enc.num_attention_heads,
        "intermediate": enc.intermediate_size, "vocab": enc.vocab_size, "layer_params": layer_parameters(enc),
    }
    results["text"] = report(results, config, [name(d) for d in precisions], name(main_dtype))
    print(results["text"], end="")
    if results_dir is not None:
        path = Path(results_dir) / f"encoder_speed-{device.type}{'-quick' if config.smoke else ''}.txt"
        write_text_atomic(results["text"], path)
        results["path"] = str(path)
    return results


def report(results: dict, config: BenchConfig, labels: list[str], main_label: str) -> str:
    info, m, batches = results["machine"], results["model"], results["batches"]
    peaks = results["matmul"]
    lines = [
        "optiminbert bench: our minBERT encoder vs transformers.BertModel (same weights, same batches, one process)"
        + (" [--quick: few repetitions, noisy]" if config.smoke else ""),
        f"date      {info['date']} (the whole run took {info['wall_s']:.0f} s)",
        f"machine   {info.get('gpu', info['cpu'])}" + ("" if "gpu" not in info else f" (host CPU {info['cpu']})"),
        f"          {info['cores']} cores usable, {info['threads']} torch threads, CPU flags: {info['cpu_flags'] or 'n/a'}",
        f"software  torch {info['torch']}, transformers {info['transformers']} (sdpa attention), Python {info['python']}",
        f"load avg  {info['load_average_start']} at start, {info['load_average_end']} at end (1/5/15 min; "
        f"above {info['cores']} means another job shared the CPU and ratios are noisier)",
        *([f"note      {config.note}"] if config.note else []),
        f"model     {config.settings.checkpoint}: {m['layers']} layers, hidden {m['hidden']}, {m['heads']} heads, FFN {m['intermediate']}, "
        f"{m['layer_params'] / 1e6:.2f}M transformer-layer params (N)",
        "",
        f"Matmul peak ({peaks['size']}x{peaks['size']} @ {peaks['size']}x{peaks['size']}, best of {config.matmul_reps})",
        f"  fp32  {_fmt_rate(peaks['fp32'])}FLOP/s",
        f"  bf16  {_fmt_rate(peaks['bf16'])}FLOP/s",
        "",
    ]
    tb, ib = batches["train"], batches["infer"]
    for kind, title, detail in (
        ("train", "Training step: forward + backward + AdamW",
         f"batch {config.settings.batch_size}, {tb['batches']} length-bucketed SST train batches ({tb['tokens']} real tokens, "
         f"mean length {tb['mean_length']:.1f}, {tb['padding']:.1%} padding), dropout on"
         + (", word embeddings frozen (as params.yaml trains)" if config.settings.freeze_word_embeddings else "")),
        ("infer", "Inference: torch.inference_mode, eval mode",
         f"batch {config.settings.eval_batch_size}, {ib['batches']} length-bucketed SST train batches ({ib['tokens']} real tokens, "
         f"{ib['padding']:.1%} padding)"),
    ):
        reps = config.train_reps if kind == "train" else config.infer_reps
        lines += [
            f"{title}",
            f"  {detail}",
            f"  {reps} timed repetitions per model after one warm-up, interleaved ABBA; medians; tokens = real (non-pad) tokens",
            f"  {'precision':<10}{'ours tok/s':>12}{'HF tok/s':>12}{'ours/HF':>9}  {'(per-rep range)':<17}"
            f"{'ours FLOP/s':>13}{'of peak':>9}",
        ]
        for label in labels:
            r = results[kind][label]
            peak = peaks["fp32" if label == "fp32" else "bf16"]
            lines.append(
                f"  {label:<10}{r['ours_tokens_per_s']:>12,.0f}{r['hf_tokens_per_s']:>12,.0f}{r['ratio']:>8.2f}x  "
                f"({r['paired_ratio_min']:.2f}-{r['paired_ratio_max']:.2f}){'':<6}"
                f"{_fmt_rate(r['ours_flops_per_s']):>12}{r['ours_flops_per_s'] / peak:>9.1%}"
            )
        lines.append("")
    if "eval_sets" in results:
        sets = results["eval_sets"]
        reps = len(next(iter(sets.values()))["ours_seconds"])
        lines += [
            f"Inference on the batches the evaluation stage scores ({main_label}): every dev split cut as train.predict cuts it",
            f"  (sorted by length, batch {config.settings.eval_batch_size}; siamese: a pair's two sentences side by side in one row, HF given the same per-query mask and positions);"
            + (f" {config.eval_batches} batch(es) per split, spread over its lengths;" if config.eval_batches else ""),
            "  each model runs as it would there: HF pads; ours "
            + ("packs a CPU batch's real tokens (padding costs it no matmul) and chunks attention;"
               if results["device"] == "cpu" else "pads too on a GPU;"),
            f"  {reps} timed repetitions per model after one warm-up, interleaved ABBA; medians",
            f"  {'dev split':<18}{'batches':>8}{'real tokens':>13}{'padding':>9}{'ours tok/s':>12}{'HF tok/s':>12}{'ours/HF':>9}  (per-rep range)",
        ]
        for set_name, r in sets.items():
            lines.append(
                f"  {set_name:<18}{r['batches']:>8}{r['tokens']:>13,}{r['padding']:>9.1%}{r['ours_tokens_per_s']:>12,.0f}"
                f"{r['hf_tokens_per_s']:>12,.0f}{r['ratio']:>8.2f}x  ({r['paired_ratio_min']:.2f}-{r['paired_ratio_max']:.2f})"
            )
        tokens = sum(r["tokens"] for r in sets.values())
        ours_s, hf_s = (sum(r["tokens"] / r[f"{m}_tokens_per_s"] for r in sets.values()) for m in ("ours", "hf"))
        lines += [
            f"  {'all of them':<18}{sum(r['batches'] for r in sets.values()):>8}{tokens:>13,}{'':>9}{tokens / ours_s:>12,.0f}"
            f"{tokens / hf_s:>12,.0f}{hf_s / ours_s:>8.2f}x  (sum of the medians)",
            "",
        ]
    if results["device"] == "cuda":
        gpu = results["machine"].get("gpu", "")
        spec = next((v for k, v in SPEC_BF16_PEAK.items() if k in gpu), None)
        r = results["train"].get("bf16")
        if r is not None:
            line = f"MFU (bf16 training): {r['ours_flops_per_s'] / peaks['bf16']:.1%} of the measured bf16 matmul peak"
            if spec:
                line += f", {r['ours_flops_per_s'] / spec:.1%} of the {_fmt_rate(spec)}FLOP/s spec-sheet dense bf16 peak"
            lines += [line, ""]
    if "compile" in results:
        lines += [f"torch.compile (dynamic shapes) of our encoder vs the same weights eager, {main_label}, same batches, ABBA medians"]
        for kind, title in (("train", "training"), ("infer", "inference")):
            r = results["compile"][kind]
            lines.append(
                f"  {title:<10} compiled/eager {r['ratio']:.2f}x ({r['paired_ratio_min']:.2f}-{r['paired_ratio_max']:.2f}), "
                f"{r['ours_tokens_per_s']:,.0f} vs {r['hf_tokens_per_s']:,.0f} tok/s; first call (compiling) {r['first_call_s']:.1f} s"
            )
        lines.append("")
    lines += [
        "FLOPs: training = 6 N T + 12 L h sum(s^2), inference = 2 N T + 4 L h sum(s^2), over real tokens only:",
        "  N transformer-layer params, T real tokens, s each sequence's real length, L layers, width h;",
        "  'of peak' = our achieved FLOP/s / the measured matmul peak of the same precision.",
        "",
    ]
    if "phases" in results:
        lines += [
            f"Each phase's training loop on the real prepared data: {config.phase_steps} steps from a fresh model, through",
            "  training.train_run as the pipeline runs it (model, losses, gradient strategy, bucketed batches); one step =",
            "  one batch of every task; examples = sentences or pairs; the first steps (warm-up) included",
            f"  {'run':<26}{'batch':>6}{'ms/step':>10}{'examples/s':>12}",
        ]
        for run_name, r in results["phases"].items():
            lines.append(f"  {run_name:<26}{r['batch_size']:>6}{r['ms_per_step']:>10,.0f}{r['examples_per_second']:>12,.1f}")
        lines.append("")
    elif "phases_skipped" in results:
        lines += [f"Each phase's training loop: skipped ({results['phases_skipped']})", ""]
    if "memory" in results:
        mem = results["memory"]
        method = mem["ours"]["method"]
        how = (
            "VmHWM of /proc/self/status, reset after loading (clear_refs 5), so 'peak' is the process's RSS high-water mark "
            "during the training steps and 'step +' its rise over the RSS after loading"
            if method == "VmHWM" else "ru_maxrss: the process's whole-life RSS high-water mark (loading included)"
        )
        lines += [
            f"Peak memory of the training steps above ({main_label}), each model alone in a fresh subprocess",
            f"  method: {how}" + ("; on CUDA also torch.cuda.max_memory_allocated" if results["device"] == "cuda" else ""),
        ]
        for model_name, label in (("ours", "ours"), ("hf", "HF")):
            r = mem[model_name]
            line = f"  {label:<5} peak RSS {r['rss_peak_mib']:8,.0f} MiB   step + {r['rss_peak_mib'] - r['rss_before_mib']:7,.0f} MiB"
            if "cuda_peak_mib" in r:
                line += f"   CUDA peak allocated {r['cuda_peak_mib']:,.0f} MiB (step + {r['cuda_peak_mib'] - r['cuda_before_mib']:,.0f})"
            lines.append(line)
        lines.append("")
    if "padding" in results:
        lines += [
            f"Padding: share of padded token slots, batch {config.settings.batch_size}, whole train splits, "
            "max_length " + ", ".join(f"{t} {n}" for t, n in config.max_length.items()),
            f"  {'task':<13}{'layout':<9}{'random':>9}{'length-bucketed':>17}",
        ]
        for task, layouts in results["padding"].items():
            for layout, r in layouts.items():
                lines.append(f"  {task:<13}{layout:<9}{r['random']:>9.1%}{r['bucketed']:>17.1%}")
        lines += [
            "  (cross: [CLS] a [SEP] b [SEP] as one row; siamese: a and b side by side in one row, each",
            "   attending only to itself; bucketing sorts within chunks of 50 batches by len(a) + len(b),",
            "   as training does; contrastive: the positive pairs of Quora and STS train, batched without",
            "   repeated texts)",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":  # measure_memory's fresh process: python benchmarks/bench.py '<spec>'
    print(json.dumps(memory_child(json.loads(sys.argv[1]))))
