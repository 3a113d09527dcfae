"""Figures (matplotlib/seaborn).  Every function takes ``ax=None`` and returns the Figure."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .compare import fits_from_tables  # noqa: E402
from .table import validate_curves  # noqa: E402

COMPUTE_LABEL = "compute (FLOPs)"
PARAMS_LABEL = "non-embedding parameters"
LOSS_LABEL = "eval loss (nats/token)"
FORM_STYLE = {"pure": ("--", "pure power law"), "eterm": (":", "E + power law")}


def variant_palette(variants) -> dict:
    """Stable colour per variant (sorted names; same name -> same colour in every figure)."""
    names = sorted(set(map(str, variants)))
    colours = sns.color_palette("colorblind" if len(names) <= 10 else "husl", len(names))
    return dict(zip(names, colours))


def _axes(ax):
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4.5))
    return ax.figure, ax


def _bar(center, lo, hi):
    """errorbar lengths for an interval; a percentile interval need not contain the point
    estimate, so the lengths are clipped at 0 (the bar then starts at the estimate)."""
    if pd.isna(lo) or pd.isna(hi):
        return None
    return [[max(center - lo, 0.0)], [max(hi - center, 0.0)]]


def _log_loss_axis(ax):
    """Log y axis for losses with plain-number tick labels (2.5, 3, 4 rather than 3x10^0)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    ax.tick_params(axis="y", which="minor", labelsize=7)


def _fit_band(ax, fit, c, colour, style, label, ci_level):
    ax.plot(c, fit.predict(c), style, color=colour, lw=1.5, label=label)
    if fit.draws is not None:
        pred = fit.predict_draws(c)
        pred = pred[np.all(np.isfinite(pred), axis=1)]
        if len(pred):
            q = 50 * (1 - ci_level)
            lo, hi = np.percentile(pred, [q, 100 - q], axis=0)
            ax.fill_between(c, lo, hi, color=colour, alpha=0.15, lw=0)


def plot_learning_curves(curves, tables: dict, variant: str, compute: str = "flops", ax=None,
                         ci_level: float = 0.95, palette=None):
    """One variant: runs coloured by size, the frontier, pure and E-term fits with CI bands."""
    fig, ax = _axes(ax)
    curves = validate_curves(curves)
    g = curves[curves["variant"] == variant]
    colour = (palette or variant_palette(curves["variant"]))[variant]
    sizes = g.groupby("size")["params_total"].first().sort_values().index.tolist()
    size_col = dict(zip(sizes, sns.color_palette("crest", len(sizes))))
    for run, r in g.groupby("run"):
        r = r.sort_values(compute)
        ax.plot(r[compute], r["loss"], "-", color=size_col[r["size"].iloc[0]], lw=1, alpha=0.8)
    for s in sizes:
        ax.plot([], [], "-", color=size_col[s], label=f"size {s}")
    grid = tables.get("frontier_grid")
    if grid is not None and len(grid):
        fg = grid[grid["variant"] == variant]
        ax.plot(fg["compute"], fg["loss"], "-", color="black", lw=2.2, alpha=0.6, label="frontier")
    fitted = fits_from_tables(tables) if "fits" in tables else {}
    for form, (style, label) in FORM_STYLE.items():
        if (variant, form) in fitted:
            fit = fitted[(variant, form)][1]
            c = np.geomspace(*fit.x_range, 100)
            _fit_band(ax, fit, c, colour, style, f"{label} (alpha={fit.alpha:.3f})", ci_level)
    ax.set(xscale="log", xlabel=COMPUTE_LABEL, ylabel=LOSS_LABEL, title=f"{variant}")
    _log_loss_axis(ax)
    ax.legend(fontsize=7, frameon=False)
    return fig


def plot_frontiers(tables: dict, objective: str, ax=None, palette=None):
    """All variants' frontiers of one objective overlaid."""
    fig, ax = _axes(ax)
    grid = tables["frontier_grid"]
    palette = palette or variant_palette(grid["variant"])
    for v, g in grid[grid["objective"] == objective].groupby("variant"):
        ax.plot(g["compute"], g["loss"], "-", color=palette[v], lw=2, label=v)
    ax.set(xscale="log", xlabel=COMPUTE_LABEL, ylabel=LOSS_LABEL, title=f"frontiers, objective {objective}")
    _log_loss_axis(ax)
    ax.legend(fontsize=8, frameon=False)
    return fig


def plot_exponent_forest(fits: pd.DataFrame, ax=None, palette=None):
    """Compute exponent alpha with CI per variant and form (pure, E-term)."""
    fig, ax = _axes(ax)
    f = fits[(fits["status"] == "ok") & fits["form"].isin(FORM_STYLE)].sort_values(["objective", "variant", "form"])
    palette = palette or variant_palette(fits["variant"])
    for y, (_, r) in enumerate(f.iterrows()):
        err = _bar(r["alpha"], r["alpha_lo"], r["alpha_hi"])
        ax.errorbar(r["alpha"], y, xerr=err, fmt="o" if r["form"] == "eterm" else "s", color=palette[r["variant"]],
                    capsize=3)
    ax.set_yticks(range(len(f)), [f"{r.variant} [{r.objective}] {r.form}" for r in f.itertuples()], fontsize=7)
    ax.set(xlabel="compute exponent alpha (L ~ C^-alpha)", title="exponents with bootstrap CIs")
    ax.invert_yaxis()
    return fig


