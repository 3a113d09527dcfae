"""Plan a study from a time budget: measure training speed here, fit a cost model, predict wall time.

Cost model (per variant, fitted on a short probe of its sizes on this machine):

    seconds per training token = c0 + c1 x accounted FLOPs per token

c0 is the per-token share of the fixed per-step work that dominates tiny models (optimiser, Python,
kernel launches, the softmax over the vocabulary), c1 the inverse of the throughput on the FLOPs
themselves. The probed sizes keep their own measured speeds; the line serves beyond them. The probe
runs as many processes at once as the study runs jobs (`cores // threads`). A job adds a fixed start-up
(`job_overhead_s`: Python, torch, the data, the model) and its evaluations (forward only: a third of a
training token each). The wall time of a study simulates
Snakemake's scheduling: `cores // threads` jobs at a time, a cooldown only after its stable run.

Probes are cached (`cache_dir`) by machine, thread count, concurrency and the code of the models and the
loop, so planning twice costs seconds.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

EVAL_COST = 1.0 / 3.0  # an evaluated token costs a third of a trained one (forward only)
PROBE_STEPS = 6


def machine_key(threads: int) -> str:
    """Machine, thread count and the code that trains: a cached probe is valid only for all three."""
    from archscale.code import code_hash, machine

    here = Path(__file__).resolve().parents[1]
    return code_hash([here / "models", here / "training" / "loop.py"], salt=machine(threads))


def probe_step_seconds(variant: str, size_name: str, overrides: dict, ctx, batch_size: int, threads: int = 1,
                       steps: int = PROBE_STEPS) -> float:
    """Median seconds of one training step of the training loop's optimiser (AdamW, its weight-decay groups)
    with its gradient clipping, timed by models.sizes.step_seconds."""
    import torch

    import models
    from models.sizes import step_seconds
    from training.loop import TrainConfig, make_optimizer

    torch.set_num_threads(threads)
    spec = models.get_variant(variant)
    model = spec.build(models.resolve_size(spec, size_name, ctx, **overrides), ctx)
    model.train()
    cfg = TrainConfig(batch_size=batch_size, seq_len=ctx.seq_len)
    return step_seconds(model, make_optimizer(model, cfg), ctx, batch_size, steps, clip=cfg.grad_clip)


def _probe_all(entries: list[dict], ctx, batch_size: int, threads: int, barrier=None, results=None, tag=0) -> dict:
    """One probing process: seconds per training token of each entry, in the given order, and the wall-clock
    window it probed in. With a barrier, probing starts once every process has started (spawning and
    importing take seconds) and the result goes into the `results` queue as (tag, result)."""
    import torch  # noqa: F401  (imported before the barrier: start-up is not probing)

    import models  # noqa: F401

    if barrier is not None:
        barrier.wait()
    t0 = time.time()
    secs = [probe_step_seconds(e["variant"], e["size"], e.get("overrides", {}), ctx, batch_size, threads)
            / (batch_size * ctx.seq_len) for e in entries]
    out = {"sec_per_token": secs, "window": (t0, time.time())}
    if results is not None:
        results.put((tag, out))
    return out


def probe_concurrently(entries: list[dict], ctx, batch_size: int, threads: int, concurrency: int) -> tuple[list, list]:
    """Seconds per training token of each entry measured the way a study's jobs run: `concurrency` processes
    at once (Snakemake's cores // threads), each probing every entry, process k starting k/concurrency of
    the way through the list, so that each entry is timed while the others load the machine (concurrent
    jobs share caches and memory bandwidth: on a 2-core machine two of them trained at 0.6-0.9x of a lone
    probe's speed). Returns (the median over the processes per entry, the processes' wall-clock windows)."""
    if concurrency <= 1:
        out = _probe_all(entries, ctx, batch_size, threads)
        return out["sec_per_token"], [out["window"]]
    import multiprocessing
    import queue

    mp = multiprocessing.get_context("spawn")
    n = len(entries)
    orders = [[(i + k * n // concurrency) % n for i in range(n)] for k in range(concurrency)]
    barrier, results = mp.Barrier(concurrency), mp.Queue()
    procs = [mp.Process(target=_probe_all, args=([entries[i] for i in order], ctx, batch_size, threads, barrier,
                                                  results, k)) for k, order in enumerate(orders)]
    for p in procs:
        p.start()
    outs = {}
    try:
        while len(outs) < concurrency:  # read before joining: a child exits only once its result is read
            try:
                tag, out = results.get(timeout=5)
                outs[tag] = out
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError(f"a probing process failed (exit codes {[p.exitcode for p in procs]})") from None
    finally:
        for p in procs:
            if len(outs) < concurrency:
                p.terminate()
            p.join()
    per_entry = [[] for _ in entries]
    for k, order in enumerate(orders):
        for i, sec in zip(order, outs[k]["sec_per_token"]):
            per_entry[i].append(sec)
    return [float(np.median(x)) for x in per_entry], [outs[k]["window"] for k in range(concurrency)]


def measure_speeds(entries: list[dict], ctx, batch_size: int, threads: int = 1, cache_dir=None,
                   concurrency: int = 1) -> pd.DataFrame:
    """Seconds per training token of each (variant, size) entry ({variant, size, size_config,
    flops_per_token}) under `concurrency` jobs at once (probe_concurrently); cached per machine, code and
    concurrency in cache_dir/speeds-<key>-x<concurrency>.json. The frame's attrs["windows"] holds the
    probing processes' wall-clock windows (empty when everything came from the cache)."""
    name = f"speeds-{machine_key(threads)}-x{max(1, concurrency)}.json"
    cache = Path(cache_dir) / name if cache_dir else None
    known = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}

    def key(e):
        return f"{e['variant']}|{json.dumps(e['size_config'], sort_keys=True)}|{batch_size}x{ctx.seq_len}|{ctx.vocab_size}"

    missing = list({key(e): e for e in entries if key(e) not in known}.values())
    windows = []
    if missing:
        secs, windows = probe_concurrently(missing, ctx, batch_size, threads, concurrency)
        known.update({key(e): s for e, s in zip(missing, secs)})
    rows = [{"variant": e["variant"], "size": e["size"], "flops_per_token": e["flops_per_token"],
             "sec_per_token": known[key(e)]} for e in entries]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known, indent=1, sort_keys=True))
    frame = pd.DataFrame(rows)
    frame.attrs["windows"] = windows
    return frame


