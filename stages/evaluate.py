"""DVC stages `evaluate@<phase>` (dev metrics, dev/test predictions, the error analysis) and
`ensemble` (the phases' predictions averaged)."""

import typer

from optiminbert import settings
from optiminbert.errors import run_app
from optiminbert.steps.evaluate import evaluate

app = typer.Typer(add_completion=False)


@app.command()
def main(phase: str) -> None:
    evaluate(settings.load(), phase)


if __name__ == "__main__":
    run_app(app)
