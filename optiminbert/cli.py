"""The ``optiminbert`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from optiminbert import params as params_file
from optiminbert import pipeline
from optiminbert.errors import UserError
from optiminbert.resume import Interrupted

app = typer.Typer(
    help="Fine-tune a BERT encoder on SST-5, Quora and STS-B, multitask versus specialists.\n\n"
    "The full study runs with `dvc repro`; these commands run one step at a time. "
    "Settings come from params.yaml (if present) and the options given here override them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ParamsOption = typer.Option(Path("params.yaml"), "--params", help="params file to read (missing: embedded defaults)")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show Python tracebacks instead of one-line errors")):
    """Global options."""


@app.command()
def prepare(
    params: Path = ParamsOption,
    data: Optional[str] = typer.Option(None, help="data directory or base URL of the CS224N data/ folder"),
    checkpoint: Optional[str] = typer.Option(None, help="'default' or a Hugging Face BERT directory"),
    max_length: Optional[int] = typer.Option(None, help="truncate every text to this many tokens"),
):
    """Load, clean and tokenize every task's train/dev/test files into data/prepared/."""
    pipeline.prepare(params_file.load(params), {"data": data, "checkpoint": checkpoint, "max_length": max_length})


@app.command()
def train(
    phase: str = typer.Argument(..., help="baseline | mtl | mtl_embed | specialist"),
    task: Optional[str] = typer.Option(None, help="baseline: sst or cfimdb (default sst); specialist: only this task"),
    mode: Optional[str] = typer.Option(None, help="baseline: pretrain (encoder frozen) or finetune (default finetune)"),
    params: Path = ParamsOption,
    lr: Optional[float] = typer.Option(None, help="peak learning rate"),
    head_lr: Optional[float] = typer.Option(None, help="the task heads' peak learning rate (0: lr)"),
    epochs: Optional[int] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None),
    dropout: Optional[float] = typer.Option(None, help="dropout before each task head"),
    ema: Optional[float] = typer.Option(None, help="score and save a moving average of the weights with this decay (0: off)"),
    seed: Optional[int] = typer.Option(None),
    surgery: Optional[str] = typer.Option(None, help="gradient strategy: none | pcgrad"),
    contrastive: Optional[str] = typer.Option(None, help="extra loss on positive pairs: none | mnrl | gist"),
    online_contrastive: Optional[float] = typer.Option(
        None, help="siamese paraphrase: weight of the online contrastive loss on (u, v) added to BCE (0: off)"
    ),
    token_alignment: Optional[bool] = typer.Option(
        None, "--token-alignment/--no-token-alignment",
        help="siamese paraphrase head: also read how well each question's tokens are matched in the other",
    ),
    pooling: Optional[str] = typer.Option(None, help="cross-encoded heads read: cls (pooled [CLS]) | mean"),
    freeze_layers: Optional[int] = typer.Option(None, help="train without the embeddings and the bottom N layers (faster)"),
    checkpoint: Optional[str] = typer.Option(None, help="'default' or a Hugging Face BERT directory"),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda"),
    precision: Optional[str] = typer.Option(None, help="auto | bf16 | fp32"),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the encoder (pays on a GPU)"),
    resume: bool = typer.Option(
        False, "--resume", help="continue a run stopped by Ctrl-C or SIGTERM (same settings) instead of starting over"
    ),
):
    """Train one phase's model(s) into models/ (needs `optiminbert prepare` first).

    Ctrl-C or SIGTERM stops at the end of the current step and saves a resumable state under .resume/.

    The same command with --resume continues from it."""
    loaded = params_file.load(params)
    overrides = dict(
        lr=lr, head_lr=head_lr, epochs=epochs, batch_size=batch_size, dropout=dropout, ema=ema, seed=seed,
        surgery=surgery, contrastive=contrastive, online_contrastive=online_contrastive,
        token_alignment=token_alignment, pooling=pooling,
        freeze_layers=freeze_layers, checkpoint=checkpoint, device=device, precision=precision, compile=compile,
    )
    pipeline.train(loaded, phase.replace("-", "_"), task, mode, overrides, resume=resume)


