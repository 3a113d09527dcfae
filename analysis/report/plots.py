"""Figures (matplotlib/seaborn).  Every function takes ``ax=None`` and returns the Figure.

Importing this module leaves the matplotlib backend alone (scripts that write files choose Agg).
``all_figures`` makes every figure of ``figure_list.figure_stems``; one with nothing to show says why.
"""
from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from analysis.comparison.comparisons import fits_from_tables
from analysis.report.figure_list import figure_stems
from analysis.curves.table import validate_curves

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
        ax.plot(r[compute].iloc[-1], r["loss"].iloc[-1], "o", color=size_col[r["size"].iloc[0]], ms=3.5)
    for s in sizes:
        ax.plot([], [], "-", color=size_col[s], label=f"size {s}")
    grid = tables.get("frontier_grid")
    if grid is not None and len(grid):
        fg = grid[grid["variant"] == variant]
        ax.plot(fg["compute"], fg["loss"], "-", color="black", lw=2.2, alpha=0.35, label="learning-curve envelope")
    fp = tables.get("final_points")
    if fp is not None and len(fp):
        on = fp[(fp["variant"] == variant) & (fp["on_frontier"].astype(str).str.lower() == "true")].sort_values(compute)
        ax.plot(on[compute], on["loss"], "s-", color="black", ms=5, lw=1.2, label="final-point frontier")
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


def plot_exponent_forest(fits: pd.DataFrame, ax=None, palette=None):
    """Compute exponent alpha with CI per variant and form (pure, E-term)."""
    fig, ax = _axes(ax)
    if "primary" in fits.columns:
        fits = fits[fits["primary"].astype(str).str.lower() == "true"]
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
    ln = tables.get("size_fits", pd.DataFrame(columns=["variant", "n_measure", "status"]))
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


def _empty(ax, title: str, why: str):
    """A figure that says why it has nothing to show (the study's shape did not allow it)."""
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True, fontsize=10, transform=ax.transAxes)
    return ax.figure


def plot_isoflop(final_points: pd.DataFrame, isoflop: pd.DataFrame, variant: str, compute: str = "flops", ax=None):
    """Approach 2 for one variant: final loss against non-embedding N at each budget, the fitted
    parabola, the optimum with its interval; unbracketed budgets hollow."""
    fig, ax = _axes(ax)
    fp = final_points[final_points["variant"] == variant]
    iso = isoflop[isoflop["variant"] == variant] if len(isoflop) else isoflop
    if not len(iso):
        return _empty(ax, f"{variant}: IsoFLOP profiles", "no budget with final points of 3 or more sizes")
    colours = dict(zip(iso["budget"], sns.color_palette("flare", len(iso))))
    for r in iso.itertuples():
        pts = fp[fp["budget"].astype(str) == str(r.budget)] if (fp["budget"] != "").any() else fp.iloc[0:0]
        filled = r.status == "ok"
        label = f"{r.budget} ({fmt_sci(r.compute)} FLOPs){'' if filled else ', not bracketed'}"
        ax.plot(pts["params_nonembedding"], pts["loss"], "o", ms=6, color=colours[r.budget],
                mfc=colours[r.budget] if filled else "none", label=label)
        if pd.notna(r.parab_a) and len(pts):
            n = np.geomspace(pts["params_nonembedding"].min(), pts["params_nonembedding"].max(), 60)
            ax.plot(n, np.polyval([r.parab_a, r.parab_b, r.parab_c], np.log(n)), "-", color=colours[r.budget],
                    lw=1, alpha=0.8 if filled else 0.35)
        if filled:
            ax.errorbar(r.N_opt, r.loss_opt, xerr=[[max(r.N_opt - r.N_opt_lo, 0)], [max(r.N_opt_hi - r.N_opt, 0)]]
                        if pd.notna(r.N_opt_lo) else None, fmt="*", ms=11, color=colours[r.budget], mec="black",
                        capsize=3)
    ax.set(xscale="log", xlabel=PARAMS_LABEL, ylabel=f"final {LOSS_LABEL}",
           title=f"{variant}: IsoFLOP profiles (star: fitted optimum, 95% CI)")
    ax.legend(fontsize=7, frameon=False)
    return fig


