"""Sensitivity of every headline to the analysis choices: is a result the data's or the analyst's?

The headlines of a study are each variant's compute exponent alpha (pure L(C) on the primary frontier), each
same-objective pairwise verdict ("a steeper" / not distinguishable), each variant's size tiers and each
same-objective crossover.  `sensitivity` recomputes all of them under a grid of reasonable analysis choices,
one choice changed at a time from the analysis as run (the baseline cell):

  * drop fraction (learning-curve envelope): the default early-transient rule (10%), 0, 0.05, 0.2
  * compute column: the other of flops / flops_6n
  * frontier grid density (envelope only): 20 and 80 grid points besides 40
  * fit form: E-term instead of pure (its alpha is the exponent of the reducible loss: a different parameter,
    so it enters verdict fragility but not the min / max of the pure alphas)
  * without each variant's smallest size
  * the other frontier (final points vs learning-curve envelope) where its fits exist
With a final-point primary frontier the drop-fraction and grid choices do not touch it; they are then read on the
envelope (their rows say `frontier` = envelope), so the table shows how much the envelope reading moves too.

Cost: every cell refits the L(C) frontier with a cluster bootstrap of `n_boot` resamples (default
DEFAULT_N_BOOT = 200: the verdicts need bootstrap standard errors, point estimates need none; Approach 3,
IsoFLOP and L(N) fits are not redone).  Every cell of a variant draws its resamples from the same generator
(common random numbers), so differences between cells are the choices', not resampling noise; the baseline
cell therefore equals the reported analysis up to the resample count (1000 there by default), and a verdict
that differs between the two is near its threshold: `fragile_pairs` marks it fragile too.

Fragile (the summary's flag): a pair's verdict or a crossover's verdict differs from the baseline under some
choice; a variant's tiers group its sizes differently (compared on the sizes both cells have); a variant's
alpha under some choice of the same fit form lies outside the baseline's bootstrap interval.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.comparison import comparisons as compare
from analysis.options import AnalysisOptions
from analysis.prepare import base_seed, by_variant, envelope_fits, final_fits, prepare, primary_frontier, variant_rng

DEFAULT_N_BOOT = 200
DROP_FRACTIONS = (None, 0.0, 0.05, 0.2)  # None: the default early-transient rule (10%)
GRID_POINTS = (20, 40, 80)
STREAM_SENS = 17  # generator stream of the sensitivity fits (analysis.stages uses 0-5)
SENS_COLS = ["headline", "subject", "objective", "dimension", "choice", "baseline", "frontier", "form", "compute",
             "value", "lo", "hi", "verdict", "note"]
SUMMARY_COLS = ["headline", "subject", "objective", "baseline_value", "baseline_lo", "baseline_hi",
                "baseline_verdict", "min", "max", "n_choices", "n_missing", "n_differ", "fragile", "differs_under",
                "missing_under"]
HEADLINES = ("alpha", "verdict", "tiers", "crossover")
SENS_METHOD = ("Sensitivity: each headline (a variant's pure alpha on the primary frontier, each same-objective "
               "verdict, each variant's tiers, each crossover) recomputed with one analysis choice changed at a time: "
               "the early-transient drop fraction (default rule, 0, 0.05, 0.2; on the learning-curve envelope), the "
               "other compute column, 20 and 80 envelope grid points, the E-term fit form, without each variant's "
               "smallest size, and the other frontier (final points / envelope). Every cell refits with {n_boot} "
               "cluster-bootstrap resamples drawn from the same generator (common random numbers). A verdict, "
               "crossover or tier grouping that changes under any choice, or a pure alpha that leaves the baseline's "
               "interval, is marked fragile.")


@dataclass(frozen=True)
class Choice:
    """One cell of the grid: the options, frontier and fit form its headlines use."""
    dimension: str  # "baseline", "drop fraction", "compute", "grid points", "fit form", "sizes", "frontier"
    label: str  # what the report and the console print
    opts: AnalysisOptions
    frontier: str  # "final" | "envelope"
    form: str  # "pure" | "eterm"
    drop_smallest: bool = False


def _same_drop(a, b) -> bool:
    """The default rule cuts at 10% (or the warm-up), exactly as a given fraction of 0.1 does."""
    from analysis.curves.transient import DEFAULT_FRACTION
    return (DEFAULT_FRACTION if a is None else a) == (DEFAULT_FRACTION if b is None else b)


def _drop_label(f) -> str:
    return "default rule (10%)" if f is None else f"{f:g}"


def choices(opts: AnalysisOptions, primary: str, n_boot: int = DEFAULT_N_BOOT) -> list[Choice]:
    """The cells of the grid for an analysis run with `opts` on the `primary` frontier ('final' | 'envelope');
    the first is the baseline.  Envelope-only choices are read on the envelope when the primary is final."""
    base = dataclasses.replace(opts, frontier=primary, n_boot=n_boot, n_boot_approach3=0)
    env = dataclasses.replace(base, frontier="envelope")
    tag = " (envelope)" if primary == "final" else ""
    other = "envelope" if primary == "final" else "final"
    cells = [Choice("baseline", "as analysed", base, primary, "pure"),
             Choice("frontier", f"frontier = {other}", dataclasses.replace(base, frontier=other), other, "pure")]
    for f in DROP_FRACTIONS:
        if not _same_drop(f, opts.drop_fraction):
            cells.append(Choice("drop fraction", f"drop fraction = {_drop_label(f)}{tag}",
                                dataclasses.replace(env, drop_fraction=f), "envelope", "pure"))
    for k in GRID_POINTS:
        if k != opts.grid_points:
            cells.append(Choice("grid points", f"grid points = {k}{tag}", dataclasses.replace(env, grid_points=k),
                                "envelope", "pure"))
    alt = "flops_6n" if opts.compute == "flops" else "flops"
    cells += [Choice("compute", f"compute = {alt}", dataclasses.replace(base, compute=alt), primary, "pure"),
              Choice("fit form", "fit form = eterm", base, primary, "eterm"),
              Choice("sizes", "without the smallest size", base, primary, "pure", drop_smallest=True)]
    return cells


def without_smallest(curves: pd.DataFrame) -> pd.DataFrame:
    """The table without each variant's smallest size (fewest params_total)."""
    smallest = curves.groupby("variant")["params_total"].transform("min")
    return curves[curves["params_total"] != smallest]


