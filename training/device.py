"""Device choice: CUDA (bf16 autocast, TF32 matmuls) when present, else fp32 on CPU.

On CPU, bf16 matmuls are ~100x slower than fp32 on the machines we measured, so autocast
is only ever enabled on CUDA.
"""
from __future__ import annotations

import contextlib

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