def fmt_sci(x) -> str:
    return f"{x:.2g}" if pd.notna(x) else "-"


def plot_final_frontiers(tables: dict, objective: str, compute: str = "flops", ax=None, palette=None):
    """All variants of one objective on one axis: the primary frontier (final points: every final point
    faint, the frontier joined; envelope: the learning-curve envelope) and the pure L(C) fit."""
    fig, ax = _axes(ax)
    fp = tables.get("final_points", pd.DataFrame())
    primary_final = bool(len(fp)) and bool(fp["primary"].astype(str).str.lower().eq("true").any())
    fitted = fits_from_tables(tables) if "fits" in tables else {}
    names = sorted(set(fp["variant"]) | set(tables["frontier_grid"]["variant"])) if len(fp) else \
        sorted(set(tables["frontier_grid"]["variant"]))
    palette = palette or variant_palette(names)
    drawn = 0
    if primary_final:
        for v, g in fp[fp["objective"] == objective].groupby("variant"):
            ax.plot(g[compute], g["loss"], ".", color=palette[v], alpha=0.35, ms=5)
            on = g[g["on_frontier"].astype(str).str.lower() == "true"].sort_values(compute)
            ax.plot(on[compute], on["loss"], "o-", color=palette[v], lw=1.8, ms=5, label=v)
            drawn += 1
    else:
        grid = tables["frontier_grid"]
        for v, g in grid[grid["objective"] == objective].groupby("variant"):
            ax.plot(g["compute"], g["loss"], "-", color=palette[v], lw=2, label=f"{v} (envelope)")
            drawn += 1
    for (v, form), (obj, fit) in fitted.items():
        if form == "pure" and obj == objective:
            c = np.geomspace(*fit.x_range, 50)
            ax.plot(c, fit.predict(c), "--", color=palette.get(v, "grey"), lw=1)
    if not drawn:
        return _empty(ax, f"frontiers, objective {objective}", "no usable runs")
    kind = "final points (Approach 1)" if primary_final else "learning-curve envelope"
    ax.set(xscale="log", xlabel=COMPUTE_LABEL, ylabel=LOSS_LABEL,
           title=f"frontiers, objective {objective}: {kind}; dashed: pure L(C)")
    _log_loss_axis(ax)
    ax.legend(fontsize=8, frameon=False)
    return fig


