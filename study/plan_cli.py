"""`archscale plan`: a study config that brackets each variant's frontier within a wall-time budget.

    archscale plan --minutes 20 --out my_study.yaml [--cores 2] [--variants gpt2 reformer ...]
                   [--budgets 3] [--sizes-per-budget 3] [--ratio 2] [--prior results/analysis]
    archscale plan --gpus 8 --hours 3 [--device h100] [--mfu 0.35] --out gpu_study.yaml [--prior ...]

GPUs (`--gpus`): the base is config/gpu.yaml and the sizes its GPU ladder (g1m-g300m); the cost of a
token is its accounted FLOPs over the device's dense bf16 peak (training/device.py's table) times a
planning MFU (`--mfu`, default 0.35, stated: not a measurement), or, on a machine with that CUDA device,
a short probe of each variant's sizes there; without a study of one's own (`--prior`) the expected
optimum per budget is Chinchilla's D = 20 N under the accounted FLOPs (study.plan.chinchilla_points);
five budgets spanning 100x by default. It prints per job its GPU-hours, GPU memory and micro-batch, per
variant its GPU-hours and the budgets it expects to bracket. The CPU mode:

1. Measures the training speed of every variant's size ladder on this machine (a few steps each,
   cached in .snakemake/archscale by machine and code) and fits the cost model of study/plan.py.
2. Places `--budgets` IsoFLOP levels `--ratio` apart, each with the `--sizes-per-budget` ladder sizes
   nearest the variant's own expected optimum (its prior N_opt(C): the optima of a previous study with
   --prior results/analysis, else the default study's, config/plan_prior.csv; a variant whose optimum at
   the lowest level would be its smallest size gets its levels raised until it can be bracketed), and bisects the top level until the predicted wall time
   of the whole study (Snakemake's scheduling simulated) fits `--minutes`.
3. Writes the config (the base config's corpus, tokenizer and training settings; validated against
   the schema) with a `plan:` block holding the cost model, so the report can set the predicted
   time of every job beside its measured one; prints the prediction per variant.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
# Where each variant's optimum lay in the default study (config/plan_prior.csv, written from its Approach-2
# tables by `prior_points`): the prior when no --prior is given. Refresh it when the default study changes.
DEFAULT_PRIOR = ROOT / "config" / "plan_prior.csv"
PRIOR_COLS = ["variant", "compute", "n_opt", "bracketed", "at_smallest"]


def prior_points(path) -> pd.DataFrame:
    """Measured optima (variant, compute, n_opt, bracketed, at_smallest) of a previous study: a CSV of those
    columns (config/plan_prior.csv), or a study's analysis folder (results/analysis): per budget of the
    primary compute column, N_opt of a bracketed budget, else the N of its best size (a bound: the optimum
    lies at or beyond it); at_smallest: that best size was the budget's smallest and the ladder's smallest
    (models/presets.py), so no budget there can bracket."""
    from models.presets import CPU_SIZES

    path = Path(path)
    if path.is_file():
        return pd.read_csv(path, comment="#")[PRIOR_COLS]
    finals_csv = path / "frontier" / "final_points.csv"
    tables = [pd.read_csv(f) for f in sorted(path.glob("fit/*/flops/isoflop.csv"))]
    if not tables or not finals_csv.is_file():
        raise FileNotFoundError(f"{path}: no fit/*/flops/isoflop.csv with frontier/final_points.csv (a study's "
                                "results/analysis folder) and not a CSV of " + ", ".join(PRIOR_COLS))
    iso = pd.concat(tables, ignore_index=True)
    sizes = pd.read_csv(finals_csv).groupby(["variant", "size"])["params_nonembedding"].first()
    best_n = [sizes.get((v, s), np.nan) for v, s in zip(iso["variant"], iso["best_size"])]
    iso["n_opt"] = np.where(iso["status"] == "ok", iso["N_opt"], best_n)
    smallest = [str(sz).split()[0] if isinstance(sz, str) else None for sz in iso["sizes"]]  # sizes in N order
    iso["at_smallest"] = ((iso["status"] == "unbracketed") & (iso["best_size"] == pd.Series(smallest))
                          & (iso["best_size"] == CPU_SIZES[0]))
    return iso.dropna(subset=["n_opt"])[PRIOR_COLS].reset_index(drop=True)


def read_prior(path, variants) -> dict:
    """{variant: Prior} (study.plan.fit_priors) from `path` (see prior_points), else the default study's."""
    from study.plan import fit_priors

    return fit_priors(prior_points(path or DEFAULT_PRIOR), variants)


