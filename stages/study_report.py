"""DVC stage `report` of study/dvc.yaml: the variants' dev scores beside the default's, with their costs."""

import typer

from optiminbert.errors import run_app
from optiminbert.steps.study_report import study_report

app = typer.Typer(add_completion=False)


@app.command()
def main() -> None:
    typer.echo(study_report())


if __name__ == "__main__":
    run_app(app)