# ---------------------------------------------------------------- GPUs
DEFAULT_MFU = 0.35  # planning MFU on a GPU where no probe ran: below the GPU benchmark's 40% goal; not measured
DEVICE_MEMORY_GB = {"h100": 80, "h200": 141, "a100": 80, "a100-40gb": 40, "l40s": 48, "a10": 24, "4090": 24}
DEVICE_NAMES = {"h100": "NVIDIA H100 80GB HBM3", "h200": "NVIDIA H200", "a100": "NVIDIA A100-SXM4-80GB",
                "a100-40gb": "NVIDIA A100-SXM4-40GB", "l40s": "NVIDIA L40S", "a10": "NVIDIA A10", "4090": "NVIDIA GeForce RTX 4090"}


def gpu_cost_model(variants, device: str, mfu: float = DEFAULT_MFU, job_overhead_s: float = 120.0) -> CostModel:
    """The cost model of a GPU from a table: seconds per token = FLOPs per token / (data-sheet dense bf16 peak
    x mfu), no per-token overhead; a job's start-up (imports, data, torch.compile) is `job_overhead_s`."""
    from training.device import known_peak

    name = DEVICE_NAMES.get(device.lower(), device)
    peak = known_peak(name)
    if peak is None:
        raise ValueError(f"unknown device {device!r}; known: {', '.join(DEVICE_NAMES)} (or a CUDA device's name)")
    return CostModel({v: (0.0, 1.0 / (peak * mfu)) for v in variants}, job_overhead_s,
                     notes={"device": name, "peak_flops": peak, "mfu": mfu, "source": "data-sheet peak x planning MFU"})


