"""Checkpoints: tensors in safetensors, everything else in JSON, both written atomically.

A checkpoint at step k is two files, `step-{k:08d}.safetensors` and `step-{k:08d}.json`;
the JSON is written last and records the sha256 of the tensor file, so a checkpoint only
counts once both exist and the checksum matches. Loading never unpickles: tensors come
from safetensors, the rest from JSON. The newest `keep` checkpoints are kept; a corrupt
newest one falls back to the previous good one (or to a fresh start), with a warning.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from archscale.files import atomic_path, write_json

log = logging.getLogger(__name__)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def collect_tensors(model, optimizer, generator: torch.Generator) -> dict[str, torch.Tensor]:
    params = model.unique_parameters()
    index = {id(p): i for i, p in enumerate(params)}
    tensors = {f"param.{i}": p.detach().cpu().contiguous() for i, p in enumerate(params)}
    for name, buf in model.named_buffers():
        tensors[f"buffer.{name}"] = buf.detach().cpu().contiguous()
    for p, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"opt.{index[id(p)]}.{key}"] = value.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.generator"] = generator.get_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    return tensors


def restore_tensors(tensors: dict, model, optimizer, generator: torch.Generator) -> None:
    params = model.unique_parameters()
    with torch.no_grad():
        for i, p in enumerate(params):
            p.copy_(tensors[f"param.{i}"].to(p.device))
        for name, buf in model.named_buffers():
            if f"buffer.{name}" in tensors:
                buf.copy_(tensors[f"buffer.{name}"].to(buf.device))
    optimizer.state.clear()
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            p = params[int(i)]
            optimizer.state[p][name] = value if name == "step" else value.to(p.device)
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.generator"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])


def _step_of(meta_path: Path) -> int:
    return int(meta_path.stem.split("-")[1])


def save(ckpt_dir, step: int, tensors: dict, state: dict, keep: int | None = 2, pinned=()) -> Path:
    """Write the checkpoint of `step`; keep the newest `keep` ones and every pinned step (keep=None:
    delete nothing, for a checkpoint added to a folder another run owns)."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    stem = ckpt_dir / f"step-{step:08d}"
    with atomic_path(stem.with_suffix(".safetensors")) as tmp:
        try:
            save_file(tensors, str(tmp))
        except Exception as e:  # safetensors raises its own error type on a full disk
            raise OSError(f"cannot write checkpoint {stem.name} in {ckpt_dir}: {e} (check free space)") from None
    write_json(stem.with_suffix(".json"), {**state, "step": step, "tensors_sha256": _sha256(stem.with_suffix(".safetensors"))})
    if keep is None:
        return stem
    pinned = set(pinned)
    rotating = [m for m in sorted(ckpt_dir.glob("step-*.json")) if _step_of(m) not in pinned]
    for old in rotating[:-keep]:
        for suffix in (".json", ".safetensors"):
            old.with_suffix(suffix).unlink(missing_ok=True)
    return stem


def _read_state(meta_path: Path) -> dict | None:
    try:
        return json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None


def drop_foreign(ckpt_dir, key: str) -> int:
    """Delete checkpoints written for another trajectory (a changed config, data or code), with one
    warning line; a stale checkpoint must never be resumed. Returns how many were dropped."""
    ckpt_dir = Path(ckpt_dir)
    stale = [m for m in sorted(ckpt_dir.glob("step-*.json")) if (st := _read_state(m)) is not None and st.get("key") != key]
    for meta_path in stale:
        for suffix in (".json", ".safetensors"):
            meta_path.with_suffix(suffix).unlink(missing_ok=True)
    if stale:
        log.warning("checkpoints in %s belong to another configuration (config, data or code changed): "
                    "deleted %d, starting fresh", ckpt_dir, len(stale))
    return len(stale)


def load_latest(ckpt_dir, key: str | None = None, max_step: int | None = None) -> tuple[dict, dict] | None:
    """(tensors, state) of the newest intact checkpoint (of trajectory `key`, at or before `max_step`),
    or None. Corrupt ones are skipped with a warning."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    candidates = [m for m in sorted(ckpt_dir.glob("step-*.json"), reverse=True)
                  if max_step is None or _step_of(m) <= max_step]
    for i, meta_path in enumerate(candidates):
        tensor_path = meta_path.with_suffix(".safetensors")
        try:
            state = json.loads(meta_path.read_text())
            if key is not None and state.get("key") != key:
                log.warning("checkpoint %s belongs to another configuration; not resuming from it", meta_path.name)
                continue
            if not tensor_path.is_file() or _sha256(tensor_path) != state.get("tensors_sha256"):
                raise ValueError("checksum mismatch")
            return load_file(str(tensor_path)), state
        except Exception as e:  # corrupt JSON, truncated tensors, bad checksum
            fallback = "falling back to an earlier one" if i + 1 < len(candidates) else "no earlier one: starting from scratch"
            log.warning("checkpoint %s is corrupt (%s); %s", meta_path.name, e, fallback)
    return None


def clear(ckpt_dir) -> None:
    ckpt_dir = Path(ckpt_dir)
    if ckpt_dir.is_dir():
        for f in ckpt_dir.glob("step-*"):
            f.unlink(missing_ok=True)
        try:
            os.rmdir(ckpt_dir)
        except OSError:
            pass
