"""Running the workflow from tests: the venv's snakemake on a study in a working folder."""
import os
import subprocess
import sys
from pathlib import Path

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def snakemake(root, workdir, *args, config=None, check=True, timeout=1500, env=None):
    cmd = [SNAKEMAKE, "--snakefile", str(root / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--configfile", str(config or workdir / "config.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env} if env else None)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc
