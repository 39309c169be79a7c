"""The machine-dependent choices (runtime.py): the run's device and precision from its settings,
and the host allocator's settings against a fake C library."""

from __future__ import annotations

import pytest
import torch

from optiminbert import runtime
from optiminbert.errors import UserError
from optiminbert.runtime import Runtime


@pytest.fixture
def no_allocator_changes(monkeypatch):
    """``Runtime.from_settings`` also tunes this process's malloc and threads: not in a test."""
    monkeypatch.setattr(runtime, "configure_cpu", lambda: None)


@pytest.mark.parametrize(
    "precision, dtype", [("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16), ("auto", "cpu-dependent")]
)
def test_runtime_from_settings_resolves_device_and_precision(tiny_params, no_allocator_changes, precision, dtype) -> None:
    got = Runtime.from_settings(tiny_params.replace(device="cpu", precision=precision))
    assert got.device == torch.device("cpu")
    if dtype == "cpu-dependent":  # bf16 only where the CPU has native bf16 dot products
        dtype = torch.bfloat16 if runtime._cpu_has_bf16() else None
    assert got.dtype == dtype
    assert runtime.precision_name(got.dtype) == {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    assert (runtime.grad_scaler(got) is not None) == (dtype == torch.float16)  # loss scaling for fp16 only


@pytest.mark.parametrize("native_bf16, dtype", [(True, torch.bfloat16), (False, torch.float16)], ids=["A100", "T4"])
def test_auto_precision_on_a_gpu_is_bf16_only_where_it_is_native(monkeypatch, native_bf16, dtype) -> None:
    """bf16 on a T4 or V100 is emulated, slowly: there auto is fp16 with loss scaling."""
    asked = []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: asked.append(including_emulation) or native_bf16)
    assert runtime.resolve_precision("auto", torch.device("cuda")) == dtype
    assert asked == [False]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_asking_for_cuda_without_a_gpu_is_a_one_line_error(tiny_params, no_allocator_changes) -> None:
    with pytest.raises(UserError, match="device 'cuda' was asked for but no CUDA GPU is visible"):
        Runtime.from_settings(tiny_params.replace(device="cuda"))
    assert Runtime.from_settings(tiny_params.replace(device="auto")).device == torch.device("cpu")


class FakeLibc:
    """Records mallopt calls; refuses mmap thresholds above ``mmap_cap`` as older glibc does."""

    def __init__(self, mmap_cap: int):
        self.mmap_cap, self.calls = mmap_cap, []

    def mallopt(self, option: int, value: int) -> int:
        self.calls.append((option, value))
        return int(option != runtime.M_MMAP_THRESHOLD or value <= self.mmap_cap)


@pytest.mark.parametrize(
    "mmap_cap, expected_calls, took",
    [
        (1 << 40, [(runtime.M_MMAP_THRESHOLD, runtime.KEEP_BYTES), (runtime.M_TRIM_THRESHOLD, runtime.KEEP_BYTES)], True),
        (32 << 20, [(runtime.M_MMAP_THRESHOLD, runtime.KEEP_BYTES), (runtime.M_MMAP_THRESHOLD, 32 << 20), (runtime.M_TRIM_THRESHOLD, runtime.KEEP_BYTES)], True),
        # A refused threshold must leave the trim limit alone: setting it would freeze the
        # threshold at 128 KiB.
        (1 << 20, [(runtime.M_MMAP_THRESHOLD, runtime.KEEP_BYTES), (runtime.M_MMAP_THRESHOLD, 32 << 20)], False),
    ],
)
def test_keep_freed_memory_raises_the_mmap_threshold_before_the_trim_limit(monkeypatch, mmap_cap, expected_calls, took) -> None:
    for name in runtime.MALLOC_ENV + ("GLIBC_TUNABLES",):
        monkeypatch.delenv(name, raising=False)
    libc = FakeLibc(mmap_cap)
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda name: libc)
    assert runtime.keep_freed_memory() is took
    assert libc.calls == expected_calls


@pytest.mark.parametrize("env", [{"MALLOC_TRIM_THRESHOLD_": "0"}, {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}])
def test_keep_freed_memory_leaves_a_user_tuned_malloc_alone(monkeypatch, env) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    libc = FakeLibc(1 << 40)
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda name: libc)
    assert runtime.keep_freed_memory() is False
    assert libc.calls == []
