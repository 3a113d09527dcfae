"""The learning-curve table: validation, run ids and learning-rate selection."""
from __future__ import annotations

import numpy as np
import pandas as pd

REQUIRED = ("variant", "objective", "size", "seed", "params_total", "params_nonembedding",
            "tokens", "flops", "flops_6n", "loss")
OPTIONAL = ("run", "lr", "status", "eval_loss_se", "step", "warmup_tokens", "budget", "budget_tokens", "schedule", "phase")
OBJECTIVES = ("causal", "masked", "rtd")
STATUSES = ("ok", "diverged")
_INT_COLS = ("seed", "params_total", "params_nonembedding", "tokens")
_FLOAT_COLS = ("flops", "flops_6n", "loss", "lr", "eval_loss_se", "warmup_tokens", "step")
_POSITIVE = ("flops", "flops_6n", "loss", "params_total", "params_nonembedding")


class CurveTableError(ValueError):
    """Bad learning-curve table; the message names the problem and the fix."""


def _first_row(mask: pd.Series) -> str:
    return str(mask[mask].index[0])


def validate_curves(df) -> pd.DataFrame:
    """Return a cleaned copy of a learning-curve table or raise CurveTableError."""
    if not isinstance(df, pd.DataFrame):
        raise CurveTableError(f"curve table must be a pandas DataFrame, got {type(df).__name__}; "
                              "load it with pandas.read_csv")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise CurveTableError(f"curve table is missing column(s) {', '.join(repr(c) for c in missing)}; "
                              f"required: {', '.join(REQUIRED)}")
    if len(df) == 0:
        raise CurveTableError("curve table has no rows; give at least one evaluation point per run")
    keep = list(REQUIRED) + [c for c in OPTIONAL if c in df.columns]
    out = df[keep].copy().reset_index(drop=True)
    for col in ("variant", "objective", "size"):
        bad = out[col].isna()
        if bad.any():
            raise CurveTableError(f"curve table has {int(bad.sum())} missing value(s) in column {col!r} "
                                  f"(first at row {_first_row(bad)}); fill or drop those rows")
        out[col] = out[col].astype(str)
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
    for col in _POSITIVE:
        bad = ~(out[col] > 0) | ~np.isfinite(out[col])
        if bad.any():
            raise CurveTableError(f"curve table column {col!r} has {int(bad.sum())} non-positive or infinite "
                                  f"value(s) (first at row {_first_row(bad)}, value {out[col][bad].iloc[0]!r}); "
                                  "drop those points (e.g. the step-0 evaluation) before analysis")
    if (out["tokens"] < 0).any():
        raise CurveTableError("curve table column 'tokens' has negative values; tokens must be >= 0")
    for col in ("eval_loss_se", "lr", "warmup_tokens"):
        if col in out.columns and (out[col] < 0).any():
            raise CurveTableError(f"curve table column {col!r} has negative values; it must be >= 0")
    if "lr" in out.columns and out["lr"].isna().any():
        raise CurveTableError("curve table column 'lr' has NaN values; fill them or drop the column")
    for col in _INT_COLS:
        out[col] = out[col].astype("int64")
    bad_obj = ~out["objective"].isin(OBJECTIVES)
    if bad_obj.any():
        raise CurveTableError(f"curve table column 'objective' has value {out['objective'][bad_obj].iloc[0]!r}; "
                              f"use one of {', '.join(OBJECTIVES)}")
    if "status" in out.columns:
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
        lr = ("_lr" + out["lr"].map("{:g}".format)) if "lr" in out.columns else ""
        budget = ("/" + out["budget"].fillna("").astype(str)) if "budget" in out.columns else ""
        out["run"] = out["variant"] + "/" + out["size"] + "/seed" + out["seed"].astype(str) + lr + budget
    objectives = out.groupby("variant")["objective"].nunique()
    if (objectives > 1).any():
        v = objectives[objectives > 1].index[0]
        raise CurveTableError(f"variant {v!r} appears with several objectives; "
                              "give each (variant, objective) combination its own variant name")
    per_run = out.groupby("run")[["variant", "size", "seed"]].nunique()
    if (per_run > 1).any(axis=None):
        r = per_run[(per_run > 1).any(axis=1)].index[0]
        raise CurveTableError(f"run {r!r} mixes several variants, sizes or seeds; give each run a unique 'run' id")
    dup = out.duplicated(["run", "tokens"])
    if dup.any():
        r = out.loc[dup, "run"].iloc[0]
        raise CurveTableError(f"run {r!r} has duplicate rows at tokens={out.loc[dup, 'tokens'].iloc[0]}; "
                              "keep one evaluation per run and token count")
    if "status" in df.columns:  # a run diverged if any of its rows says so
        div = out.groupby("run")["status"].transform(lambda s: "diverged" if (s == "diverged").any() else "ok")
        out["status"] = div
    return out.sort_values(["variant", "run", "tokens"], kind="stable").reset_index(drop=True)


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

    Diverged runs never count towards the mean; an lr with any diverged seed is only eligible when
    every lr of that (variant, size) had a divergence.  Returns (curves restricted to the chosen lr,
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
