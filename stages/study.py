"""DVC stages of study/dvc.yaml: mtl_embed trained with one multitask method or STS loss, every
variant's cost per step, and the study's report."""

import typer

from optiminbert import settings
from optiminbert.errors import run_app
from optiminbert.steps.study import study_report, time_variants, train_variant

app = typer.Typer(add_completion=False)


@app.command()
def train(variant: str, seed: int = typer.Option(None, help="train on this seed instead, into study/seeds/")) -> None:
    train_variant(settings.load(), variant, seed)


@app.command()
def timing(steps: int = 20) -> None:
    time_variants(settings.load(), steps)


@app.command()
def report() -> None:
    typer.echo(study_report())


if __name__ == "__main__":
    run_app(app)
