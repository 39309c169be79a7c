"""The ``optiminbert`` command line."""

from __future__ import annotations

import runpy
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Optional

import typer

from optiminbert import phases, settings as settings_schema
from optiminbert.data import readable_source
from optiminbert.errors import UserError, run_app
from optiminbert.paths import RAW
from optiminbert.steps.evaluate import evaluate as evaluate_step
from optiminbert.steps.prepare import checked_settings
from optiminbert.steps.prepare import prepare as prepare_step
from optiminbert.steps.report import make_report
from optiminbert.steps.teach import teach as teach_step
from optiminbert.steps.train import plan, train as train_step

app = typer.Typer(
    help="Fine-tune a BERT encoder on SST-5, Quora and STS-B, multitask versus specialists.\n\n"
    "The full study runs with `dvc repro`; these commands run one step at a time. "
    "Settings come from params.yaml (if present, else the same embedded defaults); "
    "--set key=value and the options given here override them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

PHASE_NAMES = " | ".join(phases.PHASES)
ParamsOption = typer.Option(None, "--params", help="params file to read (default: ./params.yaml, else the embedded defaults)")
SetOption = typer.Option(None, "--set", "-S", help="override a setting, as `dvc exp run -S` does: --set lr=2e-5 (repeatable)")


def _load(params: Optional[Path]) -> dict:
    return settings_schema.load(params)


def _overrides(assignments: Optional[list[str]], options: dict) -> dict:
    """The options given, then ``--set``'s assignments (one key given both ways is refused)."""
    assigned = settings_schema.parse_assignments(assignments or [])
    both = [k for k, v in options.items() if v is not None and k in assigned]
    if both:
        raise UserError(f"{', '.join(both)} given both as an option and with --set: give it once")
    return {**options, **assigned}


def _show_version(shown: bool) -> None:
    if shown:
        typer.echo(f"optiminbert {version('optiminbert')}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="show Python tracebacks instead of one-line errors"),
    show_version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True, help="print the version"),
):
    """Global options."""


@app.command()
def prepare(
    params: Optional[Path] = ParamsOption,
    data: Optional[str] = typer.Option(None, help="data directory or base URL of the CS224N data/ folder"),
    checkpoint: Optional[str] = typer.Option(None, help="'default', a Hugging Face BERT directory or Hub name"),
    max_length: Optional[int] = typer.Option(None, help="truncate every text to this many tokens"),
):
    """Clean and tokenize every task's train/dev/test files into data/prepared/ (a URL's files
    are downloaded into data/raw/ first)."""
    tree, overrides = _load(params), {"checkpoint": checkpoint, "max_length": max_length}
    checked_settings(tree, overrides)  # before anything is downloaded
    source = readable_source(settings_schema.resolve_step(tree, "fetch", {"data": data}).data, RAW)
    prepare_step(tree, overrides, source)


@app.command()
def train(
    phase: str = typer.Argument(..., help=PHASE_NAMES),
    task: Optional[str] = typer.Option(None, help="baseline: sst or cfimdb (default sst); specialist: only this task"),
    mode: Optional[str] = typer.Option(None, help="baseline: pretrain (encoder frozen) or finetune (default finetune)"),
    params: Optional[Path] = ParamsOption,
    assignments: Optional[list[str]] = SetOption,
    lr: Optional[float] = typer.Option(None, help="peak learning rate"),
    head_lr: Optional[float] = typer.Option(None, help="the task heads' peak learning rate (0: lr)"),
    epochs: Optional[int] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None),
    dropout: Optional[float] = typer.Option(None, help="dropout before each task head"),
    ema: Optional[float] = typer.Option(None, help="score and save a moving average of the weights with this decay (0: off)"),
    seed: Optional[int] = typer.Option(None),
    surgery: Optional[str] = typer.Option(None, help="gradient strategy of a joint phase: " + " | ".join(settings_schema.SCHEMA["surgery"].choices)),
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
    checkpoint: Optional[str] = typer.Option(None, help="'default', a Hugging Face BERT directory or Hub name"),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda"),
    precision: Optional[str] = typer.Option(None, help="auto | bf16 | fp32"),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the encoder (pays on a GPU)"),
    resume: bool = typer.Option(
        False, "--resume", help="continue a run stopped by Ctrl-C or SIGTERM (same settings) instead of starting over"
    ),
):
    """Train one phase's model(s) into models/ (needs `optiminbert prepare` first).

    Ctrl-C or SIGTERM stops at the end of the current step and saves a resumable state under .resume/.

    The same command with --resume continues from it. `optiminbert params PHASE` shows the settings it uses."""
    options = dict(
        lr=lr, head_lr=head_lr, epochs=epochs, batch_size=batch_size, dropout=dropout, ema=ema, seed=seed,
        surgery=surgery, contrastive=contrastive, online_contrastive=online_contrastive,
        token_alignment=token_alignment, pooling=pooling,
        freeze_layers=freeze_layers, checkpoint=checkpoint, device=device, precision=precision, compile=compile,
    )
    train_step(_load(params), phase, task, mode, _overrides(assignments, options), resume=resume)


@app.command()
def teach(params: Optional[Path] = ParamsOption):
    """Score every training example with the teacher phases (distill.teachers) into data/teachers/,
    what `optiminbert train distill` learns from (needs the teachers trained first)."""
    teach_step(_load(params))


