"""DVC stages `baseline_*`, `mtl`, `mtl_embed`, `specialist`: train one phase's runs from params.yaml."""

from typing import Optional

import typer

from optiminbert import settings
from optiminbert.errors import run_app
from optiminbert.steps.train import train

app = typer.Typer(add_completion=False)


@app.command()
def main(phase: str, task: Optional[str] = None, mode: Optional[str] = None) -> None:
    # A stage re-run after Ctrl-C/SIGTERM continues the interrupted training (same params only).
    train(settings.load(), phase, task, mode, resume=True)


if __name__ == "__main__":
    run_app(app)
