"""How much of a SMART shift survives bf16 rounding (why smart.py's defaults are not the paper's).

SMART shifts the embedding layer's output by at most epsilon per entry (the paper: 1e-5, in
fp32). Under bf16 autocast that output enters the first layer rounded to 8 bits of mantissa.
This encodes the first SST dev sentences with the checkpoint, shifts every entry of their real
tokens by ±epsilon, and prints the share of entries whose bf16 value changes.

    python benchmarks/smart_bf16.py [--sentences 64] [--checkpoint default]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from optiminbert.errors import run_app

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import torch

    from optiminbert import settings
    from optiminbert.checkpoints import resolve_checkpoint
    from optiminbert.model import BertModel
    from optiminbert.tokenizer import load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--checkpoint", default="default")
    args = parser.parse_args()

    data = ROOT / settings.load(ROOT / "params.yaml")["data"] / "ids-sst-dev.csv"
    with data.open(encoding="utf-8") as file:
        texts = [row["sentence"] for _, row in zip(range(args.sentences), csv.DictReader(file, delimiter="\t"))]
    encoder = BertModel.from_pretrained(args.checkpoint).eval()
    encoded = load_tokenizer(resolve_checkpoint(args.checkpoint), 128).encode_batch(texts)
    length = max(len(e.ids) for e in encoded)
    ids = torch.tensor([e.ids + [0] * (length - len(e.ids)) for e in encoded])
    mask = ids != 0
    outputs = []
    handle = encoder.embeddings.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    with torch.no_grad():
        encoder(ids, mask.long())
    handle.remove()
    x = outputs[0][mask]
    print(f"embedding-layer output of {len(texts)} SST dev sentences, {len(x)} tokens: "
          f"mean |x| {x.abs().mean():.3f}, median {x.abs().median():.3f}")
    torch.manual_seed(0)
    for epsilon in (1e-5, 1e-4, 1e-3, 1e-2):
        shifted = x + epsilon * torch.randn_like(x).sign()
        changed = (shifted.bfloat16() != x.bfloat16()).float().mean().item()
        print(f"shift ±{epsilon:g} on every entry: {100 * changed:.1f}% of the entries change in bf16")


if __name__ == "__main__":
    run_app(main)
