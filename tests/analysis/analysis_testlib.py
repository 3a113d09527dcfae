"""Helpers shared by the analysis tests (imported as a top-level module: pytest puts this folder on sys.path)."""
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"  # public reference data shipped with the repository (see its README.md)
REFERENCE = DATA


def make_run(variant, size, params, tokens, losses, seed=0, objective="causal", **extra):
    """Hand-made run: flops = flops_6n = 6 * params * tokens."""
    tokens = np.asarray(tokens, float)
    df = pd.DataFrame({"variant": variant, "objective": objective, "size": size, "seed": seed,
                       "params_total": int(params), "params_nonembedding": int(params),
                       "tokens": tokens.astype(np.int64), "flops": 6.0 * params * tokens,
                       "flops_6n": 6.0 * params * tokens, "loss": losses})
    for k, v in extra.items():
        df[k] = v
    return df


# ---------------------------------------------------------------- public curves in tests/data as curve tables
PYTHIA_PARAMS = {"14m": (14_067_712, 1_189_888), "70m": (70_426_624, 18_915_328), "160m": (162_322_944, 85_056_000)}
PYTHIA_TOKENS_PER_STEP, PYTHIA_STEPS = 2_097_152, 143_000
GEMSTONE_VOCAB = 50_304  # non-embedding params = params - vocab x width (their input embedding table)


def pythia_curves() -> pd.DataFrame:
    """tests/data/pythia_train_loss.csv as a learning-curve table (published parameter counts; flops = 6 N D with
    all parameters, flops_6n with non-embedding ones); one run per (size, seed), no warm-up column."""
    d = pd.read_csv(DATA / "pythia_train_loss.csv")
    n_tot = d["size"].map(lambda s: PYTHIA_PARAMS[s][0])
    n_ne = d["size"].map(lambda s: PYTHIA_PARAMS[s][1])
    tokens = (d["step"] * PYTHIA_TOKENS_PER_STEP).round().astype("int64")
    return pd.DataFrame({"variant": "pythia", "objective": "causal", "size": d["size"], "seed": d["seed"],
                         "params_total": n_tot, "params_nonembedding": n_ne, "tokens": tokens,
                         "flops": 6.0 * n_tot * tokens, "flops_6n": 6.0 * n_ne * tokens, "loss": d["loss"]})


def gemstone_curves(series: str = "hot") -> pd.DataFrame:
    """The Gemstones curves of one series (tests/data/gemstone_loss_curves.csv) as a learning-curve table."""
    d = pd.read_csv(DATA / "gemstone_loss_curves.csv")
    d = d[d["series"] == series]
    n_ne = d["params"] - GEMSTONE_VOCAB * d["width"]
    return pd.DataFrame({"variant": "gemstone", "objective": "causal", "size": d["run"], "seed": 0,
                         "params_total": d["params"], "params_nonembedding": n_ne, "tokens": d["tokens"],
                         "flops": 6.0 * d["params"] * d["tokens"], "flops_6n": 6.0 * n_ne * d["tokens"],
                         "loss": d["loss"]})


def with_short_runs(curves: pd.DataFrame, divisors=(4, 16)) -> pd.DataFrame:
    """Add each run truncated at 1/k of its final tokens as a run of its own: a token-budget ladder whose short
    runs carry the same early transient (input: a validated table with a `run` column)."""
    parts = [curves]
    for k in divisors:
        final = curves.groupby("run")["tokens"].transform("max")
        short = curves[curves["tokens"] <= final / k].copy()
        short["run"] = short["run"] + f"/T{k}"
        parts.append(short)
    return pd.concat(parts, ignore_index=True)
