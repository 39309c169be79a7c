"""DVC stage `prepare`: clean and tokenize every task's data once, into data/prepared/."""

import typer

from optiminbert import params, pipeline
from optiminbert.cli import run_app

app = typer.Typer(add_completion=False)


@app.command()
def main() -> None:
    pipeline.prepare(params.load())


if __name__ == "__main__":
    run_app(app)
