"""DVC stage `report`: the paper's tables with our numbers (metrics/report.md, plots/phases.csv)."""

import typer

from optiminbert import params, pipeline
from optiminbert.cli import run_app

app = typer.Typer(add_completion=False)


@app.command()
def main() -> None:
    pipeline.make_report(params.load())


if __name__ == "__main__":
    run_app(app)
