"""DVC stage `evaluate@<phase>`: dev metrics, dev/test predictions and the error analysis."""

import typer

from optiminbert import params, pipeline
from optiminbert.cli import run_app

app = typer.Typer(add_completion=False)


@app.command()
def main(phase: str) -> None:
    pipeline.evaluate(params.load(), phase)


if __name__ == "__main__":
    run_app(app)
