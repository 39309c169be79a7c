"""DVC stage `report`: the paper's tables with our numbers (metrics/report.md, plots/phases.csv)."""

import typer

from optiminbert.errors import run_app
from optiminbert.steps.report import make_report

app = typer.Typer(add_completion=False)


@app.command()
def main() -> None:
    make_report()


if __name__ == "__main__":
    run_app(app)
