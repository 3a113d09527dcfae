"""Synthetic learning-curve tables with a known frontier, for tests and benchmarks.

Each run's curve is F(C) * (1 + kappa * d(C)^2) * exp(run offset + eval noise), where
F(C) = E + (C_c/C)^alpha is the true frontier and d(C) is how far (in ln C) the point lies
outside the stretch of compute that run owns.  The stretches tile the compute range, so
without noise the lower envelope is exactly F.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_SIZES = (("s", 2.0e6), ("m", 6.0e6), ("l", 1.8e7), ("xl", 5.4e7))  # non-embedding params


def synthetic_curves(rng: np.random.Generator, variant="base", objective="causal", E=2.0, alpha=0.2,
                     C_c=1e17, sizes=DEFAULT_SIZES, n_points=21, seeds=(0,), tokens_per_param=20.0,
                     kappa=0.05, run_sd=0.004, eval_sd=0.002, lr=None) -> pd.DataFrame:
    names = [s for s, _ in sizes]
    n_ne = np.array([n for _, n in sizes], float)
    d_model = np.round(np.sqrt(n_ne / 96.0))
    n_tot = n_ne + 32768 * d_model
    final_tokens = np.round(tokens_per_param * n_ne)
    frac = np.arange(1, n_points + 1) / n_points
    c_end = 6.0 * n_tot * final_tokens
    c_start = c_end * frac[0]
    # run k owns [b_{k-1}, b_k]: boundaries in the overlap of neighbouring runs' ranges
    bounds = np.sqrt(c_start[1:] * c_end[:-1])
    own_lo = np.concatenate([[c_start[0]], bounds])
    own_hi = np.concatenate([bounds, [c_end[-1]]])
    rows = []
    for k, name in enumerate(names):
        tokens = np.round(final_tokens[k] * frac).astype(np.int64)
        flops = 6.0 * n_tot[k] * tokens
        lc = np.log(flops)
        dist = np.maximum(np.log(own_lo[k]) - lc, 0) + np.maximum(lc - np.log(own_hi[k]), 0)
        clean = (E + (C_c / flops) ** alpha) * (1 + kappa * dist ** 2)
        for seed in seeds:
            loss = clean * np.exp(rng.normal(0, run_sd) + rng.normal(0, eval_sd, size=n_points))
            part = pd.DataFrame({"variant": variant, "objective": objective, "size": name, "seed": seed,
                                 "params_total": int(n_tot[k]), "params_nonembedding": int(n_ne[k]),
                                 "tokens": tokens, "flops": flops, "flops_6n": 6.0 * n_ne[k] * tokens,
                                 "loss": loss, "eval_loss_se": eval_sd * loss,
                                 "step": np.arange(1, n_points + 1), "warmup_tokens": int(tokens[0])})
            if lr is not None:
                part["lr"] = lr
            rows.append(part)
    return pd.concat(rows, ignore_index=True)


def synthetic_study(rng: np.random.Generator, n_variants=6, **kw) -> pd.DataFrame:
    """Several variants shaped like the default study (4 sizes x 21 eval points), alphas 0.15..0.3."""
    alphas = np.linspace(0.15, 0.30, n_variants)
    objectives = ("causal", "masked", "rtd")
    parts = [synthetic_curves(rng, variant=f"v{i}", objective=objectives[i % 3], alpha=float(a), **kw)
             for i, a in enumerate(alphas)]
    return pd.concat(parts, ignore_index=True)


def chinchilla_surface(N, D, E=1.8, A=60.0, B=400.0, alpha=0.34, beta=0.28):
    """L(N, D) = E + A / N^alpha + B / D^beta."""
    return E + A / np.asarray(N, float) ** alpha + B / np.asarray(D, float) ** beta


def surface_truths(E=1.8, A=60.0, B=400.0, alpha=0.34, beta=0.28) -> dict:
    """What each approach should recover from `chinchilla_surface` with C = 6 N D: the exponents of
    N_opt ~ C^a and D_opt ~ C^b, and the compute-optimal frontier L*(C) = E + G C^-gamma."""
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    return {"E": E, "alpha": alpha, "beta": beta, "a": a, "b": b, "gamma": alpha * beta / (alpha + beta)}


def synthetic_budget_grid(rng: np.random.Generator, levels=(1e13, 3e13, 1e14, 3e14, 1e15), variant="base",
                          objective="causal", n_sizes=14, n_range=(3e4, 3e7), tokens_per_param=(1.0, 2000.0),
                          noise_sd=0.004, seeds=(0,), n_points=6, **surface) -> pd.DataFrame:
    """A study on an IsoFLOP budget grid: at each level C every size with D = C / 6N in the
    tokens-per-parameter window is one run ending at (N, D) on `chinchilla_surface`, with a few earlier
    points on its way (a learning curve) and seeded multiplicative noise. flops = flops_6n = 6 N D."""
    sizes = np.geomspace(*n_range, n_sizes)
    rows = []
    for level in levels:
        for k, n in enumerate(sizes):
            d = level / (6 * n)
            if not tokens_per_param[0] <= d / n <= tokens_per_param[1]:
                continue
            for seed in seeds:
                tokens = np.round(d * np.linspace(0.3, 1.0, n_points)).astype(np.int64)
                loss = chinchilla_surface(n, tokens, **surface) * np.exp(rng.normal(0, noise_sd, n_points))
                rows.append(pd.DataFrame({
                    "variant": variant, "objective": objective, "size": f"n{k:02d}", "seed": seed,
                    "run": f"{variant}/n{k:02d}/seed{seed}/C{level:.3g}", "budget": f"C{level:.3g}",
                    "params_total": int(n), "params_nonembedding": int(n), "tokens": tokens,
                    "flops": 6.0 * n * tokens, "flops_6n": 6.0 * n * tokens, "loss": loss}))
    return pd.concat(rows, ignore_index=True)


def synthetic_wsd_runs(rng: np.random.Generator, variants=("a", "b"), n_sizes=4, budgets=(1.0, 2.0, 4.0),
                       base_tokens=1.0e6, warmup_tokens=25_600, tokens_per_step=1024, eval_points=12,
                       cooldown_fraction=0.2, E=3.0, A=400.0, a=0.4, shape_sd=0.1, drop=-0.06, drop_sd=0.01,
                       eval_sd=0.003, seeds=(0,)) -> pd.DataFrame:
    """Warmup-stable-decay runs shaped like the default study's (training/loop.py): per lineage
    (variant, size, seed) one stable run at constant rate, evaluated at ``eval_points`` log-spaced steps
    up to its longest budget's cooldown start; per budget a run holding the stable rows up to its branch
    (0.8 x its tokens), a row at the branch and four cooldown rows. The stable curve is
    L(D) = E + A S^-a with S = D - warmup/2 (the learning-rate area in peak-rate tokens; E, A, a of each
    lineage drawn around the given values with log-SD ``shape_sd``); the final loss is the branch loss
    times exp(drop + N(0, drop_sd)) (``drop`` may be a {variant: value} dict), cooldown rows in between
    follow the 1-sqrt schedule's progress; every evaluation has multiplicative noise ``eval_sd``."""
    rows = []
    drops = drop if isinstance(drop, dict) else {v: drop for v in variants}
    for v in variants:
        for k in range(n_sizes):
            n = int(2e4 * 2 ** k)
            for seed in seeds:
                rows += _wsd_lineage(rng, v, f"s{k}", n, seed, [base_tokens * b for b in budgets], warmup_tokens,
                                     tokens_per_step, eval_points, cooldown_fraction,
                                     [x * np.exp(rng.normal(0, shape_sd)) for x in (E, A, a)], drops[v], drop_sd,
                                     eval_sd)
    return pd.concat(rows, ignore_index=True)