@app.command()
def evaluate(
    phase: str = typer.Argument(..., help="baseline | mtl | mtl_embed | specialist"),
    params: Path = ParamsOption,
):
    """Score a trained phase on dev; write metrics/<phase>.json, predictions and the analysis."""
    metrics = pipeline.evaluate(params_file.load(params), phase.replace("-", "_"))
    typer.echo(metrics)


@app.command()
def report(params: Path = ParamsOption):
    """Render the paper's tables with our numbers beside them (metrics/report.md)."""
    pipeline.make_report(params_file.load(params))


@app.command()
def predict(
    phase: str = typer.Argument(..., help="mtl | mtl_embed | specialist (or a trained run's directory)"),
    task: str = typer.Option(..., help="sst | quora | sts"),
    text: Optional[str] = typer.Option(None, help="a sentence (or the first of a pair)"),
    text2: Optional[str] = typer.Option(None, help="the second sentence of a pair"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="a CSV with columns sentence (or sentence1, sentence2), optional id"),
    out: Optional[Path] = typer.Option(None, help="write predictions to this CSV (default: print)"),
    params: Path = ParamsOption,
):
    """Score new text with a trained model: sentiment, paraphrase or similarity."""
    from optiminbert.atomic import write_text_atomic
    from optiminbert.data import TASKS
    from optiminbert.predict import predict_texts, read_inputs

    p = params_file.resolve(params_file.load(params), "evaluate")
    run_dir = pipeline.run_dir(phase, task)
    pair_tasks = [t for t, spec in TASKS.items() if len(spec.text_columns) == 2]
    pair = task in pair_tasks
    if csv is not None and (text or text2):
        raise UserError("give --csv or --text, not both")
    if text2 and not pair:
        raise UserError(f"task {task} scores single sentences: --text2 is for the pair tasks {' and '.join(pair_tasks)}")
    if csv is not None:
        ids, texts = read_inputs(csv, task)
    else:
        if not text or (pair and not text2):
            raise UserError(f"task {task} needs --text{' and --text2' if pair else ''}, or --csv")
        ids, texts = ["1"], [(text, text2) if pair else (text,)]
    frame = predict_texts(run_dir, task, ids, texts, p)
    if out is not None:
        write_text_atomic(frame.to_csv(index=False), out)
        typer.echo(f"wrote {len(frame)} predictions to {out}")
    else:
        typer.echo(frame.to_string(index=False))


@app.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="a ~30 s smoke run: fewer repetitions, bf16/auto only"),
    params: Path = ParamsOption,
    checkpoint: Optional[str] = typer.Option(None, help="'default' or a Hugging Face BERT directory"),
    data: Optional[str] = typer.Option(None, help="data directory of the CS224N files (default: params.yaml's)"),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda"),
    results: Path = typer.Option(Path("benchmarks/results"), help="folder for encoder_speed-<device>.txt"),
    compile: bool = typer.Option(False, "--compile", help="also time torch.compile against eager (minutes on a CPU)"),
    note: str = typer.Option("", help="a line for the report's header, e.g. what else ran"),
):
    """Our encoder vs transformers.BertModel on the same weights and batches.

    Speed, memory and padding of both, and each phase's training loop on the prepared data."""
    from optiminbert.bench import BenchConfig, run

    chosen = (("checkpoint", checkpoint), ("data", data), ("device", device), ("compile", compile), ("note", note))
    overrides = {k: v for k, v in chosen if v}
    loaded = params_file.load(params)
    run(BenchConfig.from_params(params_file.resolve(loaded, "prepare"), quick=quick, params=loaded, **overrides), results)


def main() -> None:
    run_app(app)


def run_app(typer_app: typer.Typer) -> None:
    """Run a Typer app with one-line errors (tracebacks only with --debug)."""
    try:
        typer_app()
    except (UserError, OSError) as exc:  # OSError: the file system's answer (disk full, permission denied)
        if "--debug" in sys.argv:
            raise
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    except Interrupted as exc:
        sys.stderr.write(f"interrupted: {exc}\n")
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