def ladders_of(variants, ctx, names=None) -> dict:
    """{variant: [(size, N)]} over the shared ladder's CPU sizes (models/presets.py; or `names`), by N."""
    import models
    from models.presets import CPU_SIZES

    LADDER = names or CPU_SIZES
    out = {}
    for v in variants:
        spec = models.get_variant(v)
        rows = [(name, spec.account(models.resolve_size(spec, name, ctx), ctx).params_nonembedding) for name in LADDER]
        out[v] = sorted(rows, key=lambda r: r[1])
    return out


def speed_entries(variants, ctx) -> list[dict]:
    import models
    from models.presets import CPU_SIZES

    entries = []
    for v in variants:
        spec = models.get_variant(v)
        for name in CPU_SIZES:
            if name in ("l", "xl"):
                continue  # beyond any 2-core plan; the cost model extrapolates in FLOPs
            size = models.resolve_size(spec, name, ctx)
            entries.append({"variant": v, "size": name, "size_config": size.as_dict(),
                            "flops_per_token": spec.account(size, ctx).train_flops_per_token})
    return entries


def measure_job_overhead() -> float:
    """Seconds a training job spends before its first step: Python, torch, transformers, the model code."""
    import subprocess
    import time

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import models, training.loop"], check=True, cwd=ROOT)
    return time.perf_counter() - t0 + 1.0  # + data, model and evaluation-set setup (measured ~1 s)


def plan_block(head: dict, cost, pred: dict) -> dict:
    """The `plan:` block of a written config: `head` (the budget the plan was asked for), the predicted wall
    time, the cost model (study.plan.config_cost_model reads it back: the DAG's job resources and the
    report's predicted times use it) and the budgets not expected to bracket."""
    block = {**head, "predicted_wall_s": round(pred["wall_s"], 1), "job_overhead_s": round(cost.job_overhead_s, 2),
             "cost": {v: {"c0": c0, "c1": c1} for v, (c0, c1) in cost.coef.items()}}
    if cost.measured:  # the probed sizes' own seconds per token, [FLOPs per token, seconds per token] each
        block["speeds"] = {v: [[f, sec] for f, sec in points] for v, points in cost.measured.items()}
    # budgets below where the prior says the variant brackets (placed there to fit the time)
    block["expected_unbracketed"] = pred["expected_unbracketed"]
    block["floor_scale"] = {v: round(x, 3) for v, x in pred["floor_scale"].items()}
    return block


def _parser():
    ap = argparse.ArgumentParser(prog="archscale plan", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=None, help="wall-time budget of the whole study (CPU)")
    ap.add_argument("--gpus", type=int, default=None, help="GPUs the study runs on (one training job per GPU)")
    ap.add_argument("--hours", type=float, default=None, help="wall-time budget in hours (with --gpus)")
    ap.add_argument("--device", default=None, help="GPU kind (h100, h200, a100, a100-40gb, l40s, a10, 4090); "
                    "default: the CUDA device of this machine")
    ap.add_argument("--mfu", type=float, default=None, help="planning MFU on the GPU (default 0.35; not a measurement)")
    ap.add_argument("--out", type=Path, required=True, help="config file to write")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--base", type=Path, default=None,
                    help="config whose corpus, tokenizer, training and analysis settings the plan keeps")
    ap.add_argument("--variants", nargs="*", default=None, help="default: the base config's variants")
    ap.add_argument("--budgets", type=int, default=None, help="default 3 (CPU), 5 (GPU)")
    ap.add_argument("--sizes-per-budget", type=int, default=3)
    ap.add_argument("--ratio", type=float, default=None,
                    help="compute ratio between consecutive budgets (default 2 on CPU; 10^0.5 with --gpus: 100x over 5)")
    ap.add_argument("--prior", type=Path, default=None,
                    help="a previous study's results/analysis folder (its allocation.csv: N_opt(C) per variant)")
    ap.add_argument("--cache", type=Path, default=Path(".snakemake/archscale"))
    return ap


