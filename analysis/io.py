"""Reading and writing stage tables and figures; every file goes through ``write_file``."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

FLOAT_FORMAT = "%.10g"
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_file(path, write) -> Path:
    """Atomically create ``path``: ``write(tmp_path)`` fills a temp file, then os.replace moves it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should be readable like any file
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_tables(tables: dict, out_dir) -> list:
    """Write each table to ``out_dir/<name>.csv`` (deterministic float formatting)."""
    return [write_file(Path(out_dir) / f"{name}.csv",
                       lambda tmp, df=df: df.to_csv(tmp, index=False, float_format=FLOAT_FORMAT, lineterminator="\n"))
            for name, df in sorted(tables.items())]


def read_tables(directory) -> dict:
    """Read every ``<name>.csv`` in ``directory`` back into {name: DataFrame}."""
    return {p.stem: pd.read_csv(p) for p in sorted(Path(directory).glob("*.csv"))}


def write_figure(fig, path) -> Path:
    """Save a matplotlib Figure atomically (format from the suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return write_file(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight"))
