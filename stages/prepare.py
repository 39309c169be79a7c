"""DVC stage `prepare`: clean and tokenize every task's data once, into data/prepared/."""

import typer

from optiminbert import settings
from optiminbert.errors import run_app
from optiminbert.steps.prepare import prepare

app = typer.Typer(add_completion=False)


@app.command()
def main() -> None:
    prepare(settings.load())


if __name__ == "__main__":
    run_app(app)