def main(argv=None) -> int:
    from models.registry import ModelContext
    from study.plan import fit_cost_model, measure_speeds, plan_grid
    from study.config import StudyError, validate_config

    args = _parser().parse_args(argv)
    gpu = args.gpus is not None
    if gpu == (args.minutes is not None) or gpu != (args.hours is not None):
        print("archscale plan: give --minutes (a CPU study) or --gpus with --hours (a GPU study)", file=sys.stderr)
        return 2
    args.base = args.base or ROOT / "config" / ("gpu.yaml" if gpu else "config.yaml")
    args.budgets = args.budgets or (5 if gpu else 3)
    args.ratio = args.ratio or (10 ** 0.5 if gpu else 2.0)
    if gpu:
        return gpu_main(args)
    if args.minutes <= 0 or args.budgets < 3 or args.sizes_per_budget < 3 or args.ratio <= 1 or args.cores < 1:
        print("archscale plan: needs --minutes > 0, --budgets >= 3, --sizes-per-budget >= 3, --ratio > 1, "
              "--cores >= 1", file=sys.stderr)
        return 2
    if args.out.exists() and args.out.resolve() == args.base.resolve():
        print(f"archscale plan: --out {args.out} is the base config; write the plan to a new file", file=sys.stderr)
        return 2
    try:
        base = validate_config(yaml.safe_load(args.base.read_text()), SCHEMA)
    except (OSError, StudyError, yaml.YAMLError) as e:
        print(f"archscale plan: cannot use --base {args.base}: {e}", file=sys.stderr)
        return 2
    variants = args.variants or list(base["variants"])
    # each variant keeps the base config's learning rate for it (the default study's: from the recorded sweep)
    base["variants"] = {v: {"sizes": [], **{k: base["variants"].get(v, {})[k] for k in ("lr",)
                                             if k in base["variants"].get(v, {})}} for v in variants}
    t = base["training"]
    ctx = ModelContext(vocab_size=base["tokenizer"]["vocab_size"], seq_len=t["seq_len"], pad_id=1, mask_id=2)
    concurrency = max(1, args.cores // t["threads"])  # as many probes at once as the study runs jobs
    print(f"measuring training speed of {len(variants)} variant(s) on this machine, {concurrency} probe(s) at once "
          f"(cached in {args.cache}) ...", file=sys.stderr)
    speeds = measure_speeds(speed_entries(variants, ctx), ctx, t["batch_size"], t["threads"], args.cache, concurrency)
    cost = fit_cost_model(speeds, job_overhead_s=measure_job_overhead())
    try:
        priors = read_prior(args.prior, variants)
    except (OSError, KeyError, ValueError) as e:
        print(f"archscale plan: cannot read --prior {args.prior}: {e}", file=sys.stderr)
        return 2
    ladders = ladders_of(variants, ctx)
    try:
        # one prior per variant: each variant's sizes sit around its own expected optimum
        cfg, pred = plan_grid(base, SCHEMA, ladders, priors, args.minutes * 60, args.cores, cost,
                              args.budgets, args.ratio, args.sizes_per_budget)
    except StudyError as e:
        print(f"archscale plan: {e}", file=sys.stderr)
        return 2
    configs = dict(cfg)
    configs["plan"] = plan_block({"minutes": args.minutes, "cores": args.cores, "probe_concurrency": concurrency},
                                 cost, pred)
    validate_config(configs, SCHEMA)  # the plan is a valid study config
    args.out.write_text("# written by `archscale plan` (study/plan_cli.py); edit freely\n"
                        + yaml.safe_dump(configs, sort_keys=False))
    _print_plan(configs, pred)
    return 0


def gpu_main(args) -> int:
    """`archscale plan --gpus G --hours H`: see the module docstring."""
    import models
    from models.presets import GPU_SIZES
    from models.registry import ModelContext
    from study.plan import (DEFAULT_MFU, DEVICE_MEMORY_GB, fit_priors, gpu_cost_model, plan_grid)
    from study.config import StudyError, validate_config, vocab_size_of

    if args.gpus < 1 or args.hours <= 0 or args.budgets < 3 or args.sizes_per_budget < 3 or args.ratio <= 1:
        print("archscale plan: needs --gpus >= 1, --hours > 0, --budgets >= 3, --sizes-per-budget >= 3, --ratio > 1",
              file=sys.stderr)
        return 2
    device = args.device or _cuda_device()
    if device is None:
        print("archscale plan: no CUDA device here: name the GPU kind with --device (h100, h200, a100, a100-40gb, "
              "l40s, a10, 4090)", file=sys.stderr)
        return 2
    try:
        base = validate_config(yaml.safe_load(args.base.read_text()), SCHEMA)
        variants = args.variants or list(base["variants"])
        base["variants"] = {v: {k: x for k, x in base["variants"].get(v, {}).items() if k != "budgets"} | {"sizes": []}
                            for v in variants}
        t = base["training"]
        ctx = ModelContext(vocab_size=vocab_size_of(base), seq_len=t["seq_len"], pad_id=1, mask_id=2)
        shapes, ladders, fpt = {}, {}, {}
        for v in variants:
            spec, rows = models.get_variant(v), []
            for name in GPU_SIZES:
                size = models.resolve_size(spec, name, ctx, **base["variants"][v].get("size_overrides", {}).get(name, {}))
                acc = spec.account(size, ctx)
                rows.append((name, acc.params_nonembedding))
                fpt[(v, name)] = acc.train_flops_per_token
                shapes[(v, name)] = dict(params_total=acc.params_total, seq_len=t["seq_len"], d_model=size.d_model,
                                         n_layer=size.n_layer, n_head=size.n_head)
            ladders[v] = sorted(rows, key=lambda r: r[1])
        from study.plan import chinchilla_points

        priors = read_prior(args.prior, variants) if args.prior else fit_priors(chinchilla_points(ladders, fpt), variants)
        cost = gpu_cost_model(variants, device, args.mfu or DEFAULT_MFU)
        if base["training"]["gpus"] < 1:
            base["training"]["gpus"] = 1
        cfg, pred = plan_grid(base, SCHEMA, ladders, priors, args.hours * 3600, args.gpus, cost, args.budgets,
                              args.ratio, args.sizes_per_budget, lo=1e13, hi=1e22)
    except (OSError, StudyError, ValueError, KeyError, yaml.YAMLError) as e:
        print(f"archscale plan: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    memory = DEVICE_MEMORY_GB.get(device.lower(), 80)
    configs = dict(cfg)
    configs["plan"] = plan_block({"gpus": args.gpus, "hours": args.hours, "device": cost.notes["device"],
                                  "mfu": cost.notes["mfu"]}, cost, pred)
    validate_config(configs, SCHEMA)
    args.out.write_text("# written by `archscale plan --gpus` (study/plan_cli.py); edit freely\n"
                        + yaml.safe_dump(configs, sort_keys=False))
    _print_gpu_plan(configs, pred, shapes, memory)
    return 0


def _cuda_device() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


def gpu_job_table(pred: dict, shapes: dict, memory_gb: float) -> pd.DataFrame:
    """Per training job of a GPU plan: GPU-hours, the micro-batch that fits and its GPU memory."""
    from study.plan import fitting_micro_batch

    runs = {r["run_id"]: r for r in pred["study"]["runs"]} | {f"{s['lineage']}/stable": s for s in pred["study"]["stables"]}
    rows = []
    for j in pred["jobs"]:
        r = runs[j["job"]]
        micro, gb = fitting_micro_batch(r["train_config"]["batch_size"], memory_gb, **shapes[(r["variant"], r["size"])])
        rows.append({"job": j["job"], "variant": j["variant"], "kind": j["kind"],
                     "gpu_hours": j["seconds"] * r["gpus"] / 3600, "memory_gb": gb, "micro_batch": micro,
                     "batch": r["train_config"]["batch_size"]})
    return pd.DataFrame(rows)


def _print_gpu_plan(cfg: dict, pred: dict, shapes: dict, memory_gb: float) -> None:
    jobs = gpu_job_table(pred, shapes, memory_gb)
    plan = cfg["plan"]
    print(f"per job (GPU-hours, GPU memory of its micro-batch on a {memory_gb:g} GB {plan['device']}):")
    for r in jobs.to_dict("records"):
        print(f"  {r['job']:45s} {r['gpu_hours']:7.3f} GPU-h {r['memory_gb']:6.1f} GB  micro-batch {r['micro_batch']}"
              f" of {r['batch']}")
    below = pred.get("expected_unbracketed") or {}
    print("per variant: budgets (accounted FLOPs) [sizes], GPU-hours, budgets expected to bracket:")
    for v, g in jobs.groupby("variant"):
        levels = cfg["variants"][v]["budgets"]["levels"]
        grid = "; ".join(f"{e['level']:.3g} [{', '.join(e['sizes'])}]" for e in levels)
        n_below = len(below.get(v, []))
        print(f"  {v:16s} {g['gpu_hours'].sum():7.2f} GPU-h  {len(levels) - n_below} of {len(levels)} bracketed  {grid}")
    total = jobs["gpu_hours"].sum()
    print(f"total: {total:.1f} GPU-hours of {plan['gpus'] * plan['hours']:g} ({plan['gpus']} x {plan['hours']:g} h); "
          f"predicted wall time {pred['wall_s'] / 3600:.2f} h; cost: {plan['device']} dense bf16 peak x MFU "
          f"{plan['mfu']:g} (a planning figure, not measured)")


def _print_plan(cfg: dict, pred: dict) -> None:
    jobs = pd.DataFrame(pred["jobs"])
    per = jobs.groupby("variant").agg(jobs=("job", "size"), core_seconds=("seconds", "sum"))
    print("budgets (accounted FLOPs) [sizes] and core-minutes per variant:")
    for v, r in per.iterrows():
        levels = cfg["variants"][v]["budgets"]["levels"]
        grid = "; ".join(f"{e['level']:.3g} [{', '.join(e['sizes'])}]" for e in levels)
        print(f"  {v:16s} {grid}  {int(r['jobs']):3d} jobs {r['core_seconds'] / 60:6.1f} core-minutes")
    print(f"predicted wall time: {pred['wall_s'] / 60:.1f} minutes on {cfg['plan']['cores']} cores "
          f"(budget {cfg['plan']['minutes']:g})")
    below = pred.get("expected_unbracketed") or {}
    n_all = sum(len(cfg["variants"][v]["budgets"]["levels"]) for v in cfg["variants"])
    n_below = sum(len(x) for x in below.values())
    print(f"expected bracketed: {n_all - n_below} of {n_all} budgets", end="")
    if not below:
        print()
        return
    lowered = ", ".join(f"{v} x{x:.2f}" for v, x in pred["floor_scale"].items())
    print(f"; not expected (to fit the time, floors lowered: {lowered}; below where the prior, "
          "config/plan_prior.csv or --prior, expects the variant to bracket):")
    for v, levels in below.items():
        print(f"  {v:16s} {', '.join(f'{x:.3g}' for x in levels)}")
    print(f"bracketing every budget needs about {pred['floors_wall_s'] / 60:.1f} minutes (--minutes)")


if __name__ == "__main__":
    sys.exit(main())