@app.command("params")
def show_params(
    phase: Optional[str] = typer.Argument(None, help=f"{PHASE_NAMES} (none: every setting with its meaning)"),
    task: Optional[str] = typer.Option(None, help="baseline: sst or cfimdb; specialist: only this task"),
    mode: Optional[str] = typer.Option(None, help="baseline: pretrain or finetune"),
    params: Optional[Path] = ParamsOption,
    assignments: Optional[list[str]] = SetOption,
):
    """Print the resolved settings a run would use (`key: value  # meaning (where it came from)`)."""
    tree = _load(params)
    overrides = settings_schema.parse_assignments(assignments or [])
    if phase is None:
        resolved = settings_schema.resolve(tree, (), overrides)
        typer.echo("\n".join(settings_schema.describe(resolved)))
        return
    _, runs = plan(tree, phase, task, mode, overrides)
    for number, (run, resolved) in enumerate(runs):
        typer.echo(("\n" if number else "") + f"# {run.name}: {', '.join(run.sections)} over the top level")
        typer.echo("\n".join(settings_schema.describe(resolved)))


@app.command()
def evaluate(
    phase: str = typer.Argument(..., help=f"{PHASE_NAMES} | ensemble"),
    params: Optional[Path] = ParamsOption,
):
    """Score a trained phase on dev; write metrics/<phase>.json, predictions and the analysis."""
    metrics = evaluate_step(_load(params), phase)
    typer.echo(metrics)


@app.command()
def report(params: Optional[Path] = ParamsOption):
    """Render the paper's tables with our numbers beside them (metrics/report.md)."""
    _load(params)  # a broken params file is named here as everywhere
    make_report()


@app.command()
def export(
    phase: str = typer.Argument(..., help=f"{PHASE_NAMES} (or a trained run's directory)"),
    to: Path = typer.Option(..., "--to", help="the directory to write (an earlier export there is replaced)"),
    task: Optional[str] = typer.Option(None, help="specialist or baseline: the run answering this task"),
    mode: Optional[str] = typer.Option(None, help="baseline: pretrain or finetune (default finetune)"),
):
    """Write a trained model where other tools load it: a Hugging Face directory (encoder,
    tokenizer, heads, model card), for siamese runs also a sentence-transformers model."""
    from optiminbert.export import export_run
    from optiminbert.paths import MODELS

    if Path(phase).is_dir():
        run_dir, name = Path(phase), Path(phase).name
    else:
        runs = phases.get(phase).select(task, mode)
        if len(runs) != 1:
            raise UserError(f"{phase} has {len(runs)} runs ({', '.join(r.name for r in runs)}): choose one with --task")
        run_dir, name = runs[0].path(MODELS), runs[0].name
    sentence_transformers = export_run(run_dir, to, name)
    kinds = "a Hugging Face and sentence-transformers model" if sentence_transformers else "a Hugging Face model"
    typer.echo(f"{run_dir} exported to {to} as {kinds}")


@app.command()
def predict(
    phase: str = typer.Argument(..., help=f"{PHASE_NAMES} (or a trained run's directory)"),
    task: str = typer.Option(..., help="sst | quora | sts (cfimdb for the baseline)"),
    text: Optional[str] = typer.Option(None, help="a sentence (or the first of a pair)"),
    text2: Optional[str] = typer.Option(None, help="the second sentence of a pair"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="a CSV with columns sentence (or sentence1, sentence2), optional id"),
    out: Optional[Path] = typer.Option(None, help="write predictions to this CSV (default: print)"),
    params: Optional[Path] = ParamsOption,
):
    """Score new text with a trained model: sentiment, paraphrase or similarity."""
    from optiminbert.atomic import write_text_atomic
    from optiminbert.data import TASKS, clean_text
    from optiminbert.predict import predict_texts, read_inputs, run_dir_for

    settings = settings_schema.resolve_step(_load(params), "evaluate")
    run_dir = run_dir_for(phase, task)
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
        texts = [tuple(clean_text(t) for t in ((text, text2) if pair else (text,)))]
        empty = [option for option, t in zip(("--text", "--text2"), texts[0]) if not t]
        if empty:  # as the CSV path refuses an empty field
            raise UserError(f"{' and '.join(empty)} holds no text")
        ids = ["1"]
    frame = predict_texts(run_dir, task, ids, texts, settings)
    if out is not None:
        write_text_atomic(frame.to_csv(index=False), out)
        typer.echo(f"wrote {len(frame)} predictions to {out}")
    else:
        typer.echo(frame.to_string(index=False))


BENCH_SCRIPT = Path("benchmarks/encoder_speed.py")


@app.command(add_help_option=False, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context):
    """Our encoder against transformers.BertModel (runs benchmarks/encoder_speed.py; its options pass through)."""
    if not BENCH_SCRIPT.is_file():
        raise UserError(f"{BENCH_SCRIPT} not found: run `optiminbert bench` from the repository root")
    sys.argv = [str(BENCH_SCRIPT), *ctx.args]
    runpy.run_path(str(BENCH_SCRIPT), run_name="__main__")


def main() -> None:
    run_app(_one_line_usage_errors)


def _one_line_usage_errors() -> None:
    """The app, with click's usage errors (`--epochs two`) as one line like every other error,
    instead of its framed box. Told apart by class name: typer vendors its own copy of click,
    whose exception classes are not click's."""
    try:
        code = app(standalone_mode=False)
    except Exception as exc:
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "NoArgsIsHelpError" in kinds:
            app(["--help"])
            return
        if "Abort" in kinds:
            raise KeyboardInterrupt from None
        if "ClickException" not in kinds:
            raise
        context = getattr(exc, "ctx", None)
        hint = f" (see {context.command_path} --help)" if context is not None and "UsageError" in kinds else ""
        raise UserError(exc.format_message().replace("\n", " ") + hint) from None
    if isinstance(code, int) and code:
        sys.exit(code)
