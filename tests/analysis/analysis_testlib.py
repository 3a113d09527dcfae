"""Helpers shared by the analysis tests (imported as a top-level module: pytest puts this folder on sys.path)."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
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
