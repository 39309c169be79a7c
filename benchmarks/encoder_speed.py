"""Our minBERT encoder against transformers.BertModel, proven in the same run.

Same weights, same real SST batches, one process: training and inference throughput (ours/HF),
the machine's matmul peak and our share of it, peak memory per model, and the padding of
length-bucketed vs random batches, and each phase's training loop on the prepared data.
Settings (checkpoint, data, batch sizes, precision) come from params.yaml; the measuring lives
in benchmarks/bench.py. `optiminbert bench` runs this script with the same options:

    python benchmarks/encoder_speed.py [--quick] [--compile] [--note TEXT]

Writes the printed report to benchmarks/results/encoder_speed-<device>.txt as well
(--quick: encoder_speed-<device>-quick.txt, so a smoke run never replaces the full result).
Paths are relative to the repository root.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# `optiminbert bench` runs this file through runpy, which (unlike `python benchmarks/...`) does
# not put the script's folder on sys.path.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench import RESULTS, BenchConfig, run

from optiminbert import settings
from optiminbert.errors import run_app

SHARED = ("checkpoint", "data", "device")  # options that override params.yaml's settings


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--quick", action="store_true", help="a ~30 s smoke run: fewer repetitions, bf16/auto only")
    parse.add_argument("--params", type=Path, help="params file to read (default: ./params.yaml, else the embedded defaults)")
    parse.add_argument("--checkpoint", help="'default' or a Hugging Face BERT directory")
    parse.add_argument("--data", help="data directory of the CS224N files (default: params.yaml's)")
    parse.add_argument("--device", choices=settings.SCHEMA["device"].choices, help="default: params.yaml's")
    parse.add_argument("--results", type=Path, default=RESULTS, help="folder for encoder_speed-<device>.txt")
    parse.add_argument("--compile", action="store_true", help="also time torch.compile against eager (minutes on a CPU)")
    parse.add_argument("--note", default="", help="a line for the report's header, e.g. what else ran")
    parse.add_argument("--debug", action="store_true", help="show Python tracebacks instead of one-line errors")
    return parse


def config(args: argparse.Namespace) -> BenchConfig:
    """The benchmark the options ask for, over the params file's settings."""
    overrides = {name: getattr(args, name) for name in SHARED if getattr(args, name) is not None}
    make = BenchConfig.quick if args.quick else BenchConfig
    return make(settings.load(args.params), overrides, compile=args.compile, note=args.note)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    run(config(args), args.results)


if __name__ == "__main__":
    os.chdir(HERE.parent)  # params.yaml, the data path and benchmarks/results/ are relative to the repo root
    run_app(main)
