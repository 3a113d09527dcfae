"""Evidence for the default early-transient rule (analysis.curves.transient) on public learning curves in tests/data.

``python benchmarks/transient_evidence.py``  (~20 s on one core)

For each data set and each drop fraction f (a run's points with tokens < f x its final tokens are dropped) it
prints the envelope's pure alpha_C with both compute columns, the E-term alpha, how many runs are still steeper
than analysis.curves.transient.STEEP_SLOPE at their cut, and the share of points kept:
  * pythia    - 20 Pythia/PolyPythias runs (14m, 70m, 160m; 4-9 seeds each), one token budget, cosine
  * gemstone  - 22 Gemstones constant-lr runs, one token budget (curves start at 2% of training)
  * pythia+short - the Pythia runs plus each run truncated at 1/4 and 1/16 of its tokens: a token-budget ladder
                   in which the short runs carry the same early transient
each without and with extend_steep; the row "default" is the rule with no fraction given (10%).  Then the same
envelope fit at the default is compared with raw-envelope-point OLS fits ("independent" fits) at 5-20%.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm

ROOT = Path(__file__).resolve().parents[1]
from analysis.fits.bootstrap import fit_envelope  # noqa: E402
from analysis.fits.powerlaw import FitError  # noqa: E402
from analysis.frontier.envelope import RunCurves, envelope_points  # noqa: E402
from analysis.curves.table import validate_curves  # noqa: E402
from analysis.curves.transient import DEFAULT_FRACTION, early_transient  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "analysis"))
from analysis_testlib import gemstone_curves, pythia_curves, with_short_runs  # noqa: E402

FRACTIONS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.10, 0.15, 0.20, 0.30)

def envelope_alpha(curves: pd.DataFrame, compute: str, form: str = "pure") -> float:
    try:
        return fit_envelope(RunCurves.from_table(curves, compute), form, 40, 1e-3).alpha
    except FitError:
        return np.nan


def sweep(curves: pd.DataFrame, fractions=FRACTIONS, extend_steep: bool = False) -> pd.DataFrame:
    """One row per drop fraction (None = the default rule): alphas, runs steep at the cut, share of points kept."""
    rows = []
    for f in fractions:
        res = early_transient(curves, fraction=f, use_warmup=False, extend_steep=extend_steep)
        kept = res.kept(curves)
        rows.append(dict(fraction="default" if f is None else f"{f:.3f}", alpha_pure=envelope_alpha(kept, "flops"),
                         alpha_pure_6n=envelope_alpha(kept, "flops_6n"), alpha_eterm=envelope_alpha(kept, "flops",
                                                                                                    "eterm"),
                         runs_steep_at_cut=int(res.runs["steep_at_cut"].sum()), n_runs=len(res.runs),
                         kept_share=len(kept) / len(curves)))
    return pd.DataFrame(rows)


def raw_envelope_alpha(curves: pd.DataFrame) -> float:
    """An independent envelope fit: OLS of ln loss on ln flops over the raw points on the lower envelope."""
    pts = envelope_points(RunCurves.from_table(curves, "flops"))
    return float(-sm.OLS(np.log(pts["loss"]), sm.add_constant(np.log(pts["compute"]))).fit().params.iloc[1])


def main() -> int:
    sets = {"pythia": validate_curves(pythia_curves()), "gemstone": validate_curves(gemstone_curves())}
    sets["pythia+short"] = with_short_runs(sets["pythia"])
    for name, curves in sets.items():
        n_runs = curves["run"].nunique()
        for extend in (False, True):
            tab = sweep(curves, FRACTIONS + (None,), extend_steep=extend)
            print(f"\n== {name}: {n_runs} runs, {len(curves)} points" + (", extend_steep=True" if extend else ""))
            print(tab.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\ndefault fraction: {DEFAULT_FRACTION:.0%}; default envelope fit vs raw-envelope OLS fits at 5-20%:")
    sets["gemstone+short"] = with_short_runs(sets["gemstone"])
    for name, curves in sets.items():
        ours = envelope_alpha(early_transient(curves).kept(curves), "flops")
        ref = {f: raw_envelope_alpha(early_transient(curves, fraction=f).kept(curves)) for f in (0.05, 0.10, 0.20)}
        dev = [ours / a - 1 for a in ref.values()]
        print(f"  {name:15s} default {ours:.4f}; raw-envelope " + ", ".join(f"{f:.0%}: {a:.4f}" for f, a in ref.items())
              + f"; deviation {min(dev):+.0%} .. {max(dev):+.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
