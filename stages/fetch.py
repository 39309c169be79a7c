"""DVC stage `fetch`: the task files from the data source into data/raw/."""

import typer

from optiminbert import settings
from optiminbert.errors import run_app
from optiminbert.steps.fetch import fetch

app = typer.Typer(add_completion=False)


@app.command()
def main() -> None:
    fetch(settings.load())


if __name__ == "__main__":
    run_app(app)
