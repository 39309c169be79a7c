"""DVC stages of ablation/dvc.yaml: a specialist trained with a contrastive loss, and the ablation's report."""

import typer

from optiminbert import settings
from optiminbert.errors import run_app
from optiminbert.steps.ablation import ablation_report, train_ablation

app = typer.Typer(add_completion=False)


@app.command()
def train(loss: str, task: str) -> None:
    train_ablation(settings.load(), loss, task)


@app.command()
def report() -> None:
    typer.echo(ablation_report())


if __name__ == "__main__":
    run_app(app)
