from archscale.workflow import setup

log = setup(snakemake)
import datetime  # noqa: E402
import sys  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from analysis.io import write_file  # noqa: E402
from archscale import __version__  # noqa: E402
from analysis.report.pdf import ReportInputs, build_report  # noqa: E402


def read(paths):
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True) if isinstance(paths, list) else pd.read_csv(paths)


def commit():
    try:
        out = subprocess.run(["git", "-C", snakemake.scriptdir, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def predicted_job_seconds(config) -> dict:
    """Job -> seconds the plan's cost model predicts (config `plan:` written by `archscale plan`), or {}."""
    from study.plan import config_cost_model, study_jobs
    from study.config import resolve

    cost = config_cost_model(config)
    if cost.notes.get("source") != "plan":  # a prior predicts no job's time worth setting beside its measured one
        return {}
    return {j["job"]: j["seconds"] for j in study_jobs(resolve(config), cost)}


def job_runtimes(paths, predicted: dict):
    rows = []
    for p in paths:
        b = pd.read_csv(p, sep="\t")
        job = "/".join(Path(p).with_suffix("").parts[-4:])  # variant/size/seed_lr/(stable | budget)
        row = {"job": job, "seconds": round(float(b["s"].iloc[0]), 1), "max RSS (MB)": b["max_rss"].iloc[0]}
        if job in predicted:
            row.update(predicted_s=round(predicted[job], 1), ratio=round(row["seconds"] / predicted[job], 2))
        rows.append(row)
    return pd.DataFrame(rows)


runs = pd.read_csv(snakemake.input.run_records)
skip = {"run_records", "figures", "alt_fits", "job_benchmarks", "curves", "baselines", "lr_sweep"}
tables = {name: read(paths) for name, paths in snakemake.input.items() if name not in skip}
packages = ["torch", "transformers", "tokenizers", "snakemake", "numpy", "pandas", "scipy", "statsmodels", "matplotlib", "fpdf2"]
environment = {
    "date": datetime.date.today().isoformat(),
    "commit": commit(),
    "version": __version__,
    "device": "; ".join(sorted(runs["device"].astype(str).unique())),
    "python": sys.version.split()[0],
    **{p: version(p) for p in packages},
    "corpus sha256": str(runs["corpus_sha256"].iloc[0]),
}
inputs = ReportInputs(
    config=snakemake.params.config,
    curves=pd.read_csv(snakemake.input.curves),
    runs=runs,
    tables=tables,
    alt_fits=read(list(snakemake.input.alt_fits)),
    figures={Path(p).stem: p for p in snakemake.input.figures},
    environment=environment,
    job_runtimes=job_runtimes(list(snakemake.input.job_benchmarks), predicted_job_seconds(snakemake.params.config)),
    lr_sweep=pd.read_csv(snakemake.input.lr_sweep) if "lr_sweep" in snakemake.input.keys() else None,
    baselines=json.loads(Path(snakemake.input.baselines).read_text()),
)
pdf = build_report(inputs)
write_file(snakemake.output.pdf, lambda tmp: Path(tmp).write_bytes(pdf))
log.info("report: %d bytes", len(pdf))
