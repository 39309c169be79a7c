"""Device, precision, threads and seeding: the few machine-dependent choices, in one place."""

from __future__ import annotations

import os
import random
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from optiminbert.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for but no CUDA GPU is visible; use device=auto or cpu")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}: choose auto, cpu or cuda")
    return torch.device(name)


def _cpu_has_bf16() -> bool:
    # bf16 autocast only pays on CPUs with native bf16 dot products; elsewhere it is emulated and slow.
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" or _cpu_has_bf16() else None
    if name == "bf16":
        return torch.bfloat16
    if name == "fp32":
        return None
    raise UserError(f"unknown precision {name!r}: choose auto, bf16 or fp32")


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16"}[dtype]  # what resolve_precision gives


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def adamw(params, **kwargs) -> torch.optim.AdamW:
    """AdamW with the fused implementation: one kernel per step instead of about ten per
    parameter tensor. On the default encoder's 11M trainable weights a step takes 7 ms instead
    of 47 ms on the 2-core CPU, which adds up over the pipeline's ~2,700 steps."""
    return torch.optim.AdamW(params, fused=True, **kwargs)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads() -> None:
    """Use every core we are allowed on (cgroup/affinity aware), unless the user set OMP_NUM_THREADS."""
    if "OMP_NUM_THREADS" not in os.environ and hasattr(os, "sched_getaffinity"):
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