# ---------------------------------------------------------------- one cell
def _cell_fits(prep, choice: Choice, base: int) -> tuple[dict, dict]:
    """({(variant, form): (objective, fit)}, {variant: note of a failed fit}) for one cell."""
    fitted, notes = {}, {}
    for variant, objective, g in by_variant(prep):
        rng = variant_rng(base, variant, STREAM_SENS)
        if choice.frontier == "envelope":
            fits, fnotes, _ = envelope_fits(g, choice.opts, rng, forms=(choice.form,))
        else:
            fits, fnotes = final_fits(prep.finals[prep.finals["variant"] == variant], choice.opts, rng)
        fit, note = fits[choice.form], fnotes.get(choice.form, "")
        if fit is not None and fit.at_bound:
            fit, note = None, f"{', '.join(fit.at_bound)} at a bound of the search"
        if fit is None:
            notes[variant] = note or "fit failed"
        else:
            fitted[(variant, choice.form)] = (objective, fit)
    return fitted, notes


def tier_groups(tiers: pd.DataFrame) -> dict:
    """{variant: 'size, size | size | ...'}: each variant's sizes grouped by tier, in order of parameters."""
    out = {}
    for v, g in tiers.sort_values(["variant", "params_total"]).groupby("variant", sort=True):
        out[v] = " | ".join(", ".join(map(str, s["size"])) for _, s in g.groupby("tier", sort=True))
    return out


