"""DVC stages of study/dvc.yaml: every variant's cost per step, and the study's report."""

import typer

from optiminbert import settings
from optiminbert.errors import run_app
from optiminbert.steps.study_report import study_report, time_variants

app = typer.Typer(add_completion=False)


@app.command()
def timing() -> None:
    time_variants(settings.load())


@app.command()
def report() -> None:
    typer.echo(study_report())


if __name__ == "__main__":
    run_app(app)
