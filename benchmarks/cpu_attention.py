"""CPU attention: SDPA's fused kernel against ``model.cpu_attention``, the plain matmuls and
softmax that CPU inference runs in cache-sized chunks of rows, and the same unchunked, on the
shapes of this model's evaluation batches (batch 128, the default checkpoint's 12 heads of 32).
Inference only (no autograd, bf16 autocast for the bf16 rows, as the evaluation runs); each
repetition runs the three in turn, rotating which goes first, and the medians are compared.

Accuracy: the mean absolute error of each output against SDPA on the same inputs in fp32,
for SDPA, for ours (under bf16 autocast its scores are bf16, as in training) and for the same
matmuls with fp32 scores (as SDPA's kernel keeps them).

    python benchmarks/cpu_attention.py [--reps 7] [--lengths 16 32 64 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from optiminbert import model
from optiminbert.runtime import autocast, configure_cpu


def timed(fn, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return 1000 * (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 24, 32, 48, 64, 96, 128, 200])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5, help="calls per timed repetition")
    args = parser.parse_args()
    configure_cpu()
    cpu = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    print(f"batch {args.batch}, {args.heads} heads of {args.head_dim}, {torch.get_num_threads()} threads, torch {torch.__version__};"
          f" ms per call, medians of {args.reps}; the last 3 keys of every row padded; error: mean |output - fp32 SDPA|")
    print(f"{'dtype':<6}{'length':>7}{'SDPA':>8}{'unchunked':>11}{'chunked':>9}{'SDPA/chunked':>14}"
          f"{'error: SDPA':>13}{'ours':>10}{'fp32 scores':>13}")
    for dtype in (torch.bfloat16, torch.float32):
        for length in args.lengths:
            shape = (args.batch, args.heads, length, args.head_dim)
            q, k, v = (torch.randn(shape, generator=generator).to(dtype) for _ in range(3))
            padded = torch.zeros(args.batch, 1, 1, length, dtype=torch.bool)
            padded[..., -3:] = True
            bias = torch.zeros(padded.shape).masked_fill(padded, torch.finfo(torch.float32).min)  # fp32, as under autocast

            def ours(chunk_bytes: int):
                def run():
                    with autocast(cpu, dtype if dtype != torch.float32 else None):
                        return model.cpu_attention(q, k, v, bias, 0.0, chunk_bytes)
                return run

            kinds = {
                "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(dtype)),
                "unchunked": ours(1 << 62),
                "chunked": ours(model.SCORES_CHUNK_BYTES),
            }
            ms: dict[str, list[float]] = {name: [] for name in kinds}
            with torch.inference_mode():
                for fn in kinds.values():
                    fn()
                names = list(kinds)
                for rep in range(args.reps):
                    for name in names[rep % 3:] + names[: rep % 3]:
                        ms[name].append(timed(kinds[name], args.calls))
                reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=bias)
                scores = q.float() @ k.float().transpose(-2, -1) * args.head_dim**-0.5 + bias
                error = {
                    "sdpa": kinds["sdpa"](), "ours": kinds["chunked"](), "fp32 scores": scores.softmax(-1).to(dtype) @ v,
                }
                error = {name: float((out.float() - reference).abs().mean()) for name, out in error.items()}
            med = {name: statistics.median(times) for name, times in ms.items()}
            label = "bf16" if dtype == torch.bfloat16 else "fp32"
            print(f"{label:<6}{length:>7}{med['sdpa']:>8.2f}{med['unchunked']:>11.2f}{med['chunked']:>9.2f}"
                  f"{med['sdpa'] / med['chunked']:>13.2f}x{error['sdpa']:>13.1e}{error['ours']:>10.1e}{error['fp32 scores']:>13.1e}",
                  flush=True)


if __name__ == "__main__":
    main()
