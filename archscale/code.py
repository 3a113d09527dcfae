"""The code hash: the one function that hashes source files, for everything that must notice edited code.

Its users: a variant's model files (`models.registry.Variant.source_hash`, recorded in every run and
checkpoint), the code each workflow rule runs (`source_hash` in workflow/rules/common.smk: Snakemake tracks
params, not scripts), the resolved-study cache (`study.config.load_study`) and the planner's speed cache
(`study.plan.machine_key`). Standard library only, so that `models/` may import it and a Snakefile parse
stays fast.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def code_files(paths) -> list[Path]:
    """The files of `paths` in a stable order: a folder stands for every .py file below it."""
    out = []
    for p in map(Path, paths):
        out.extend(sorted(p.glob("**/*.py")) if p.is_dir() else [p])
    return out


def code_hash(paths, salt: str = "", length: int = 16) -> str:
    """sha256 of `salt` and the bytes of code_files(paths), in their order; the first `length` hex digits."""
    h = hashlib.sha256(salt.encode())
    for f in code_files(paths):
        h.update(f.read_bytes())
    return h.hexdigest()[:length]


def machine(threads: int) -> str:
    """This machine and a thread count, as a salt: a measured speed holds for both."""
    import platform

    return f"{platform.node()}|{platform.processor()}|{os.cpu_count()}|{threads}"
