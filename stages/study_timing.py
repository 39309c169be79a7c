"""DVC stage `timing` of study/dvc.yaml: what a training step of each study variant costs."""

import typer

from optiminbert import settings
from optiminbert.errors import run_app
from optiminbert.steps.study_timing import time_variants

app = typer.Typer(add_completion=False)


@app.command()
def main() -> None:
    time_variants(settings.load())


if __name__ == "__main__":
    run_app(app)
