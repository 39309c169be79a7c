"""Device, precision, threads and seeding: the few machine-dependent choices, in one place."""

from __future__ import annotations

import ctypes
import os
import random
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from optiminbert import distributed
from optiminbert.errors import UserError


@dataclass
class Runtime:
    """Where a model runs and at what precision."""

    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None for fp32

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    @classmethod
    def from_settings(cls, settings) -> "Runtime":
        """The run's device (one GPU per rank under torchrun) and precision; also sets the CPU's
        threads and allocator (``configure_cpu``)."""
        configure_cpu()
        device = resolve_device(settings["device"])
        if device.type == "cuda" and distributed.active():
            device = distributed.local_device()
        return cls(device, resolve_precision(settings["precision"], device))


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


def _cuda_has_bf16() -> bool:
    # T4s and V100s emulate bf16 (slowly) or lack it; fp16 with loss scaling is their fast path.
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch without the argument counts native support only
        return torch.cuda.is_bf16_supported()


PRECISIONS: dict[str, torch.dtype | None] = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. ``auto``: bf16 where the GPU or CPU computes
    it natively, else fp16 on a GPU (with loss scaling, ``grad_scaler``), else fp32."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if _cuda_has_bf16() else torch.float16
        return torch.bfloat16 if _cpu_has_bf16() else None
    if name not in PRECISIONS:
        raise UserError(f"unknown precision {name!r}: choose auto, {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


def precision_name(dtype: torch.dtype | None) -> str:
    return next(name for name, d in PRECISIONS.items() if d == dtype)


def grad_scaler(runtime: "Runtime") -> torch.amp.GradScaler | None:
    """For fp16 training: its narrow range flushes small gradients to zero, so the losses are
    scaled up before backward and the gradients down before the step (a step whose gradients
    overflowed is skipped and the scale lowered). bf16 and fp32 need none."""
    return torch.amp.GradScaler(runtime.device.type) if runtime.dtype == torch.float16 else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def adamw(params, **kwargs) -> torch.optim.AdamW:
    """AdamW with the fused implementation: one kernel per step instead of about ten per
    parameter tensor, a several-fold faster optimizer step on CPU (docs/performance.md)."""
    return torch.optim.AdamW(params, fused=True, **kwargs)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure_cpu() -> None:
    """Use every core we are allowed on (cgroup/affinity aware), unless the user set
    OMP_NUM_THREADS, and let the allocator keep freed memory (``keep_freed_memory``)."""
    if "OMP_NUM_THREADS" not in os.environ and hasattr(os, "sched_getaffinity"):
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    keep_freed_memory()


# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_BYTES = 1 << 30
MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_")


def keep_freed_memory() -> bool:
    """Have glibc's malloc reuse freed blocks instead of returning them to the kernel; True
    if it took the settings.

    By default glibc serves each block above a threshold with its own mmap and unmaps it on
    free; the threshold starts at 128 KiB and follows the largest block freed so far, up to
    32 MiB, and the heap's top is trimmed. So a fresh process's first batches, and every block
    over 32 MiB, land on fresh pages: a page fault and a kernel zero-fill per 4 KiB. With the
    threshold and the trim limit at 1 GiB the heap keeps its high-water mark and reuses it: a
    fresh process's inference (an evaluation stage) and training with the word-embedding
    gradient get faster; the default training loop, whose blocks stay under 32 MiB, is
    unchanged (benchmarks/allocator.py, docs/performance.md). Left alone where the user tuned
    malloc through the environment; a no-op where the C library has no mallopt (not glibc)."""
    if any(name in os.environ for name in MALLOC_ENV) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    # Older glibc caps the threshold at 32 MiB. Had it refused both, the trim setting below
    # would pin the threshold at 128 KiB (any setting stops it adapting): far worse.
    if mallopt(M_MMAP_THRESHOLD, KEEP_BYTES) != 1 and mallopt(M_MMAP_THRESHOLD, 32 << 20) != 1:
        return False
    return mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1