def _rows(choice: Choice, fitted: dict, notes: dict, prep, ci_level: float) -> list[dict]:
    """The long-table rows of one cell."""
    cell = {"dimension": choice.dimension, "choice": choice.label, "baseline": choice.dimension == "baseline",
            "frontier": choice.frontier, "form": choice.form, "compute": choice.opts.compute}
    rows = []
    for (v, _), (obj, fit) in sorted(fitted.items()):
        lo, hi = fit.conf_int(1 - ci_level).loc["alpha"]
        rows.append({**cell, "headline": "alpha", "subject": v, "objective": obj, "value": fit.alpha, "lo": lo,
                     "hi": hi, "verdict": "", "note": ""})
    for v, note in sorted(notes.items()):
        obj = prep.curves.loc[prep.curves["variant"] == v, "objective"].iloc[0]
        rows.append({**cell, "headline": "alpha", "subject": v, "objective": obj, "verdict": "not computed",
                     "note": note})
    pairs = compare.exponent_pairs(fitted, choice.opts)
    for r in pairs[pairs["family"] != ""].to_dict("records"):
        verdict = f"{r['steeper_variant']} steeper" if r["verdict"] == "steeper" else r["verdict"]
        if choice.opts.n_boot < 2:  # no standard errors: no test
            verdict, r["p_holm"] = "not computed", np.nan
        rows.append({**cell, "headline": "verdict", "subject": f"{r['variant_a']} vs {r['variant_b']}",
                     "objective": r["objective_a"], "value": r["delta_alpha"], "lo": r["delta_lo_adj"],
                     "hi": r["delta_hi_adj"], "verdict": verdict,
                     "note": f"Holm p = {r['p_holm']:.3g}" if choice.opts.n_boot >= 2 else "no resamples: no test"})
    for r in compare.crossovers(fitted, choice.opts).to_dict("records"):
        rows.append({**cell, "headline": "crossover", "subject": f"{r['variant_a']} vs {r['variant_b']}",
                     "objective": r["objective"], "value": r.get("crossover_c", np.nan), "lo": r.get("crossover_lo"),
                     "hi": r.get("crossover_hi"), "verdict": r["crossover_verdict"], "note": r.get("note") or ""})
    tiers = compare.tiers(prep.curves, choice.opts)
    for v, groups in tier_groups(tiers).items():
        t = tiers[tiers["variant"] == v]
        rows.append({**cell, "headline": "tiers", "subject": v, "objective": t["objective"].iloc[0],
                     "value": float(t["tier"].nunique()), "verdict": groups,
                     "note": f"floor from {t['floor_source'].iloc[0]}"})
    return rows


def sensitivity(curves: pd.DataFrame, opts: AnalysisOptions, rng: np.random.Generator,
                n_boot: int = DEFAULT_N_BOOT) -> pd.DataFrame:
    """The long table (SENS_COLS): every headline under every choice of `choices`.  curves: a validated table."""
    base = base_seed(rng)
    rows = []
    for choice in choices(opts, primary_frontier(curves, opts), n_boot):
        data = without_smallest(curves) if choice.drop_smallest else curves
        if data.empty:  # every variant had one size: nothing to recompute (its headlines count as missing)
            continue
        prep = prepare(data, choice.opts)
        fitted, notes = _cell_fits(prep, choice, base)
        rows += _rows(choice, fitted, notes, prep, opts.ci_level)
    return pd.DataFrame(rows, columns=SENS_COLS)


# ---------------------------------------------------------------- summary
def same_tiers(a: str, b: str) -> bool:
    """Do two tier groupings ('s, m | l') put the sizes they share in the same groups?"""
    def groups(text):
        return {size: i for i, part in enumerate(text.split(" | ")) for size in part.split(", ")}
    ga, gb = groups(a), groups(b)
    common = sorted(set(ga) & set(gb))
    return all((ga[x] == ga[y]) == (gb[x] == gb[y]) for i, x in enumerate(common) for y in common[i + 1:])