def _wsd_lineage(rng, variant, size, n, seed, budget_tokens, warmup, per_step, eval_points, cool, shape, drop,
                 drop_sd, eval_sd) -> list:
    E, A, a = shape
    curve = lambda d: E + A * np.maximum(d - warmup / 2, d / 2) ** -a  # noqa: E731 (during warmup: half the tokens)
    steps = [int(round(b * (1 - cool))) // per_step for b in budget_tokens]
    evals = np.unique(np.round(np.logspace(0, np.log10(max(steps)), eval_points)).astype(int))
    stable = {s: curve(s * per_step) * np.exp(rng.normal(0, eval_sd)) for s in set(evals) | set(steps)}
    lineage = f"{variant}/{size}/seed{seed}_lr0.002"
    out = []
    for b_tok, branch in zip(budget_tokens, steps):
        total = int(b_tok) // per_step
        st = sorted(s for s in stable if s <= branch and (s in evals or s == branch))
        final = stable[branch] * np.exp(drop + rng.normal(0, drop_sd))
        cool_steps = [branch + max(1, round((total - branch) * q)) for q in (0.25, 0.5, 0.75, 1.0)]
        progress = [1 - np.sqrt(1 - (s - branch) / (total - branch)) for s in cool_steps]  # share of the drop so far
        cool_loss = [stable[branch] * np.exp(np.log(final / stable[branch]) * p) for p in progress[:-1]] + [final]
        cool_loss = [x * np.exp(rng.normal(0, eval_sd)) for x in cool_loss[:-1]] + [final]
        step = np.array(st + cool_steps)
        tokens = step * per_step
        out.append(pd.DataFrame({
            "variant": variant, "objective": "causal", "size": size, "seed": seed, "lr": 0.002,
            "run": f"{lineage}/D{b_tok:.3g}", "status": "ok", "budget": f"D{b_tok:.3g}", "budget_tokens": total * per_step,
            "schedule": "wsd", "params_total": 2 * n, "params_nonembedding": n, "step": step, "tokens": tokens,
            "flops": 6.0 * n * tokens, "flops_6n": 6.0 * n * tokens,
            "loss": [stable[s] for s in st] + cool_loss, "eval_loss_se": eval_sd, "warmup_tokens": warmup,
            "phase": ["stable"] * len(st) + ["cooldown"] * len(cool_steps)}))
    return out
