"""Shared by every workflow script: put the project on sys.path, send logging to the rule's log."""
import logging
import sys
from pathlib import Path


def setup(snakemake):
    root = str(Path(snakemake.scriptdir).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    if snakemake.log:
        Path(snakemake.log[0]).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(snakemake.log[0], "w", buffering=1)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return logging.getLogger("archscale")
