"""Our minBERT encoder against transformers.BertModel, proven in the same run.

Same weights, same real SST batches, one process: training and inference throughput (ours/HF),
the machine's matmul peak and our share of it, peak memory per model, and the padding of
length-bucketed vs random batches. Settings (checkpoint, data, batch sizes, precision) come
from params.yaml; the logic lives in optiminbert/bench.py (also `optiminbert bench`).

    python benchmarks/encoder_speed.py [--quick]

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
    from optiminbert.bench import main

    main(sys.argv[1:])
