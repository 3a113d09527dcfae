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