def plot_delta_alpha_matrix(pairs: pd.DataFrame, form: str = "eterm", ax=None):
    """Pairwise alpha_row - alpha_col; '*' marks Holm-adjusted p < significance ('steeper')."""
    fig, ax = _axes(ax)
    p = pairs[pairs["form"] == form]
    names = sorted(set(p["variant_a"]) | set(p["variant_b"]))
    m = pd.DataFrame(np.nan, index=names, columns=names)
    marks = pd.DataFrame("", index=names, columns=names)
    for r in p.itertuples():
        m.loc[r.variant_a, r.variant_b], m.loc[r.variant_b, r.variant_a] = r.delta_alpha, -r.delta_alpha
        mark = "*" if r.verdict == "steeper" else ""
        marks.loc[r.variant_a, r.variant_b] = marks.loc[r.variant_b, r.variant_a] = mark
    lim = float(np.nanmax(np.abs(m.to_numpy()))) if m.notna().any().any() else 1.0
    im = ax.imshow(m.to_numpy(float), cmap="vlag", vmin=-lim, vmax=lim)
    for i, j in np.argwhere(m.notna().to_numpy()):
        ax.text(j, i, f"{m.iat[i, j]:+.3f}{marks.iat[i, j]}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    fig.colorbar(im, ax=ax, label="alpha(row) - alpha(col)")
    ax.set_title(f"delta alpha ({form}); * = steeper after Holm")
    return fig


def plot_extrapolation(extrap: pd.DataFrame, ax=None, palette=None):
    """Predicted vs actual frontier loss of the held-out largest size, with prediction intervals."""
    fig, ax = _axes(ax)
    e = extrap[extrap["status"] == "ok"]
    palette = palette or variant_palette(extrap["variant"])
    for r in e.itertuples():
        err = _bar(r.predicted_loss, r.pi_lo, r.pi_hi)
        ax.errorbar(r.actual_loss, r.predicted_loss, yerr=err, fmt="o" if r.form == "eterm" else "s",
                    color=palette[r.variant], capsize=3, label=f"{r.variant} {r.form}")
    if len(e):
        lims = [e[["actual_loss", "predicted_loss"]].min().min() * 0.97, e[["actual_loss", "predicted_loss"]].max().max() * 1.03]
        ax.plot(lims, lims, "k-", lw=0.8)
    ax.set(xlabel="actual frontier loss at held-out compute", ylabel="predicted loss",
           title="extrapolation to the largest size")
    ax.legend(fontsize=6, frameon=False)
    return fig


def plot_loss_vs_params(curves, tables: dict, ax=None, palette=None):
    """Final loss of every used run against non-embedding parameters, with the L(N) power-law fits."""
    fig, ax = _axes(ax)
    runs = tables["runs"]
    runs = runs[runs["used"].astype(bool)]
    palette = palette or variant_palette(runs["variant"])
    ln = tables.get("ln_fits", pd.DataFrame(columns=["variant", "n_measure", "status"]))
    for v, g in runs.groupby("variant"):
        ax.plot(g["params_nonembedding"], g["final_loss"], "o", color=palette[v], label=v)
        f = ln[(ln["variant"] == v) & (ln["n_measure"] == "nonembedding") & (ln["status"] == "ok")]
        if len(f):
            n = np.geomspace(g["params_nonembedding"].min(), g["params_nonembedding"].max(), 50)
            ax.plot(n, (f["N_c"].iloc[0] / n) ** f["alpha"].iloc[0], "--", color=palette[v], lw=1)
    ax.set(xscale="log", xlabel=PARAMS_LABEL, ylabel=f"final {LOSS_LABEL}", title="L(N), final losses")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # scans span > 1 decade: majors suffice
    _log_loss_axis(ax)
    ax.legend(fontsize=8, frameon=False)
    return fig


def all_figures(curves, tables: dict, compute: str = "flops", ci_level: float = 0.95) -> dict:
    """{file stem: Figure} for every standard figure (what the CLI and the workflow save)."""
    curves = validate_curves(curves)
    palette = variant_palette(curves["variant"])
    figs = {f"curves_{v}": plot_learning_curves(curves, tables, v, compute, ci_level=ci_level, palette=palette)
            for v in sorted(curves["variant"].unique())}
    for obj in sorted(tables["frontier_grid"]["objective"].unique()):
        figs[f"frontiers_{obj}"] = plot_frontiers(tables, obj, palette=palette)
    figs["loss_vs_params"] = plot_loss_vs_params(curves, tables, palette=palette)
    figs["exponent_forest"] = plot_exponent_forest(tables["fits"], palette=palette)
    for form in FORM_STYLE:
        if (tables["pairs"]["form"] == form).any():
            figs[f"delta_alpha_{form}"] = plot_delta_alpha_matrix(tables["pairs"], form)
    figs["extrapolation"] = plot_extrapolation(tables["extrapolation"], palette=palette)
    return figs
