"""Reading and writing stage tables and figures; every file goes through ``write_file``.

Writes are atomic and durable (``archscale.files``: a file is filled under a temporary name, fsync'd,
renamed into place with ``os.replace`` and its folder fsync'd, so a crash leaves either the old file or
the new one).  ``replace_folder`` does the same for a whole output folder (the CLI's ``--out``), and
``safe_name`` turns a table value (a variant, size or run name) into one file-name component.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
import zlib
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from archscale.files import fsync_path, write_file  # noqa: F401  (the one atomic write; re-exported)

FLOAT_FORMAT = "%.10g"
MARKER = ".analysis-output"  # written into every folder ``replace_folder`` fills: "this folder is ours"
LEGACY_TABLES = {"runs", "frontier_points", "frontier_grid", "frontier_owners", "frontier_summary", "fits",
                 "bootstrap", "ln_fits", "pairs", "crossovers", "tiers", "extrapolation", "lr_choice"}
_MAX_NAME = 200  # bytes; file systems allow 255 per component, leave room for a prefix and suffix
_UMASK = os.umask(0)
os.umask(_UMASK)


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


# ---------------------------------------------------------------- names from data used in paths
def safe_name(name) -> str:
    """One file-name component for a name taken from data (variant, size, run, figure stem).

    Percent-encoding (``urllib.parse.quote`` with no safe characters, and leading dots encoded) keeps
    letters, digits and ``_.-~`` and encodes everything else, so a result never contains ``/`` or
    ``\\``, is never ``.``/``..`` or hidden, and distinct names stay distinct (the encoding is
    reversible).  Names whose encoding exceeds 200 bytes are cut and given a CRC32 of the whole name.
    ``safe_name("x/../../y") == "x%2F..%2F..%2Fy"``; ``safe_name("gpt2") == "gpt2"``.
    """
    name = str(name)
    if not name:
        raise ValueError("an empty name cannot name a file; give the variant / size / run a name")
    out = urllib.parse.quote(name, safe="")
    stripped = out.lstrip(".")
    out = "%2E" * (len(out) - len(stripped)) + stripped
    if len(out) > _MAX_NAME:
        out = f"{out[:_MAX_NAME - 10]}~{zlib.crc32(name.encode()):08x}"
    return out


def safe_names(names) -> dict:
    """{name: file-name component} for several names, unique even on case-insensitive file systems
    (macOS, Windows): names whose ``safe_name`` differs only in case get their CRC32 appended."""
    names = list(dict.fromkeys(map(str, names)))
    base = {n: safe_name(n) for n in names}
    folded = pd.Series([b.casefold() for b in base.values()])
    clash = set(folded[folded.duplicated(keep=False)])
    return {n: (f"{b}~{zlib.crc32(n.encode()):08x}" if b.casefold() in clash else b) for n, b in base.items()}


# ---------------------------------------------------------------- whole output folders
class OutputFolderError(ValueError):
    """An output folder that cannot be (re)placed; the message names the problem and the fix."""


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _foreign_files(folder: Path) -> list:
    """Files in an existing output folder that an earlier analysis did not write (those must not be lost)."""
    if (folder / MARKER).is_file():
        listed = set((folder / MARKER).read_text().split("\n"))
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                      if p.is_file() and str(p.relative_to(folder)) not in listed | {MARKER})
    # outputs of versions before the marker: their 13 tables and figures/*.png only
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if not p.is_dir() and not ((p.parent == folder and p.suffix == ".csv" and p.stem in LEGACY_TABLES)
                                             or (p.parent == folder / "figures" and p.suffix == ".png")))


def check_output_folder(out, keep=()) -> Path:
    """Check before any work that ``out`` can be written as a whole; return it resolved.

    Refused, with one line: ``out`` is a file or lies under one; its nearest existing parent (or ``out``
    itself) is not writable; ``out`` holds files an earlier analysis did not write (they would be
    lost); or one of ``keep`` (e.g. the input table) lies inside ``out``.
    """
    out = Path(out).absolute()
    if out.is_symlink():  # a link to an earlier result: the folder it points at is the one replaced
        out = out.resolve()
    if out == out.parent:
        raise OutputFolderError(f"--out {out} is a file system root, which cannot be replaced; give a folder in it")
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {out} is a file; give a folder (it is created if missing)")
    base = _nearest_existing(out)
    if not base.is_dir():
        raise OutputFolderError(f"--out {out} lies under the file {base}; give a folder path")
    for k in keep:
        if Path(k).absolute() == out or out in Path(k).absolute().parents:
            raise OutputFolderError(f"--out {out} contains the input {k}, and --out is replaced as a whole; "
                                    "give another output folder")
    for folder in ((out.parent, out) if out.exists() else (base,)):  # where the new folder goes, the old one
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=folder))
        except OSError as e:
            raise OutputFolderError(f"--out {out}: cannot write in {folder} ({e.strerror}); "
                                    "give a folder you can write to") from None
    if out.exists():
        foreign = _foreign_files(out)
        if foreign:
            raise OutputFolderError(f"--out {out} holds {foreign[0]!r} (and {len(foreign) - 1} more) that no earlier "
                                    "analysis wrote; --out is replaced as a whole, so give a new or empty folder"
                                    if len(foreign) > 1 else
                                    f"--out {out} holds {foreign[0]!r}, which no earlier analysis wrote; --out is "
                                    "replaced as a whole, so move it or give a new or empty folder")
    return out


@contextmanager
def replace_folder(out):
    """Yield a new empty folder beside ``out``; when the block ends without error it replaces ``out`` as a
    whole (all or nothing: nothing stale stays, nothing half-written appears), else it is deleted and
    ``out`` is untouched.  A marker file lists what the folder holds (``check_output_folder`` reads it)."""
    out = Path(out).absolute()
    if out.is_symlink():
        out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    for left in list(out.parent.glob(f".{out.name}.new-*")) + list(out.parent.glob(f".{out.name}.old-*")):
        shutil.rmtree(left, ignore_errors=True)  # what a killed earlier write left behind
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        yield stage
        files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
        write_file(stage / MARKER, lambda tmp: Path(tmp).write_text("\n".join(files) + "\n"))
        for d in sorted({p.parent for p in stage.rglob("*")} | {stage}, reverse=True):
            fsync_path(d)
        os.chmod(stage, 0o777 & ~_UMASK)  # mkdtemp makes 0700
        old = _swap_in(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _swap_in(stage: Path, out: Path):
    """Rename ``stage`` to ``out``; an existing ``out`` is first renamed aside (returned, for deletion) and
    put back if the second rename fails."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old)  # a directory may replace an empty one
    try:
        os.replace(stage, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    fsync_path(out.parent)
    return old
