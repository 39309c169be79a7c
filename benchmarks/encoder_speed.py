"""Our minBERT encoder against transformers.BertModel, proven in the same run.

Same weights, same real SST batches, one process: training and inference throughput (ours/HF),
the machine's matmul peak and our share of it, peak memory per model, and the padding of
length-bucketed vs random batches, and each phase's training loop on the prepared data.
Settings (checkpoint, data, batch sizes, precision) come from params.yaml; the logic lives in
optiminbert/bench.py. This script is `optiminbert bench` and takes the same options:

    python benchmarks/encoder_speed.py [--quick] [--compile] [--note TEXT]

Writes the printed report to benchmarks/results/encoder_speed-<device>.txt as well
(--quick: encoder_speed-<device>-quick.txt, so a smoke run never replaces the full result).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    os.chdir(ROOT)  # params.yaml, the data path and benchmarks/results/ are relative to the repo root
    from optiminbert.cli import main

    sys.argv = ["optiminbert", "bench", *sys.argv[1:]]  # the same command as `optiminbert bench`
    main()
