"""Device choice: CUDA (bf16 autocast, TF32 matmuls) when present, else fp32 on CPU; the device's
dense peak FLOP/s that MFU divides by.

On CPU, bf16 matmuls are ~100x slower than fp32 on the machines we measured, so autocast
is only ever enabled on CUDA.
"""
from __future__ import annotations

import contextlib
import functools
import math
import time

import torch

from training.errors import InputError


def pick_device(preference: str = "auto") -> torch.device:
    if preference not in ("auto", "cpu", "cuda"):
        raise InputError(f"training.device={preference!r}; allowed: auto, cpu, cuda")
    if preference == "cuda" and not torch.cuda.is_available():
        raise InputError("training.device='cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if preference in ("auto", "cuda") and torch.cuda.is_available():
        torch.backends.cuda.matmul.fp32_precision = "tf32"  # TF32 matmuls and convolutions
        torch.backends.cudnn.conv.fp32_precision = "tf32"
        return torch.device("cuda")
    return torch.device("cpu")


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch


# Dense (no sparsity) bf16 tensor-core peaks in FLOP/s from the vendors' data sheets, by a substring of
# torch.cuda.get_device_name(); the first match wins, so the more specific names come first.
BF16_PEAK_FLOPS = (
    ("GH200", 989e12), ("H200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12),
    ("H800", 989e12), ("B200", 2250e12), ("B100", 1750e12), ("A100", 312e12), ("A800", 312e12),
    ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12), ("A6000", 155e12), ("A40", 150e12), ("A30", 165e12),
    ("A10G", 70e12), ("A10", 125e12), ("RTX 6000 Ada", 364e12), ("4090", 165e12), ("3090", 71e12),
)


def known_peak(name: str) -> float | None:
    """The data-sheet dense bf16 peak of a GPU by its name, or None."""
    return next((peak for key, peak in BF16_PEAK_FLOPS if key in name), None)


def measured_matmul_peak(device: torch.device, dtype=torch.float32, n: int = 1024, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n x n matmul in `dtype` on `device` (the CPU's current thread count)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


@functools.lru_cache(maxsize=None)
def _peak(device_type: str, index: int | None, threads: int) -> tuple[float, str]:
    device = torch.device(device_type, index) if index is not None else torch.device(device_type)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = known_peak(name)
        if peak is not None:
            return peak, f"data sheet, dense bf16 ({name})"
        return measured_matmul_peak(device, torch.bfloat16, n=4096), f"measured bf16 matmul ({name})"
    return measured_matmul_peak(device), f"measured fp32 matmul ({threads} threads)"


def peak_flops(device: torch.device) -> tuple[float, str]:
    """(dense peak FLOP/s, its source) of the device a run trains on: a known GPU's data-sheet bf16 peak,
    else a measured bf16 matmul peak; on CPU the measured fp32 matmul peak at the current thread count
    (the precision each trains in)."""
    return _peak(device.type, device.index, torch.get_num_threads())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