def plot_allocation(isoflop: pd.DataFrame, allocation: pd.DataFrame, palette=None):
    """N_opt(C) and D_opt(C) from the bracketed IsoFLOP budgets, with intervals and the power-law fits."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    ok = isoflop[isoflop["status"] == "ok"] if len(isoflop) else isoflop
    if not len(ok):
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(6, 4.5))
        return _empty(ax, "compute-optimal allocation", "no bracketed IsoFLOP budget: N_opt(C) cannot be measured")
    palette = palette or variant_palette(isoflop["variant"])
    for ax, q, label in ((axes[0], "N_opt", PARAMS_LABEL), (axes[1], "D_opt", "training tokens")):
        for v, g in ok.groupby("variant"):
            lo = np.maximum(g[q] - g[f"{q}_lo"], 0)
            hi = np.maximum(g[f"{q}_hi"] - g[q], 0)
            ax.errorbar(g["compute"], g[q], yerr=[lo.fillna(0), hi.fillna(0)], fmt="o", color=palette[v], capsize=3,
                        label=v)
            f = allocation[(allocation["variant"] == v) & (allocation["quantity"] == q) & (allocation["status"] == "ok")]
            if len(f):
                c = np.geomspace(g["compute"].min(), g["compute"].max(), 20)
                r = f.iloc[0]
                ax.plot(c, r["coefficient"] * c ** r["exponent"], "-", color=palette[v], lw=1,
                        label=f"{v}: exponent {r['exponent']:.2f}")
        ax.set(xscale="log", yscale="log", xlabel=COMPUTE_LABEL, ylabel=f"optimal {label}", title=f"{q}(C)")
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def plot_sensitivity(sens: pd.DataFrame, ax=None):
    """Each variant's alpha under every analysis choice of the sensitivity grid (analysis.comparison.sensitivity): one dot
    per choice (hollow: the E-term form, a different exponent), the baseline black with its interval."""
    a = sens[(sens["headline"] == "alpha") & sens["value"].notna()] if len(sens) else sens
    if not len(a):
        return _empty(_axes(ax)[1], "alpha across analysis choices", "no alpha could be computed under any choice")
    variants = sorted(a["subject"].unique())
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 1.2 + 0.55 * len(variants) + 0.25 * a["dimension"].nunique()))
    dims = [d for d in dict.fromkeys(a["dimension"]) if d != "baseline"]
    colours = dict(zip(dims, sns.color_palette("colorblind", len(dims))))
    offset = dict(zip(dims, np.linspace(-0.3, 0.3, len(dims)) if len(dims) > 1 else [0.0]))
    for y, v in enumerate(variants):
        g = a[a["subject"] == v]
        for r in g[~g["baseline"].astype(bool)].itertuples():
            c = colours[r.dimension]
            ax.plot(r.value, y + offset[r.dimension], "o", ms=5, color=c, mfc="none" if r.form == "eterm" else c)
        for r in g[g["baseline"].astype(bool)].itertuples():
            ax.errorbar(r.value, y, xerr=_bar(r.value, r.lo, r.hi), fmt="D", color="black", ms=6, capsize=3, zorder=3)
    for d in dims:
        ax.plot([], [], "o", color=colours[d], label=d)
    ax.errorbar([], [], xerr=[], fmt="D", color="black", label="baseline (interval)")
    ax.set_yticks(range(len(variants)), variants)
    ax.set_ylim(len(variants) - 0.5, -0.5)
    ax.set(xlabel="compute exponent alpha (pure L(C); hollow: E-term form)", title="alpha across analysis choices")
    ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.figure.tight_layout()
    return ax.figure
def _prediction_panel(ax, ok: pd.DataFrame, palette: dict, title: str):
    for v, g in ok.groupby("variant"):
        inside = g["inside"].astype(str).str.lower() == "true"
        yerr = [np.maximum(g["predicted"] - g["lo"], 0), np.maximum(g["hi"] - g["predicted"], 0)]
        ax.errorbar(g["actual"], g["predicted"], yerr=yerr, fmt="none", ecolor=palette[v], alpha=0.6, capsize=2)
        ax.plot(g["actual"][inside], g["predicted"][inside], "o", color=palette[v], ms=5, label=v)
        ax.plot(g["actual"][~inside], g["predicted"][~inside], "o", mfc="none", mec=palette[v], ms=6)
    lo = min(ok["actual"].min(), ok["lo"].min())
    hi = max(ok["actual"].max(), ok["hi"].max())
    pad = 0.03 * (hi - lo)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k-", lw=0.8)
    ax.set(xlabel=f"actual final {LOSS_LABEL}", title=title)
    ax.legend(fontsize=7, frameon=False)


def plot_predictions(predictions: pd.DataFrame, ax=None, palette=None):
    """Final loss predicted from the first part of each run's stable phase (analysis.forecast.predict) against the
    actual final loss, with the prediction intervals; one panel per objective (their losses are on different
    scales; ``ax`` is used when there is one objective); hollow markers lie outside their interval."""
    ok = predictions[predictions["status"] == "ok"] if len(predictions) else predictions
    if not len(ok):
        fig, ax = _axes(ax)
        notes = predictions["note"].dropna().astype(str) if len(predictions) else pd.Series(dtype=str)
        why = f"no run could be predicted ({notes.mode().iloc[0]})" if len(notes) else "no warmup-stable-decay runs"
        return _empty(ax, "final loss predicted from the stable phase's start", why)
    palette = palette or variant_palette(predictions["variant"])
    objectives = sorted(ok["objective"].unique())
    if ax is not None and len(objectives) == 1:
        fig, axes = ax.figure, [ax]
    else:
        fig, axes = plt.subplots(1, len(objectives), figsize=(4.2 * len(objectives) + 0.6, 4.2), squeeze=False)
        axes = list(axes[0])
    for a, obj in zip(axes, objectives):
        _prediction_panel(a, ok[ok["objective"] == obj], palette, f"objective {obj}")
    axes[0].set_ylabel("predicted final loss")
    inside = ok["inside"].astype(str).str.lower().eq("true")
    fig.suptitle(f"final loss from the first {float(ok['fraction'].iloc[0]):.0%} of each stable phase: median |error| "
                 f"{(ok['predicted'] - ok['actual']).abs().median():.3g} nats; {float(ok['level'].iloc[0]):.0%} "
                 f"intervals cover {int(inside.sum())}/{len(ok)}", fontsize=9)
    fig.tight_layout()
    return fig


def all_figures(curves, tables: dict, compute: str = "flops", ci_level: float = 0.95) -> dict:
    """{file stem: Figure} for every figure of ``figure_list.figure_stems`` (what the CLI and the
    workflow save); a figure the data cannot support says why instead of going missing."""
    curves = validate_curves(curves)
    variants = sorted(curves["variant"].unique())
    objectives = sorted(curves["objective"].unique())
    palette = variant_palette(variants)
    empty = pd.DataFrame(columns=["variant", "budget", "status"])
    fp, iso = tables.get("final_points", empty), tables.get("isoflop", empty)
    figs = {}
    for v in variants:
        figs[f"curves_{v}"] = plot_learning_curves(curves, tables, v, compute, ci_level=ci_level, palette=palette)
        figs[f"isoflop_{v}"] = plot_isoflop(fp, iso, v, compute)
    for obj in objectives:
        figs[f"frontiers_{obj}"] = plot_final_frontiers(tables, obj, compute, palette=palette)
    figs["optimal_allocation"] = plot_allocation(iso, tables.get("allocation", empty), palette=palette)
    figs["loss_vs_params"] = plot_loss_vs_params(curves, tables, palette=palette)
    figs["exponent_forest"] = plot_exponent_forest(tables["fits"], palette=palette)
    for form in FORM_STYLE:
        if (tables["pairs"]["form"] == form).any():
            figs[f"delta_alpha_{form}"] = plot_delta_alpha_matrix(tables["pairs"], form)
        else:
            figs[f"delta_alpha_{form}"] = _empty(plt.subplots(figsize=(6, 4.5))[1], f"delta alpha ({form})",
                                                 "fewer than two variants with this fit: no pair to compare")
    figs["extrapolation"] = plot_extrapolation(tables["extrapolation"], palette=palette)
    if "sensitivity" in tables:
        figs["sensitivity"] = plot_sensitivity(tables["sensitivity"])
    else:
        figs["sensitivity"] = _empty(plt.subplots(figsize=(6, 4.5))[1], "alpha across analysis choices",
                                     "sensitivity not computed\n(analyse(..., sensitivity=True); the CLI without "
                                     "--no-sensitivity)")
    figs["predictions"] = plot_predictions(tables.get("predictions", pd.DataFrame(columns=["status"])), palette=palette)
    missing = set(figure_stems(variants, objectives)) - set(figs)
    assert not missing, f"figures not made: {sorted(missing)}"  # the list and the library must agree
    return figs