def gpu_memory_gb(params_total: int, micro_batch: int, seq_len: int, d_model: int, n_layer: int, n_head: int,
                  activation_bytes: int = 2, context_gb: float = 1.0) -> float:
    """A training job's memory: fp32 weights, gradients and AdamW's two moments (16 bytes a parameter) and
    the activations of one micro-batch, s b h (34 + 5 a s / h) bytes per layer in 16-bit without
    recomputation (Korthikanti et al. 2022; x2 for fp32 activations: `activation_bytes=4`), plus
    `context_gb` for the CUDA context and the allocator (or a CPU process's Python, torch and data)."""
    activations = seq_len * micro_batch * d_model * (34 + 5 * n_head * seq_len / d_model) * n_layer
    return (16 * params_total + activations * activation_bytes / 2) / 1e9 + context_gb


def fitting_micro_batch(batch: int, memory_gb: float, **shape) -> tuple[int, float]:
    """(micro-batch, GB): the largest of batch, batch/2, ... whose memory fits `memory_gb` (what
    training.micro_batch: auto finds by trying), at least 1."""
    micro = batch
    while micro > 1 and gpu_memory_gb(micro_batch=micro, **shape) > memory_gb:
        micro = max(1, micro // 2)
    return micro, gpu_memory_gb(micro_batch=micro, **shape)


def chinchilla_points(ladders: dict, fpt: dict, tokens_per_param: float = 20.0) -> pd.DataFrame:
    """Prior optima when no study of one's own exists (Hoffmann et al. 2022: D_opt = 20 N_opt): for each ladder
    size N of a variant, the accounted compute C = 20 N x (its FLOPs per token) at which it is the optimum."""
    rows = [{"variant": v, "compute": tokens_per_param * n * fpt[(v, name)], "n_opt": n, "bracketed": True,
             "at_smallest": False} for v, ladder in ladders.items() for name, n in ladder]
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class CostModel:
    """Per variant: seconds per token = c0 + c1 x FLOPs per token; plus a fixed start-up per job and
    `step_s` per optimiser step (the prior of CPU jobs; a fitted model folds it into c0). Where the plan
    probed a variant's sizes (`measured`: variant -> [(FLOPs per token, seconds per token), ...]), a size
    within the probed range takes the probes' own speeds (log-log between neighbours: the line misses
    single sizes by up to 1.5x), and the line serves only beyond them."""
    coef: dict  # variant -> (c0, c1)
    job_overhead_s: float = 5.0
    notes: dict = field(default_factory=dict)
    step_s: float = 0.0
    measured: dict = field(default_factory=dict)

    def sec_per_token(self, variant: str, flops_per_token: float) -> float:
        points = sorted(self.measured.get(variant, ()))
        if points and points[0][0] * (1 - 1e-9) <= flops_per_token <= points[-1][0] * (1 + 1e-9):
            f, t = np.log([p[0] for p in points]), np.log([p[1] for p in points])
            return float(np.exp(np.interp(math.log(flops_per_token), f, t)))
        c0, c1 = self.coef[variant]
        return c0 + c1 * flops_per_token

    def job_seconds(self, variant: str, flops_per_token: float, train_tokens: float, eval_tokens: float = 0.0,
                    steps: float = 0.0, devices: int = 1) -> float:
        """Seconds of one job; `devices` GPUs share its tokens (data parallel, scaling taken as ideal)."""
        work = self.sec_per_token(variant, flops_per_token) * (train_tokens + EVAL_COST * eval_tokens)
        return self.job_overhead_s + (work + self.step_s * steps) / max(1, devices)


def fit_cost_model(speeds: pd.DataFrame, job_overhead_s: float = 5.0) -> CostModel:
    """Non-negative least squares of seconds per token on FLOPs per token, per variant (relative
    errors: each point weighted by 1 / its time, so the small and the large sizes count alike); the probed
    speeds themselves are kept (CostModel.measured)."""
    from scipy.optimize import nnls

    coef = {}
    for variant, g in speeds.groupby("variant"):
        f, t = g["flops_per_token"].to_numpy(float), g["sec_per_token"].to_numpy(float)
        X = np.column_stack([np.ones_like(f), f]) / t[:, None]
        c, _ = nnls(X, np.ones_like(t))
        coef[variant] = (float(c[0]), float(c[1]))
    measured = {v: [(float(f), float(t)) for f, t in g.groupby("flops_per_token")["sec_per_token"].median().items()]
                for v, g in speeds.groupby("variant")}
    return CostModel(coef, job_overhead_s, measured=measured)


def job_cost(entry: dict, config: dict, fpt: dict, cost: CostModel) -> dict:
    """One training job of a resolved study (a stable run or a budget's run of study/config.py) with its
    predicted seconds: its tokens (a cooldown's from its branch on), its evaluations and its steps."""
    t = config["training"]
    tokens_per_step = entry["train_config"]["batch_size"] * t["seq_len"]  # the size's own batch
    if "stable_tokens" in entry:
        tokens, kind, job = entry["stable_tokens"], "stable", f"{entry['lineage']}/stable"
        steps = tokens // tokens_per_step
        n_eval = len(set(np.round(np.logspace(0, math.log10(max(steps, 1)), t["eval_points"])).astype(int)))
    else:
        wsd = t["schedule"] == "wsd"
        tokens, kind, job = entry["budget_tokens"] - (entry["branch_tokens"] if wsd else 0), "cooldown" if wsd else "run", entry["run_id"]
        steps, n_eval = tokens // tokens_per_step, 5 if wsd else t["eval_points"]
    seconds = cost.job_seconds(entry["variant"], fpt[(entry["variant"], entry["size"])], tokens, n_eval * t["eval_tokens"],
                               steps=steps, devices=entry.get("gpus") or 1)
    return {"job": job, "lineage": entry["lineage"], "kind": kind, "variant": entry["variant"], "seconds": seconds}


def study_jobs(study: dict, cost: CostModel) -> list[dict]:
    """Every training job of a resolved study (study.config.load_study) with its predicted seconds."""
    from study.config import flops_per_token

    fpt = flops_per_token(study)
    return [job_cost(e, study["config"], fpt, cost) for e in study.get("stables", []) + study["runs"]]


# ---------------------------------------------------------------- a config's jobs: runtime, memory, priority
# The prior of CPU jobs where no plan was written, fitted (non-negative least squares, relative errors) on the
# 74 training jobs of the default study at commit 30116b9 (2 one-thread jobs on a 2-core machine): 35 s a job
# (Python, torch, the tokens, the model, its evaluations' set-up), 26 ms an optimiser step of the ladder's
# small models, the accounted FLOPs at 3.3e10 FLOP/s; its predictions are 0.45x-2x of the measured times.
CPU_JOB_S, CPU_STEP_S, CPU_FLOP_RATE = 35.0, 0.026, 3.3e10
RUNTIME_MARGIN, RUNTIME_FLOOR_MIN = 3.0, 10  # a job's time limit: margin x its predicted time + a floor


def config_cost_model(config: dict) -> CostModel:
    """The one cost model of a study config, which the plan, the report's predicted job times and the DAG's
    job resources (runtime, priority) all use: the one `archscale plan` wrote into the config (`plan.cost`)
    where it covers every variant; else a prior: with training.gpus the data-sheet peak of `plan.device`
    (H100 by default) x `plan.mfu` (DEFAULT_MFU by default); on CPUs CPU_STEP_S per step plus CPU_FLOP_RATE
    per thread and CPU_JOB_S a job."""
    variants = list(config["variants"])
    plan = config.get("plan") or {}
    if plan.get("cost") and set(variants) <= set(plan["cost"]):
        measured = {v: [tuple(p) for p in points] for v, points in (plan.get("speeds") or {}).items()}
        return CostModel({v: (c["c0"], c["c1"]) for v, c in plan["cost"].items()}, plan.get("job_overhead_s", 5.0),
                         notes={"source": "plan"}, step_s=plan.get("step_s", 0.0), measured=measured)
    if config["training"]["gpus"] > 0:
        return gpu_cost_model(variants, plan.get("device", "h100"), plan.get("mfu", DEFAULT_MFU))
    rate = CPU_FLOP_RATE * max(1, config["training"]["threads"])
    return CostModel({v: (0.0, 1.0 / rate) for v in variants}, job_overhead_s=CPU_JOB_S, step_s=CPU_STEP_S,
                     notes={"source": "CPU prior"})


def runtime_minutes(seconds: float, attempt: int = 1) -> int:
    """A job's time limit (Snakemake's `runtime`, SLURM's --time): RUNTIME_MARGIN x its predicted seconds,
    plus RUNTIME_FLOOR_MIN, and more with each retry."""
    return int(RUNTIME_FLOOR_MIN + RUNTIME_MARGIN * seconds / 60 * attempt)


def host_memory_mb(entry: dict, config: dict, attempt: int = 1) -> int:
    """A job's host memory (Snakemake's `mem_mb`): on a CPU the whole training job (gpu_memory_gb with fp32
    activations of its micro-batch, 1.5 GB for Python, torch and the data); on GPUs the model's fp32 state
    passing through host memory when it is built and checkpointed, plus 4 GB. More with each retry."""
    size, tc = entry["size_config"], entry["train_config"]
    if entry.get("gpus"):
        gb = 16 * entry["params_total"] / 1e9 + 4.0
    else:
        m = config["training"].get("micro_batch")
        micro = min(m, tc["batch_size"]) if isinstance(m, int) else tc["batch_size"]
        gb = gpu_memory_gb(entry["params_total"], micro, config["training"]["seq_len"], size["d_model"], size["n_layer"],
                           size["n_head"], activation_bytes=4, context_gb=1.5)
    return int(gb * 1024 * attempt)


def simulate_wall(jobs: list[dict], slots: int) -> float:
    """Wall seconds of the jobs on `slots` parallel slots, a lineage's cooldowns after its stable run,
    the longest ready job first (what a greedy scheduler achieves)."""
    import heapq

    done_at = {}  # lineage -> time its stable job ends
    stables = sorted((j for j in jobs if j["kind"] == "stable"), key=lambda j: -j["seconds"])
    others = [j for j in jobs if j["kind"] != "stable"]
    free = [0.0] * max(1, slots)
    heapq.heapify(free)
    for j in stables:
        start = heapq.heappop(free)
        done_at[j["lineage"]] = start + j["seconds"]
        heapq.heappush(free, start + j["seconds"])
    ready = sorted(others, key=lambda j: (done_at.get(j["lineage"], 0.0), -j["seconds"]))
    end = max(done_at.values(), default=0.0)
    for j in ready:
        start = max(heapq.heappop(free), done_at.get(j["lineage"], 0.0))
        heapq.heappush(free, start + j["seconds"])
        end = max(end, start + j["seconds"])
    return max(end, max(free))


# ---------------------------------------------------------------- proposing a budget grid
@dataclass(frozen=True)
class Prior:
    """Where the optimum is expected: N_opt(C) = coefficient x C^exponent (non-embedding N, accounted C);
    with measured optima (`points`: ((C, N_opt), ...) by C), N_opt is interpolated between them in log-log
    and the power law, anchored at the nearest end, carries it beyond them. `lowest_level`: no budget below
    it can bracket (measured: below it the optimum was the ladder's smallest size; 0 = no such bound)."""
    coefficient: float
    exponent: float
    lowest_level: float = 0.0
    points: tuple = ()

    def n_opt(self, compute: float) -> float:
        if not self.points:
            return self.coefficient * compute ** self.exponent
        lc, ln = np.log([c for c, _ in self.points]), np.log([n for _, n in self.points])
        x = math.log(compute)
        end = 0 if x < lc[0] else -1 if x > lc[-1] else None
        if end is None:
            return float(np.exp(np.interp(x, lc, ln)))
        return float(np.exp(ln[end] + self.exponent * (x - lc[end])))


EXPONENT_RANGE = (0.25, 0.9)  # N_opt ~ C^a: a pooled slope outside this is noise at a study's 2-4x of compute


def fit_priors(points: pd.DataFrame, variants, exponent_range=EXPONENT_RANGE) -> dict:
    """{variant: Prior} from measured optima (columns variant, compute, n_opt; optional at_smallest: the
    budget's best size was its smallest, unbracketed): one exponent for all, the within-variant slope of
    ln n_opt on ln C pooled over the variants (clipped to `exponent_range`; its middle without two
    computes of one variant), and per variant the coefficient that puts the power law through its own
    bracketed-or-not optima (geometric mean); a variant without optima gets the median coefficient. Each
    prior keeps its variant's optima: within their range N_opt is interpolated between them (an optimum
    that moves faster or slower than the pooled law, or back, is planned where it was measured).
    A variant's lowest_level is the first free optimum's compute above its last optimum at the ladder's
    smallest size that lies below some free optimum (a power law cannot say that a variant's optimum
    leaves the bottom of the ladder late, and where one study found the smallest size best, a budget
    there is a toss-up for bracketing)."""
    pts = points[points["variant"].isin(list(variants)) & (points["n_opt"] > 0) & (points["compute"] > 0)]
    lowest = {}
    if "at_smallest" in pts.columns:
        for v, g in pts.groupby("variant"):
            at = g["at_smallest"].astype(bool)
            free = g.loc[~at, "compute"]
            # a bottom below some free optimum is a floor, even with free optima below it (single-seed studies
            # at budgets where the two smallest sizes are within the eval noise of each other disagree on
            # which wins); one above every free optimum is not (an optimum moving down at high compute)
            stuck = g.loc[at & (g["compute"] < (free.max() if len(free) else np.inf)), "compute"]
            lowest[v] = float(free[free > stuck.max()].min()) if len(stuck) and len(free) else \
                float(stuck.max() * 2) if len(stuck) else 0.0
        pts = pts[~pts["at_smallest"].astype(bool)]  # a bound, not an optimum: it would drag the law down
    x, y = np.log(pts["compute"].to_numpy(float)), np.log(pts["n_opt"].to_numpy(float))
    g = pts["variant"].to_numpy()
    xc = x - pd.Series(x).groupby(g).transform("mean").to_numpy()
    yc = y - pd.Series(y).groupby(g).transform("mean").to_numpy()
    lo, hi = exponent_range
    slope = float(np.sum(xc * yc) / np.sum(xc ** 2)) if np.sum(xc ** 2) > 1e-12 else (lo + hi) / 2
    slope = float(np.clip(slope, lo, hi))
    coef = pd.Series(y - slope * x).groupby(g).mean().map(np.exp).to_dict()
    fallback = float(np.exp(np.median(np.log(list(coef.values()))))) if coef else 2.1e4 / 1e12 ** slope
    measured = {v: tuple((float(c), float(np.exp(n.mean()))) for c, n in
                         pd.Series(np.log(gg["n_opt"].to_numpy(float)), index=gg["compute"].to_numpy(float))
                         .groupby(level=0)) for v, gg in pts.groupby("variant")}
    return {v: Prior(float(coef.get(v, fallback)), slope, lowest.get(v, 0.0), measured.get(v, ()))
            for v in variants}


TOSS_UP = 0.1  # n_opt this close (in log) to midway between two ladder sizes: either may win, so plan both


def pick_sizes(ladder: list[tuple[str, int]], n_opt: float, k: int) -> list[str]:
    """k consecutive sizes of a ladder [(name, N)] around the size nearest to n_opt in log N, that size in
    the middle (with k even, the extra one on n_opt's side), so that the size expected to win has a smaller
    and a larger neighbour; shifted inward at the ladder's ends. When n_opt lies near the middle between two
    sizes (within TOSS_UP of it, in log), either may win: k + 1 sizes then (k odd), both with neighbours.
    (The k sizes nearest to n_opt are not enough: they can leave the nearer one at the budget's edge.)"""
    rungs = sorted(ladder, key=lambda s: s[1])
    logs = [math.log(n) for _, n in rungs]
    i = min(range(len(rungs)), key=lambda j: abs(logs[j] - math.log(n_opt)))
    j = i + 1 if n_opt > rungs[i][1] else i - 1  # the size on n_opt's other side
    if k % 2 and 0 <= j < len(rungs) and abs(logs[i] - math.log(n_opt)) > (0.5 - TOSS_UP) * abs(logs[j] - logs[i]):
        k += 1
    below = (k - 1) // 2 + (k % 2 == 0 and n_opt < rungs[i][1])
    lo = min(max(0, i - below), max(0, len(rungs) - k))
    return [name for name, _ in rungs[lo:lo + k]]


MIN_RATIO = 1.2  # the closest two budgets may sit when a variant's levels are squeezed above its lowest_level


def bracket_floor(ladder: list[tuple[str, int]], prior: Prior) -> float:
    """The compute below which a variant is not expected to bracket: prior.lowest_level, where its prior
    optimum drops below the ladder's second size (no smaller neighbour), or its lowest measured optimum (the
    prior is not carried downward: there the smallest sizes were seen on plateaus, e.g. ELECTRA's base rate)."""
    floor = prior.lowest_level
    if prior.exponent > 0 and len(ladder) >= 2:  # the compute above which the prior expects >= the second size
        if not prior.points:
            floor = max(floor, (ladder[1][1] / prior.coefficient) ** (1.0 / prior.exponent))
        else:
            floor = max(floor, prior.points[0][0])
            grid = np.geomspace(1e6, 1e24, 1801)
            below = grid[np.array([prior.n_opt(c) for c in grid]) < ladder[1][1]]
            floor = max(floor, float(below.max()) if below.size and below.max() < grid[-1] else 0.0)
    return floor


def variant_levels(ladder: list[tuple[str, int]], prior: Prior, top: float, n_budgets: int, ratio: float,
                   floor_scale: float = 1.0) -> list:
    """A variant's `n_budgets` IsoFLOP levels: `ratio` apart up to `top`, unless their lowest would lie below
    where the variant can bracket (``bracket_floor``, times `floor_scale`: below 1 when a time budget cannot
    afford every floor); then the lowest level moves up to that floor and the top to max(top, floor x
    MIN_RATIO^(n-1)): the levels sit closer than `ratio` rather than far above `top`."""
    floor = bracket_floor(ladder, prior) * floor_scale
    lowest = max(top / ratio ** (n_budgets - 1), floor)
    top_v = max(top, lowest * MIN_RATIO ** (n_budgets - 1))
    return [float(f"{x:.3g}") for x in np.geomspace(lowest, top_v, n_budgets)]


def grid_config(base: dict, ladders: dict, priors, top: float, n_budgets: int, ratio: float,
                sizes_per_budget: int, floor_scale=1.0) -> dict:
    """A study config: `base` with, per variant, the IsoFLOP levels of `variant_levels`, each listing the
    sizes of the variant's ladder nearest to *its* prior optimum there (a variant whose FLOPs per token are
    high, e.g. the Reformer, needs more compute to bracket). `priors`: {variant: Prior}, or one Prior;
    `floor_scale`: one factor for every variant's floor, or {variant: factor} (1 for the others)."""
    import copy

    cfg = copy.deepcopy(base)
    common = [top / ratio ** j for j in range(n_budgets - 1, -1, -1)]
    for variant, ladder in ladders.items():
        prior = priors[variant] if isinstance(priors, dict) else priors
        scale = floor_scale.get(variant, 1.0) if isinstance(floor_scale, dict) else floor_scale
        entries = [{"level": level, "sizes": pick_sizes(ladder, prior.n_opt(level), sizes_per_budget)}
                   for level in variant_levels(ladder, prior, top, n_budgets, ratio, scale)]
        used = {n for e in entries for n in e["sizes"]}
        entry = cfg["variants"][variant]
        entry["sizes"] = [n for n, _ in ladder if n in used]
        entry["budgets"] = {"levels": entries}
        for key in ("size_overrides", "lr_grid", "gpus"):  # the base's per-size entries of the sizes planned
            if key in entry:
                entry[key] = {k: v for k, v in entry[key].items() if k in used}
    cfg["budgets"] = {**cfg.get("budgets", {}), "kind": "isoflop", "levels": [float(f"{c:.3g}") for c in common],
                      "min_sizes": 3, "tokens_per_param": [1e-3, 1e6]}
    return cfg


FIXED_OVERHEAD_S = 120.0  # corpus, tokenizer, and the analysis and report jobs of a six-variant study


def predict(config: dict, schema_path, cost: CostModel, cores: int) -> dict:
    """Predicted seconds of a study config: per job, per variant (core-seconds) and wall time."""
    from study.config import resolve, validate_config

    study = resolve(validate_config(config, schema_path))
    jobs = study_jobs(study, cost)
    # `cores` are the machine's cores (cores // threads jobs at once), or with training.gpus its GPUs
    t = study["config"]["training"]
    per_job = t["gpus"] or t["threads"]
    wall = simulate_wall(jobs, max(1, cores // per_job)) + FIXED_OVERHEAD_S
    per_variant = pd.DataFrame(jobs).groupby("variant")["seconds"].sum().to_dict()
    return {"study": study, "jobs": jobs, "wall_s": wall, "per_variant_s": per_variant}


def expected_unbracketed(cfg: dict, ladders: dict, priors) -> dict:
    """{variant: [levels below its bracket_floor]} of a planned config (variants with none left out)."""
    out = {}
    for variant, ladder in ladders.items():
        prior = priors[variant] if isinstance(priors, dict) else priors
        floor = bracket_floor(ladder, prior)
        below = [e["level"] for e in cfg["variants"][variant]["budgets"]["levels"] if e["level"] < floor * (1 - 1e-3)]
        if below:
            out[variant] = below
    return out


def plan_grid(base: dict, schema_path, ladders: dict, priors, seconds: float, cores: int, cost: CostModel,
              n_budgets: int = 3, ratio: float = 2.0, sizes_per_budget: int = 3, lo: float = 1e9,
              hi: float = 1e18) -> tuple[dict, dict]:
    """The largest top budget whose grid (grid_config) fits `seconds` of wall time on `cores`:
    bisection in log compute. When no grid with every variant's budgets at or above its bracket floor
    fits, the floors of as few variants as will do are lowered, the costliest first (they free the most
    time per budget given up), each set by the largest common factor that fits (bisection in log factor);
    the prediction then says which budgets lie below their floor (not expected to bracket) and how long the
    smallest grid with every floor would take. Returns (config, prediction: study, jobs, wall_s,
    per_variant_s, expected_unbracketed, floors_wall_s, floor_scale {variant: factor})."""
    from study.config import StudyError

    args = (base, schema_path, ladders, priors, seconds, cores, cost, n_budgets, ratio, sizes_per_budget, lo, hi)
    try:
        cfg, pred = _bisect(*args, 1.0)
        return cfg, {**pred, "expected_unbracketed": {}, "floors_wall_s": pred["wall_s"], "floor_scale": {}}
    except StudyError as e:
        failed = e
    try:  # the smallest grid with every floor: each variant's levels at its floor, MIN_RATIO apart
        floored = predict(grid_config(base, ladders, priors, lo, n_budgets, ratio, sizes_per_budget), schema_path,
                          cost, cores)
    except StudyError:
        raise failed from None
    costliest = sorted(floored["per_variant_s"], key=floored["per_variant_s"].get, reverse=True)
    for k in range(1, len(costliest) + 1):
        s_lo, s_hi, best = 1e-3, 1.0, None
        for _ in range(8):
            mid = math.sqrt(s_lo * s_hi)
            try:
                best, s_lo = (*_bisect(*args, {v: mid for v in costliest[:k]}), mid), mid
            except StudyError:
                s_hi = mid
            if s_hi / s_lo < 1.05:
                break
        if best is not None:
            cfg, pred, scale = best
            return cfg, {**pred, "expected_unbracketed": expected_unbracketed(cfg, ladders, priors),
                         "floors_wall_s": floored["wall_s"], "floor_scale": {v: scale for v in costliest[:k]}}
    raise failed


def _bisect(base, schema_path, ladders, priors, seconds, cores, cost, n_budgets, ratio, sizes_per_budget, lo, hi,
            floor_scale):
    from study.config import StudyError

    best = None
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        cfg = grid_config(base, ladders, priors, mid, n_budgets, ratio, sizes_per_budget, floor_scale)
        try:
            pred = predict(cfg, schema_path, cost, cores)
        except StudyError:
            lo = mid  # too small a budget for some size (fewer steps than allowed): look higher
            continue
        if pred["wall_s"] <= seconds:
            best, lo = (cfg, pred), mid
        else:
            hi = mid
        if hi / lo < 1.02:
            break
    if best is None:
        raise StudyError(f"no budget grid fits {seconds / 60:.0f} minutes on {cores} cores: "
                         "allow more time, fewer variants or fewer budgets")
    return best
