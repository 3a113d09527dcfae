"""Atomic, durable file writes: the one implementation every package uses (training's runs, checkpoints and
shards, the analysis tables and figures, the workflow scripts). Standard library only.

A file is filled under a temporary name in its own folder (hidden, `.tmp`, so no `*.csv` or `step-*.json`
listing sees it), fsync'd, moved into place with os.replace and its folder fsync'd: a kill at any moment
leaves either the old file or the new one, never half of one. A failed write (disk full, permissions)
becomes a one-line OSError that names the path, and leaves no temporary file behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def fsync_path(path) -> None:
    """fsync a file or a folder (a folder's fsync makes the names in it durable)."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if Path(path).is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _error(path: Path, e: OSError) -> OSError:
    return OSError(f"cannot write {path}: {e.strerror or e} (check free space and permissions on {path.parent})")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; when the block succeeds it becomes `path` (see the module)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should be readable like any file
    except OSError as e:
        raise _error(path, e) from None
    try:
        yield Path(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _error(path, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_file(path, write) -> Path:
    """Create `path` atomically: `write(tmp_path)` fills the temporary file."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(path, text: str) -> Path:
    return write_file(path, lambda tmp: tmp.write_text(text))


def write_bytes(path, data: bytes) -> Path:
    return write_file(path, lambda tmp: tmp.write_bytes(data))


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
