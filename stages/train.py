"""DVC stages `baseline_*`, `mtl`, `mtl_embed`, `specialist`: train one phase from params.yaml."""

from typing import Optional

import typer

from optiminbert import params, pipeline
from optiminbert.cli import run_app

app = typer.Typer(add_completion=False)


@app.command()
def main(phase: str, task: Optional[str] = None, mode: str = "finetune") -> None:
    # A stage re-run after Ctrl-C/SIGTERM continues the interrupted training (same params only).
    if phase == "baseline":
        pipeline.train_baseline(params.load(), task, mode, resume=True)
    else:
        pipeline.train_phase(params.load(), phase, resume=True)


if __name__ == "__main__":
    run_app(app)
