"""A notebook API in the statsmodels manner: a DataFrame in, a results object out.

    import analysis
    res = analysis.fit_frontier(curves, "gpt2")            # pure L(C) on the primary frontier
    res.params, res.conf_int(alpha=0.05), res.summary()    # estimates, 95% intervals, a printable table
    res.plot()                                             # a matplotlib Figure (ax=None makes one)
    analysis.compare(res, analysis.fit_frontier(curves, "reformer"))

`conf_int` is a bootstrap interval when the fit was bootstrapped (n_boot > 0), else, for the pure
form, the OLS interval. `compare` is the normal-approximation (Wald) test of the exponent difference
used by the pipeline's comparisons (analysis/comparison/comparisons.py), for one pair and no multiplicity correction.
Nothing here imports matplotlib until `plot` is called.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.fits.powerlaw import PowerLawFit
from analysis.options import AnalysisOptions

__all__ = ["FrontierResults", "fit_frontier", "compare"]


@dataclass(frozen=True)
class FrontierResults:
    """One variant's L(C) fit on its frontier."""
    variant: str
    objective: str
    frontier: str  # "final" (the runs' final points) or "envelope" (the learning curves' lower envelope)
    compute: str
    fit: PowerLawFit
    points: pd.DataFrame  # the frontier the fit used: compute, loss

    @property
    def params(self) -> pd.Series:
        return pd.Series({k: v for k, v in self.fit.params().items() if not (self.fit.form == "pure" and k == "E")},
                         name=self.variant)

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """(lower, upper) per parameter at level 1 - alpha, as statsmodels and every fit in this package
        name it (the argument, not the exponent `params["alpha"]`)."""
        if not 0 < alpha < 1:
            raise ValueError(f"conf_int: alpha={alpha!r} must lie in (0, 1), e.g. 0.05 for 95% intervals")
        return self.fit.conf_int(alpha).loc[self.params.index]

    def summary(self, alpha: float = 0.05) -> pd.DataFrame:
        ci = self.conf_int(alpha)
        table = pd.concat([self.params.rename("estimate"), ci], axis=1)
        table.attrs["title"] = (f"{self.variant} ({self.objective}): {self.fit.form} L(C) on the {self.frontier} "
                                f"frontier over '{self.compute}', {self.fit.n_points} points, R^2 (log) "
                                f"{self.fit.r2_log:.3f}, {'bootstrap' if self.fit.draws is not None else 'OLS'} "
                                f"{1 - alpha:.0%} intervals")
        return table

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4.5))
        ax.plot(self.points["compute"], self.points["loss"], "o", label=f"{self.variant} frontier ({self.frontier})")
        c = np.geomspace(*self.fit.x_range, 100)
        ax.plot(c, self.fit.predict(c), "--", label=f"{self.fit.form} fit, alpha={self.fit.alpha:.3f}")
        ax.set(xscale="log", yscale="log", xlabel=f"compute ({self.compute})", ylabel="loss")
        ax.legend(frameon=False, fontsize=8)
        return ax.figure


def fit_frontier(curves: pd.DataFrame, variant: str | None = None, *, form: str = "pure", frontier: str = "auto",
                 compute: str = "flops", n_boot: int = 0, rng: np.random.Generator | None = None,
                 **options) -> FrontierResults:
    """Fit L(C) on one variant's frontier of a learning-curve table (README: the table's columns).

    variant: needed when the table has several; frontier: "final", "envelope" or "auto" (final when
    some size has several token budgets); n_boot > 0 bootstraps over runs (pass a numpy Generator as
    rng); other keyword arguments are AnalysisOptions fields (e.g. drop_fraction)."""
    from analysis import stages
    from analysis.frontier import approaches as finals
    from analysis.frontier.envelope import RunCurves, grid_frontier
    from analysis.curves.table import validate_curves

    if form not in ("pure", "eterm"):
        raise ValueError(f"fit_frontier: form={form!r}; use 'pure' or 'eterm'")
    opts = AnalysisOptions(compute=compute, frontier=frontier, n_boot=n_boot, **options)
    table = validate_curves(curves)
    names = sorted(table["variant"].unique())
    if variant is None and len(names) != 1:
        raise ValueError(f"fit_frontier: the table has variants {names}; name one")
    variant = variant or names[0]
    if variant not in names:
        raise ValueError(f"fit_frontier: no variant {variant!r} in the table; it has {names}")
    prep = stages.prepare(table[table["variant"] == variant], opts)
    base = stages.base_seed(rng if rng is not None else np.random.default_rng(opts.seed))
    # the pipeline's own fits (analysis/stages.py), from the same per-variant random stream
    fits, notes, _ = stages.frontier_fits(prep.curves, prep.finals, opts, base, prep.frontier)
    if prep.frontier == "final":
        f = finals.final_frontier(prep.finals, compute)
        points = f.loc[f["on_frontier"], [compute, "loss"]].rename(columns={compute: "compute"})
    else:
        logx, logy, _ = grid_frontier(RunCurves.from_table(prep.curves, compute), opts.grid_points)
        points = pd.DataFrame({"compute": np.exp(logx), "loss": np.exp(logy)})
    if fits.get(form) is None:
        from analysis.fits.powerlaw import FitError

        raise FitError(f"fit_frontier: {variant}: {notes.get(form, 'no fit')}")
    return FrontierResults(variant, str(table.loc[table["variant"] == variant, "objective"].iloc[0]), prep.frontier,
                           compute, fits[form], points.reset_index(drop=True))


def compare(a: FrontierResults, b: FrontierResults, level: float = 0.95) -> pd.Series:
    """alpha_a - alpha_b with its standard error (bootstrap SDs, else OLS), the Wald z, the two-sided
    p-value and the interval at `level`; a warning column says when the objectives differ. The pipeline's
    test of a pair (analysis/comparison/comparisons.py: alpha_se, wald_p), without its multiplicity correction."""
    from scipy.stats import norm

    from analysis.comparison.comparisons import alpha_se, wald_p

    delta = a.fit.alpha - b.fit.alpha
    s = float(np.hypot(alpha_se(a.fit, ols=True)[0], alpha_se(b.fit, ols=True)[0]))
    q = norm.ppf(0.5 + level / 2)
    return pd.Series({"variant_a": a.variant, "variant_b": b.variant, "delta_alpha": delta, "se": s,
                      "z": delta / s if s > 0 else float("nan"), "p": wald_p(delta, s),
                      "lower": delta - q * s, "upper": delta + q * s,
                      "note": "" if a.objective == b.objective else "different objectives: exponents only"})
