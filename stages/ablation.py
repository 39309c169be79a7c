"""DVC stages of ablation/dvc.yaml: a specialist trained with a contrastive loss, and the ablation's report."""

import typer

from optiminbert import params, pipeline
from optiminbert.cli import run_app

app = typer.Typer(add_completion=False)


@app.command()
def train(loss: str, task: str) -> None:
    pipeline.train_ablation(params.load(), loss, task)


@app.command()
def report() -> None:
    typer.echo(pipeline.ablation_report())


if __name__ == "__main__":
    run_app(app)
