"""DVC stage `teach`: the teachers' predictions on the training data, for the distilled student."""

import typer

from optiminbert import settings
from optiminbert.errors import run_app
from optiminbert.steps.teach import teach

app = typer.Typer(add_completion=False)


@app.command()
def main() -> None:
    teach(settings.load())


if __name__ == "__main__":
    run_app(app)
