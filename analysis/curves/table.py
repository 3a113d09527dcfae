"""The learning-curve table: validation, run ids and learning-rate selection.

``validate_curves`` first checks the table's shape and types (columns, numbers, missing values,
ranges), then runs ``CHECKS``: small named consistency checks, each of which raises one line
naming the run, the row (0-based position in the given table) and the fix.  Tolerances:

* ``flops_6n`` must equal 6 x ``params_nonembedding`` x ``tokens`` within ``FLOPS_6N_RTOL`` (1%):
  it is a definition, so only rounding may separate them.  6 x ``params_total`` x ``tokens`` (the
  convention of Chinchilla and of many published tables) is accepted too, but not both in one table.
* a run's accounted ``flops`` per token must stay within ``FLOPS_PER_TOKEN_RTOL`` (10%) of the
  run's median: a fixed model with a fixed context costs the same per token at every step, so a
  point far off is a unit slip or a corrupted value.  The check is relative to the run itself, so
  an accounting that is not 6N (embeddings, attention, an encoder-decoder) is fine as long as it
  is the same throughout the run.
* a run's ``flops`` / ``flops_6n`` must lie within ``FLOPS_OVER_6N`` (0.1-1e4) and within
  ``FLOPS_OVER_6N_SPREAD`` (100x) of its variant's median run: a run (or a table) whose flops are in
  other units is refused instead of bending the fits.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

REQUIRED = ("variant", "objective", "size", "seed", "params_total", "params_nonembedding",
            "tokens", "flops", "flops_6n", "loss")
OPTIONAL = ("run", "lr", "status", "eval_loss_se", "step", "warmup_tokens", "budget", "budget_tokens", "schedule", "phase",
            "eval_batch_losses")  # the per-batch eval losses of a point (space-separated), where recorded
OBJECTIVES = ("causal", "masked", "rtd")
STATUSES = ("ok", "diverged", "stopped")  # stopped: ended early by the early-stop rule (predicted off the frontier)
_INT_COLS = ("seed", "params_total", "params_nonembedding", "tokens")
_FLOAT_COLS = ("flops", "flops_6n", "loss", "lr", "eval_loss_se", "warmup_tokens", "step")
_POSITIVE = ("flops", "flops_6n", "loss", "params_total", "params_nonembedding")
INT64_MAX = float(2 ** 63 - 1024)  # the largest float64 below 2**63: counts above it would wrap in int64
FLOPS_6N_RTOL = 0.01
FLOPS_PER_TOKEN_RTOL = 0.10


class CurveTableError(ValueError):
    """Bad learning-curve table; the message names the problem and the fix."""


def _first_row(mask: pd.Series) -> str:
    return str(mask[mask].index[0])


def _fail(out: pd.DataFrame, mask: pd.Series, what: str, fix: str):
    """Raise for the first row where ``mask`` holds: '<run>, row <i>: <what>; <fix>'."""
    row = mask[mask].index[0]
    raise CurveTableError(f"run {out.at[row, 'run']!r}, row {row}: {what(row) if callable(what) else what}; {fix}")


# ---------------------------------------------------------------- shape and types
def _check_frame(df):
    if not isinstance(df, pd.DataFrame):
        raise CurveTableError(f"curve table must be a pandas DataFrame, got {type(df).__name__}; "
                              "load it with pandas.read_csv")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise CurveTableError(f"curve table is missing column(s) {', '.join(repr(c) for c in missing)}; "
                              f"required: {', '.join(REQUIRED)}")
    if len(df) == 0:
        raise CurveTableError("curve table has no rows; give at least one evaluation point per run")


def _to_numbers(out: pd.DataFrame):
    """Text columns to str, number columns to float (checked), required values present."""
    for col in ("variant", "objective", "size"):
        bad = out[col].isna()
        if bad.any():
            raise CurveTableError(f"curve table has {int(bad.sum())} missing value(s) in column {col!r} "
                                  f"(first at row {_first_row(bad)}); fill or drop those rows")
        out[col] = out[col].astype(str)
    if "eval_batch_losses" in out.columns:
        out["eval_batch_losses"] = out["eval_batch_losses"].fillna("").astype(str)
    for col in _INT_COLS + _FLOAT_COLS:
        if col not in out.columns:
            continue
        num = pd.to_numeric(out[col], errors="coerce")
        nonnum = num.isna() & out[col].notna()
        if nonnum.any():
            raise CurveTableError(f"curve table column {col!r} has non-numeric value "
                                  f"{out[col][nonnum].iloc[0]!r} (row {_first_row(nonnum)}); use numbers only")
        out[col] = num.astype(float)
    for col in REQUIRED:
        bad = out[col].isna()
        if bad.any():
            raise CurveTableError(f"curve table has {int(bad.sum())} NaN value(s) in column {col!r} "
                                  f"(first at row {_first_row(bad)}); drop or fill those rows")


def _check_ranges(out: pd.DataFrame):
    for col in _POSITIVE:
        bad = ~(out[col] > 0) | ~np.isfinite(out[col])
        if bad.any():
            raise CurveTableError(f"curve table column {col!r} has {int(bad.sum())} non-positive or infinite "
                                  f"value(s) (first at row {_first_row(bad)}, value {float(out[col][bad].iloc[0]):g}); "
                                  "drop those points (e.g. the step-0 evaluation) before analysis")
    if (out["tokens"] < 0).any():
        raise CurveTableError("curve table column 'tokens' has negative values; tokens must be >= 0")
    for col in ("eval_loss_se", "lr", "warmup_tokens"):
        if col in out.columns and (out[col] < 0).any():
            raise CurveTableError(f"curve table column {col!r} has negative values; it must be >= 0")
    if "lr" in out.columns and out["lr"].isna().any():
        raise CurveTableError("curve table column 'lr' has NaN values; fill them or drop the column")


def _to_integers(out: pd.DataFrame):
    """Integer columns to int64: never wrapped (too large -> error), seeds exactly whole, counts rounded."""
    for col in _INT_COLS:
        big = out[col].abs() > INT64_MAX
        if big.any():
            raise CurveTableError(f"curve table column {col!r} has value {out[col][big].iloc[0]:.4g} "
                                  f"(row {_first_row(big)}), beyond the 64-bit integer range (9.2e18); "
                                  "give counts in plain units (check the column holds what its name says)")
    frac = out["seed"] != np.floor(out["seed"])
    if frac.any():
        raise CurveTableError(f"curve table column 'seed' has value {float(out['seed'][frac].iloc[0]):g} "
                              f"(row {_first_row(frac)}), not a whole number; seeds name replicate runs: "
                              "use integers 0, 1, 2, ...")
    for col in _INT_COLS:
        out[col] = np.rint(out[col].to_numpy()).astype("int64")


def _labels(out: pd.DataFrame, has_status: bool):
    bad_obj = ~out["objective"].isin(OBJECTIVES)
    if bad_obj.any():
        raise CurveTableError(f"curve table column 'objective' has value {out['objective'][bad_obj].iloc[0]!r}; "
                              f"use one of {', '.join(OBJECTIVES)}")
    if has_status:
        out["status"] = out["status"].fillna("ok").astype(str).str.strip().str.lower()
        bad = ~out["status"].isin(STATUSES)
        if bad.any():
            raise CurveTableError(f"curve table column 'status' has value {out['status'][bad].iloc[0]!r}; "
                                  f"use one of {', '.join(STATUSES)}")
    else:
        out["status"] = "ok"
    if "run" in out.columns:
        if out["run"].isna().any():
            raise CurveTableError(f"curve table column 'run' has {int(out['run'].isna().sum())} missing value(s); "
                                  "fill them or drop the column to derive run ids from variant/size/seed/lr")
        out["run"] = out["run"].astype(str)
    else:
        out["run"] = _derived_run_ids(out)


def _derived_run_ids(out: pd.DataFrame) -> pd.Series:
    """'<variant>/<size>/seed<seed>[_lr<lr>][/<budget>]', built once per distinct run (fast on long tables)."""
    keys = ["variant", "size", "seed"] + [c for c in ("lr", "budget") if c in out.columns]
    codes = out.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    first = out.iloc[np.unique(codes, return_index=True)[1]]
    names = first["variant"] + "/" + first["size"] + "/seed" + first["seed"].astype(str)
    if "lr" in out.columns:
        names = names + "_lr" + first["lr"].map("{:g}".format)
    if "budget" in out.columns:
        names = names + "/" + first["budget"].fillna("").astype(str)
    return pd.Series(names.to_numpy(dtype=object)[codes], index=out.index, dtype=str)


# ---------------------------------------------------------------- consistency checks (sorted by run, tokens)
def check_one_objective_per_variant(out):
    objectives = out.groupby("variant")["objective"].nunique()
    if (objectives > 1).any():
        v = objectives[objectives > 1].index[0]
        raise CurveTableError(f"variant {v!r} appears with several objectives; "
                              "give each (variant, objective) combination its own variant name")


def check_run_identity(out):
    per_run = out.groupby("run")[["variant", "size", "seed"]].nunique()
    if (per_run > 1).any(axis=None):
        r = per_run[(per_run > 1).any(axis=1)].index[0]
        raise CurveTableError(f"run {r!r} mixes several variants, sizes or seeds; give each run a unique 'run' id")


def check_unique_tokens(out):
    dup = out.duplicated(["run", "tokens"])
    if dup.any():
        _fail(out, dup, lambda r: f"duplicate row at tokens={out.at[r, 'tokens']}",
              "keep one evaluation per run and token count")


def check_constant_params(out):
    for col in ("params_total", "params_nonembedding"):
        first = out.groupby("run", sort=False)[col].transform("first")
        _changed = out[col] != first
        if _changed.any():
            _fail(out, _changed, lambda r: f"{col} is {out.at[r, col]} but {first[r]} at the run's first point",
                  "a run is one model with fixed parameter counts: fix the counts or give each model its own "
                  "run id (size / seed)")
    bad = out["params_nonembedding"] > out["params_total"]
    if bad.any():
        _fail(out, bad, lambda r: f"params_nonembedding ({out.at[r, 'params_nonembedding']}) exceeds params_total "
                                  f"({out.at[r, 'params_total']})", "check whether the two columns are swapped")


def _previous_in_run(out):
    """(mask of rows that have a previous row in their run, previous row's index label)."""
    same = out["run"].eq(out["run"].shift())
    return same, pd.Series(np.r_[out.index[:1], out.index[:-1]], index=out.index)


def check_monotonic(out):
    """Compute (and step, where given) must grow with tokens within a run."""
    same, prev = _previous_in_run(out)
    cols = ("flops", "flops_6n") + (("step",) if "step" in out.columns else ())
    for col in cols:
        v = out[col]
        down = same & ~(v > v.shift()) & v.notna() & v.shift().notna()
        if down.any():
            _fail(out, down, lambda r: (f"{col} does not grow with tokens: {out.at[prev[r], col]:.6g} at row "
                                        f"{prev[r]} (tokens {out.at[prev[r], 'tokens']}), {out.at[r, col]:.6g} "
                                        f"here (tokens {out.at[r, 'tokens']})"),
                  f"fix the {col} or tokens value of one of these rows")


def check_flops_6n(out):
    """flops_6n = 6 N tokens with N = params_nonembedding (this project, Kaplan) or params_total (Chinchilla and
    many published tables): either is accepted row by row, but one table must not mix the two."""
    six_d = 6.0 * out["tokens"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = {c: pd.Series(out["flops_6n"].to_numpy() / (six_d * out[c].to_numpy(float)), index=out.index)
                 for c in ("params_nonembedding", "params_total")}
    match = {c: np.abs(r - 1.0) <= FLOPS_6N_RTOL for c, r in ratio.items()}
    bad = ~(match["params_nonembedding"] | match["params_total"])
    if bad.any():
        _fail(out, bad, lambda r: (f"flops_6n = {out.at[r, 'flops_6n']:.6g} is {ratio['params_nonembedding'][r]:.4g} x "
                                   f"6 x params_nonembedding x tokens and {ratio['params_total'][r]:.4g} x "
                                   "6 x params_total x tokens"),
              f"flops_6n must equal 6 x params_nonembedding x tokens within {FLOPS_6N_RTOL:.0%}: recompute the "
              "column (or check whether tokens, flops or the parameter counts are swapped or in other units)")
    only_ne = match["params_nonembedding"] & ~match["params_total"]
    only_tot = match["params_total"] & ~match["params_nonembedding"]
    if only_ne.any() and only_tot.any():
        _fail(out, only_tot, lambda r: (f"flops_6n counts params_total here but params_nonembedding at row "
                                        f"{_first_row(only_ne)}"),
              "use one convention for the whole table: recompute flops_6n = 6 x params_nonembedding x tokens")


def check_flops_per_token(out):
    with np.errstate(divide="ignore", invalid="ignore"):
        per_token = pd.Series(out["flops"].to_numpy() / out["tokens"].to_numpy(float), index=out.index)
    median = per_token.groupby(out["run"], sort=False).transform("median")
    ratio = per_token / median
    bad = ~(np.abs(ratio - 1.0) <= FLOPS_PER_TOKEN_RTOL)
    if bad.any():
        _fail(out, bad, lambda r: (f"flops / tokens = {per_token[r]:.4g} is {ratio[r]:.4g} x the run's median "
                                   f"{median[r]:.4g}"),
              f"a run's FLOPs per token are fixed (tolerance {FLOPS_PER_TOKEN_RTOL:.0%}): fix the flops "
              "(or tokens) value of this row")


FLOPS_OVER_6N = (0.1, 1e4)  # accounted flops / 6ND of any real model: forward-only counts sit at 1/3, a tiny
# model with a large vocabulary's head at a few hundred; outside, the flops are in other units
FLOPS_OVER_6N_SPREAD = 100.0  # between runs of one variant (the head's share changes with size, ~10x over a ladder)


def check_flops_against_6n(out):
    """The accounted flops must agree with 6 N D in scale: a run whose flops / flops_6n is outside FLOPS_OVER_6N,
    or FLOPS_OVER_6N_SPREAD away from its variant's median run, has flops in other units (a table or a run
    scaled by 1e6 moved gpt2's exponent from 0.089 to 0.008 with no error)."""
    ratio = out["flops"] / out["flops_6n"]
    per_run = ratio.groupby(out["run"], sort=False).median()
    variant = out.groupby("run", sort=False)["variant"].first()
    lo, hi = FLOPS_OVER_6N
    spread = per_run / per_run.groupby(variant).transform("median")
    bad = (per_run < lo) | (per_run > hi) | (spread > FLOPS_OVER_6N_SPREAD) | (spread < 1 / FLOPS_OVER_6N_SPREAD)
    if bad.any():
        run = bad[bad].index[0]
        raise CurveTableError(
            f"run {run!r}: its flops are {per_run[run]:.4g} x flops_6n (6 N D), {spread[run]:.4g} x the median of "
            f"variant {variant[run]!r}'s runs; accounted FLOPs lie within {lo:g}-{hi:g} x 6ND and within "
            f"{FLOPS_OVER_6N_SPREAD:g}x of each other: check the units of its flops column (or use flops_6n)")


# per-point checks first: they name the faulty row itself, where a monotonicity break names a pair
CHECKS = (check_one_objective_per_variant, check_run_identity, check_unique_tokens, check_constant_params,
          check_flops_6n, check_flops_per_token, check_flops_against_6n, check_monotonic)


def _sorted(out: pd.DataFrame) -> pd.DataFrame:
    """Stable order by (variant, run, tokens) with original row labels; no copy when already in that order
    (tables are usually written that way, and a copy of a 2M-row table costs hundreds of MB)."""
    variant = pd.factorize(out["variant"], sort=True)[0]
    run = pd.factorize(out["run"], sort=True)[0]
    order = np.lexsort((out["tokens"].to_numpy(), run, variant))
    if (order == np.arange(order.size)).all():
        return out
    return out.take(order)


def _logged_rate(out: pd.DataFrame) -> list[str]:
    """A W&B-style export logs the current (scheduled) rate in `lr`, not the run's peak: without a `run` column
    every row would become a run of its own. When, within the runs' other identifying columns, most rows carry
    an lr of their own (>= 4 distinct values, more than half the rows), `lr` is taken as the logged rate, the
    run's peak (its largest) as its lr, and the assumption is returned as a line."""
    if "lr" not in out.columns or "run" in out.columns:
        return []
    keys = ["variant", "size", "seed"] + (["budget"] if "budget" in out.columns else [])
    g = out.groupby(keys, sort=False, dropna=False)["lr"]
    distinct, rows = g.transform("nunique"), g.transform("size")
    logged = (distinct >= 4) & (distinct > rows / 2)
    if not logged.any():
        return []
    out["lr_at_step"] = out["lr"]
    out.loc[logged, "lr"] = g.transform("max")[logged]
    n = out.loc[logged, keys].drop_duplicates().shape[0]
    return [f"column 'lr' changes from row to row within {n} run(s) (a logged schedule, e.g. a W&B export): "
            "taken as the rate at each step (lr_at_step) and each run's largest value as its lr"]


def _missing_budget(out: pd.DataFrame) -> list[str]:
    """A missing `budget` in a row of a run whose other rows name one: without a `run` column the row would
    become a run of its own (and one NaN ended in "no fit"). Filled from the run's other rows when they name one
    budget; refused when they name several (the row cannot be placed)."""
    if "budget" not in out.columns or "run" in out.columns or not out["budget"].isna().any():
        return []
    keys = ["variant", "size", "seed"] + (["lr"] if "lr" in out.columns else [])
    named = out.groupby(keys, sort=False, dropna=False)["budget"].transform(lambda b: b.dropna().nunique())
    gap = out["budget"].isna()
    several = gap & (named > 1)
    if several.any():
        row = several[several].index[0]
        raise CurveTableError(f"row {row}: column 'budget' is empty and this run's variant/size/seed appear with "
                              "several budgets, so the row belongs to none; fill its budget or drop the row")
    fill = gap & (named == 1)
    if not fill.any():
        return []
    firsts = out.groupby(keys, sort=False, dropna=False)["budget"].transform(lambda b: b.dropna().iloc[0] if b.notna().any() else None)
    out.loc[fill, "budget"] = firsts[fill]
    return [f"column 'budget' is empty in {int(fill.sum())} row(s) of runs whose other rows name one budget: "
            "filled with it"]


def validate_curves(df) -> pd.DataFrame:
    """Return a cleaned copy of a learning-curve table (sorted by variant, run, tokens) or raise
    CurveTableError with one line naming the problem (and the run and row where it is one run's) and the fix.
    What it had to assume to read the table is in ``attrs["assumed"]`` (one line each)."""
    _check_frame(df)
    keep = list(REQUIRED) + [c for c in OPTIONAL if c in df.columns]
    out = df[keep].reset_index(drop=True)  # copy-on-write: columns are replaced below, never changed in place
    _to_numbers(out)
    assumed = _logged_rate(out) + _missing_budget(out)
    _check_ranges(out)
    _to_integers(out)
    _labels(out, "status" in df.columns)
    out = _sorted(out)
    for check in CHECKS:
        check(out)
    if "status" in df.columns:  # a run diverged (else stopped) if any of its rows says so
        diverged = out.loc[out["status"] == "diverged", "run"].unique()
        stopped = out.loc[out["status"] == "stopped", "run"].unique()
        out["status"] = np.where(out["run"].isin(diverged), "diverged", np.where(out["run"].isin(stopped), "stopped", "ok"))
    out = out.reset_index(drop=True)
    out.attrs["assumed"] = assumed
    return out


def thin_runs(curves: pd.DataFrame, max_points: int) -> tuple[pd.DataFrame, int]:
    """Keep about ``max_points`` evaluation points of every run that has more (input: validated curves).

    Kept: the point nearest (in log tokens) to each of ``max_points`` log-spaced token counts, and
    always the first, the last and the lowest-loss point, so final and best losses, the lr choice and
    the tiers are unchanged.  A densely logged run (a W&B export logs every step) otherwise weighs
    in Approach 3 by its logging rate, and makes every fit cost time linear in its points.
    Returns (thinned copy in the same order, number of runs thinned).  ``max_points=0`` keeps all.
    """
    if max_points < 0 or max_points == 1:
        raise ValueError(f"max_points={max_points} is invalid; use 0 (keep every point) or an integer >= 2")
    codes, _ = pd.factorize(curves["run"])
    counts = np.bincount(codes)
    if max_points == 0 or counts.max() <= max_points:
        return curves, 0
    order = np.argsort(codes, kind="stable")  # rows of each run together, by tokens (validated order)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    logt = np.log(np.maximum(curves["tokens"].to_numpy(float), 1.0))[order]
    loss = curves["loss"].to_numpy(float)[order]
    keep = np.zeros(len(curves), bool)
    for k in range(counts.size):
        lo, n = starts[k], counts[k]
        rows = order[lo:lo + n]
        if n <= max_points:
            keep[rows] = True
            continue
        t = logt[lo:lo + n]
        target = np.linspace(t[0], t[-1], max_points)
        j = np.clip(np.searchsorted(t, target), 1, n - 1)  # t[j - 1] < target <= t[j]
        nearest = np.where(t[j] - target < target - t[j - 1], j, j - 1)
        keep[rows[np.r_[nearest, 0, n - 1, np.argmin(loss[lo:lo + n])]]] = True
    return curves[keep].reset_index(drop=True), int((counts > max_points).sum())


def run_table(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per run: identity, final and best loss, compute range (input: validated curves)."""
    g = curves.sort_values("tokens").groupby("run", sort=True)
    cols = {"variant": ("variant", "first"), "objective": ("objective", "first"), "size": ("size", "first"),
            "seed": ("seed", "first"), "params_total": ("params_total", "first"),
            "params_nonembedding": ("params_nonembedding", "first"), "status": ("status", "first"),
            "n_points": ("loss", "size"), "final_tokens": ("tokens", "last"), "final_loss": ("loss", "last"),
            "best_loss": ("loss", "min")}
    if "lr" in curves.columns:
        cols["lr"] = ("lr", "first")
    if "eval_loss_se" in curves.columns:
        cols["final_loss_se"] = ("eval_loss_se", "last")
    return g.agg(**cols).reset_index()


def select_best_lr(df) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep, per (variant, size), the lr with the best mean final eval loss across seeds.

    Diverged runs (and runs stopped early) never count towards the mean; an lr with any diverged or stopped
    seed is only eligible when every lr of that (variant, size) had one (n_diverged counts both).  Returns (curves restricted to the chosen lr,
    choice table: variant, size, lr, n_seeds, n_diverged, mean_final_loss, chosen).
    """
    curves = validate_curves(df)
    cols = ["variant", "size", "lr", "n_seeds", "n_diverged", "mean_final_loss", "chosen"]
    if "lr" not in curves.columns:
        return curves, pd.DataFrame(columns=cols)
    runs = run_table(curves)
    ok = runs["status"] == "ok"
    choice = (runs.assign(ok_loss=runs["final_loss"].where(ok), div=~ok)
              .groupby(["variant", "size", "lr"], sort=True)
              .agg(n_seeds=("seed", "nunique"), n_diverged=("div", "sum"), mean_final_loss=("ok_loss", "mean"))
              .reset_index())
    choice["n_diverged"] = choice["n_diverged"].astype("int64")
    clean = choice["n_diverged"] == 0
    any_clean = clean.groupby([choice["variant"], choice["size"]]).transform("any")
    score = choice["mean_final_loss"].where(clean | ~any_clean)
    choice["chosen"] = False
    valid = score.dropna()  # a size whose every lr diverged has no choice
    best = valid.groupby([choice.loc[valid.index, "variant"], choice.loc[valid.index, "size"]]).idxmin().astype(int)
    choice.loc[best.values, "chosen"] = True
    chosen = choice.loc[choice["chosen"], ["variant", "size", "lr"]]
    kept = curves.merge(chosen, on=["variant", "size", "lr"], how="inner")
    kept = kept.sort_values(["variant", "run", "tokens"], kind="stable").reset_index(drop=True)
    return kept, choice[cols]
