"""Tiers from paired differences on the shared evaluation set: every run is scored on the same held-out batches, so
two runs' difference has a far smaller standard error than the unpaired sqrt(se_i^2 + se_j^2)."""
import numpy as np
import pandas as pd
import pytest

from analysis.comparison import comparisons
from analysis.options import AnalysisOptions
from analysis.curves.table import validate_curves


def test_the_paired_standard_error_of_correlated_batch_losses_is_the_known_one():
    """Per-batch losses a, b with correlation rho and SD s each: sd(a - b) = s sqrt(2 (1 - rho)), so the paired SE
    over n batches is s sqrt(2 (1 - rho) / n), against the unpaired s sqrt(2 / n)."""
    rng = np.random.default_rng(0)
    n, s, rho = 200_000, 0.3, 0.95
    common = rng.normal(size=n)
    a = 4.0 + s * (np.sqrt(rho) * common + np.sqrt(1 - rho) * rng.normal(size=n))
    b = 3.9 + s * (np.sqrt(rho) * common + np.sqrt(1 - rho) * rng.normal(size=n))
    assert comparisons.paired_se(a, b) == pytest.approx(s * np.sqrt(2 * (1 - rho) / n), rel=0.01)
    unpaired = np.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)
    assert comparisons.paired_se(a, b) < 0.25 * unpaired


def _table(batches_of):
    """Three sizes, one run each, with per-batch losses on their last point."""
    rows = []
    for k, (size, n) in enumerate([("s", 1000), ("m", 4000), ("l", 16000)]):
        b = batches_of[size]
        for i, t in enumerate([1e5, 2e5, 4e5]):
            last = i == 2
            rows.append(dict(variant="v", objective="causal", size=size, seed=0, params_total=2 * n,
                             params_nonembedding=n, tokens=t, flops=6.0 * n * t, flops_6n=6.0 * n * t,
                             loss=(b.mean() if last else 5.0 - 0.1 * i - 0.01 * k),
                             eval_loss_se=b.std(ddof=1) / np.sqrt(b.size),
                             eval_batch_losses=" ".join(f"{x:.6g}" for x in b) if last else ""))
    return validate_curves(pd.DataFrame(rows))


def test_tiers_use_the_paired_floor_and_say_so_with_the_unpaired_one_beside():
    rng = np.random.default_rng(1)
    hard = rng.normal(0, 0.3, size=8)  # batch difficulty, shared by every run
    batches = {"s": 4.00 + hard + rng.normal(0, 0.005, 8), "m": 3.95 + hard + rng.normal(0, 0.005, 8),
               "l": 3.94 + hard + rng.normal(0, 0.005, 8)}
    t = comparisons.tiers(_table(batches), AnalysisOptions(n_boot=0))
    assert set(t["floor_source"]) == {"paired eval batches"}
    second = t.iloc[1]
    assert second["floor"] < 0.05 < second["floor_unpaired"]  # 0.05 apart: beyond the paired floor, not the unpaired
    assert list(t["tier"]) == [0, 1, 1] or list(t["tier"]) == [0, 1, 2]
    # without the per-batch losses (a table from elsewhere) the unpaired rule, as before: one tier
    plain = _table(batches).assign(eval_batch_losses="")
    u = comparisons.tiers(plain, AnalysisOptions(n_boot=0))
    assert set(u["floor_source"]) == {"eval_loss_se"} and set(u["tier"]) == {0}
