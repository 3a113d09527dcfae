"""Device selection: CPU fp32 here, CUDA + bf16 autocast only where CUDA exists."""
import contextlib

import pytest
import torch

from training import device as dev
from training.errors import InputError
from training.loop import TrainConfig, run


def test_cpu_is_chosen_without_cuda_and_autocast_is_off(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    d = dev.pick_device("auto")
    assert d.type == "cpu"
    assert isinstance(dev.autocast(d), contextlib.nullcontext)
    batch = torch.zeros(2, 3, dtype=torch.long)
    assert dev.to_device(batch, d) is batch
    with pytest.raises(InputError, match="no CUDA device is visible"):
        dev.pick_device("cuda")
    with pytest.raises(InputError, match="allowed: auto, cpu, cuda"):
        dev.pick_device("tpu")


def test_cuda_is_chosen_when_present_with_bf16_autocast_and_tf32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "autocast", lambda device_type, dtype: (device_type, dtype))
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = (matmul.fp32_precision, conv.fp32_precision)
    try:
        matmul.fp32_precision = conv.fp32_precision = "none"
        d = dev.pick_device("auto")
        assert d.type == "cuda"
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
        assert dev.autocast(d) == ("cuda", torch.bfloat16)
        assert dev.pick_device("cpu").type == "cpu"
    finally:  # these settings cannot be monkeypatched (no delattr): restore by hand
        matmul.fp32_precision, conv.fp32_precision = before


def test_compile_option_wraps_the_loss(small_data, tmp_path, monkeypatch):
    compiled = []

    def fake_compile(fn, *args, **kwargs):
        compiled.append(fn.__name__)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    cfg = TrainConfig(tokens=64 * 8 * 4, seq_len=64, batch_size=8, eval_points=2, eval_tokens=1024,
                      eval_batch_size=8, compile=True)
    info = run("gpt2", "xs", {}, cfg, small_data, tmp_path)
    assert compiled == ["training_loss"] and info["status"] == "ok"
    assert info["device_type"] == "cpu" and info["device"].startswith("cpu")
