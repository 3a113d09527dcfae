"""Scale of ``python -m analysis`` (issue 13): a W&B-export-sized table against the default study's shape.

Both tables come from ``analysis.synthetic.synthetic_study`` (6 variants x 4 sizes x 1 seed = 24 runs):
the baseline has 21 evaluation points per run (504 rows, the shape of the default study), the large
one 83,334 points per run (2,000,016 rows, a dense W&B export of a ladder).  Each is analysed by the
CLI in a child process, exactly as a user runs it (``--n-boot 1000 --n-jobs 2``, figures on), and the
child's wall time and peak resident memory (``os.wait4``; joblib workers are separate processes and
not included) are printed with their ratio to the baseline, measured here in the same run.
Goal: the large table in under 10 minutes on 2 cores.

Then, in this process, where the large table's time goes before the analysis proper: reading the CSV,
validating it (all consistency checks), thinning its runs to ~100 log-spaced points each.

    python benchmarks/cli_scale.py                    # ~3 min on 2 cores (writing the 250 MB CSV included)
    python benchmarks/cli_scale.py --points 8334      # 200,016 rows
    python benchmarks/cli_scale.py --exact --points 8334 --n-boot 50   # also without thinning: ~30 min

Not a test: numbers depend on the machine and on other processes' load.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
from analysis.__main__ import MAX_POINTS, read_curves  # noqa: E402
from analysis.curves.table import thin_runs, validate_curves  # noqa: E402

GOAL_S = 600.0


def write_table(path: Path, points: int) -> int:
    """Write a synthetic study with ``points`` evaluations per run from a child process (so that this process
    stays small: a child's peak RSS counts the memory of the process it was forked from); returns its rows."""
    code = ("import sys, numpy as np; from analysis.synthetic import synthetic_study; "
            f"df = synthetic_study(np.random.default_rng(0), n_points={points}); "
            f"df.to_csv({str(path)!r}, index=False); print(len(df))")
    return int(subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                              text=True).stdout)


def run_cli(csv: Path, out: Path, n_boot: int, n_jobs: int, extra=()) -> dict:
    """Wall seconds and peak RSS (MB) of one ``python -m analysis`` child process."""
    cmd = [sys.executable, "-m", "analysis", str(csv), "--out", str(out), "--n-boot", str(n_boot),
           "--n-jobs", str(n_jobs), *extra]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t
    console = proc.stdout.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (rc {proc.returncode}):\n{console}")
    return dict(seconds=secs, peak_mb=usage.ru_maxrss / 1024, console=console.strip().splitlines())


def phases(csv: Path) -> list[tuple[str, float]]:
    """Seconds spent reading, validating and thinning the table (in this process)."""
    out = []
    t = time.perf_counter()
    raw = read_curves(csv)
    out.append(("read_csv (table columns only)", time.perf_counter() - t))
    t = time.perf_counter()
    valid = validate_curves(raw)
    out.append(("validate_curves (all checks)", time.perf_counter() - t))
    del raw
    t = time.perf_counter()
    thin, n = thin_runs(valid, MAX_POINTS)
    out.append((f"thin_runs ({len(valid):,} -> {len(thin):,} rows)", time.perf_counter() - t))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=83_334, help="evaluation points per run of the large table")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--exact", action="store_true", help="also analyse the large table without thinning")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cli_scale_") as tmp:
        tmp = Path(tmp)
        rows = {"baseline": write_table(tmp / "baseline.csv", 21), "large": write_table(tmp / "large.csv", args.points)}
        cases = [("baseline", "baseline", ()), ("large", "large", ())]
        if args.exact:
            cases.append(("large, every point", "large", ("--max-points-per-run", "0")))
        res = {}
        for label, table, extra in cases:
            res[label] = run_cli(tmp / f"{table}.csv", tmp / f"out_{len(res)}", args.n_boot, args.n_jobs, extra)
            res[label]["rows"] = rows[table]
        base = res["baseline"]
        report = pd.DataFrame([dict(case=label, rows=r["rows"], seconds=r["seconds"], peak_mb=r["peak_mb"],
                                    time_ratio=r["seconds"] / base["seconds"],
                                    memory_ratio=r["peak_mb"] / base["peak_mb"]) for label, r in res.items()])
        print(f"python -m analysis --n-boot {args.n_boot} --n-jobs {args.n_jobs} (ratios: against the baseline, "
              "measured in this run)")
        print(report.to_string(index=False, float_format=lambda v: f"{v:,.3g}"))
        print("large table, console:", *res["large"]["console"], sep="\n  ")
        print("large table, before the analysis (in this process):")
        for what, secs in phases(tmp / "large.csv"):
            print(f"  {what:45s} {secs:7.2f} s")
        ok = res["large"]["seconds"] < GOAL_S
        print(f"goal: large table < {GOAL_S:.0f} s on {args.n_jobs} cores: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