def _differs(headline: str, base: pd.Series, other: pd.Series) -> bool:
    if headline == "alpha":  # without an interval (no resamples) there is nothing to leave
        return (other["form"] == base["form"] and bool(np.isfinite([base["lo"], base["hi"]]).all())
                and not base["lo"] <= other["value"] <= base["hi"])
    if headline == "tiers":
        return not same_tiers(base["verdict"], other["verdict"])
    return other["verdict"] != base["verdict"]


def _summary_row(headline: str, subject: str, g: pd.DataFrame, all_choices: list) -> dict:
    base = g[g["baseline"].astype(bool)]
    row = {"headline": headline, "subject": subject, "objective": g["objective"].iloc[0]}
    computed = g[g["verdict"] != "not computed"]
    missing = [c for c in all_choices if c not in set(computed["choice"])]
    if not len(base) or base["verdict"].iloc[0] == "not computed":
        return {**row, "baseline_verdict": "not computed", "n_choices": len(computed), "n_missing": len(missing),
                "n_differ": 0, "fragile": False, "differs_under": "", "missing_under": "; ".join(missing)}
    b = base.iloc[0]
    others = computed[~computed["baseline"].astype(bool)]
    differ = [r["choice"] for _, r in others.iterrows() if _differs(headline, b, r)]
    same_form = computed[computed["form"] == b["form"]]["value"].astype(float)
    return {**row, "baseline_value": b["value"], "baseline_lo": b["lo"], "baseline_hi": b["hi"],
            "baseline_verdict": b["verdict"], "min": same_form.min(), "max": same_form.max(),
            "n_choices": len(computed), "n_missing": len(missing), "n_differ": len(differ),
            "fragile": bool(differ), "differs_under": "; ".join(differ), "missing_under": "; ".join(missing)}


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """Per headline and subject: the baseline, min / max over the cells of the baseline's fit form, how many
    choices change it and which (`differs_under`), the cells where it could not be computed, and `fragile`."""
    if long.empty:
        return pd.DataFrame(columns=SUMMARY_COLS)
    all_choices = list(dict.fromkeys(long["choice"]))
    rows = [_summary_row(h, s, g, all_choices)
            for (h, s), g in long.groupby(["headline", "subject"], sort=False)]
    out = pd.DataFrame(rows).reindex(columns=SUMMARY_COLS)
    order = {h: i for i, h in enumerate(HEADLINES)}
    return out.sort_values(["headline", "subject"], key=lambda c: c.map(order) if c.name == "headline" else c,
                           kind="stable").reset_index(drop=True)


def fragile_pairs(pairs: pd.DataFrame, summary: pd.DataFrame, form: str = "pure") -> pd.DataFrame:
    """Per reported same-objective pair of `form` (the pairs table): whether its verdict is fragile and why -
    it changes under some choice, or the sensitivity baseline (fewer resamples) disagrees with the reported
    verdict (the pair sits near the threshold).  Columns: subject, fragile, why."""
    cols = ["subject", "fragile", "why"]
    if pairs is None or pairs.empty or summary is None or summary.empty:
        return pd.DataFrame(columns=cols)
    s = summary[summary["headline"] == "verdict"].set_index("subject")
    rows = []
    for r in pairs[(pairs["form"] == form) & (pairs["family"].fillna("") != "")].to_dict("records"):
        subject = f"{r['variant_a']} vs {r['variant_b']}"
        reported = f"{r['steeper_variant']} steeper" if r["verdict"] == "steeper" else r["verdict"]
        if subject not in s.index:
            rows.append({"subject": subject, "fragile": False, "why": "not in the sensitivity table"})
            continue
        x = s.loc[subject]
        why = [f"changes under {x['differs_under']}"] if bool(x["fragile"]) else []
        if x["baseline_verdict"] not in ("not computed", reported):
            why.append(f"with fewer resamples: {x['baseline_verdict']} (near the threshold)")
        rows.append({"subject": subject, "fragile": bool(why), "why": "; ".join(why)})
    return pd.DataFrame(rows, columns=cols)
