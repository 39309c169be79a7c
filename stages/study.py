"""DVC stages `train`, `default` and `paired` of study/dvc.yaml: mtl_embed trained with one of the study's
variants (study/params.yaml), on its seed or another."""

import typer

from optiminbert import settings
from optiminbert.errors import run_app
from optiminbert.steps.study import train_variant

app = typer.Typer(add_completion=False)


@app.command()
def main(variant: str, seed: int = typer.Option(None, help="train on this seed instead, into study/seeds/")) -> None:
    # A stage re-run after Ctrl-C/SIGTERM continues the interrupted training (same params only).
    train_variant(settings.load(), variant, seed)


if __name__ == "__main__":
    run_app(app)
