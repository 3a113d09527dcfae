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


def training_jobs(text: str) -> dict:
    """{(rule, 'variant/size/seed/lr[/budget]'): {'priority': int, 'runtime': int, 'mem_mb': int, 'gpu': int}} of
    the stable, cooldown and train jobs of a dry run's job listing."""
    import re

    out = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        rule = re.match(r"(?:local)?rule (\w+):", block.strip())
        wc = re.search(r"wildcards: (.*)", block)
        if not rule or rule.group(1) not in ("stable", "cooldown", "train") or not wc:
            continue
        w = dict(kv.split("=", 1) for kv in wc.group(1).split(", "))
        key = f"{w['variant']}/{w['size']}/seed{w['seed']}_lr{w['lr']}" + (f"/{w['budget']}" if "budget" in w else "")
        prio = re.search(r"priority: (\d+)", block)
        res = dict(re.findall(r"\b(runtime|mem_mb|gpu)=(\d+)", block))
        out[(rule.group(1), key)] = {"priority": int(prio.group(1)) if prio else 0, **{k: int(v) for k, v in res.items()}}
    return out
