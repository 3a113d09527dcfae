"""The one list of the study's figures: the workflow declares exactly these outputs, the library makes
exactly these (a figure with nothing to show says why instead of going missing). No plotting here, so
the workflow can read the list without importing matplotlib.

Adding a figure: a plot function in analysis/report/plots.py, its stem here, a caption
workflow/report/<caption>.rst (``caption_of``), and a place in analysis/report/pdf.py.
"""
from __future__ import annotations

# stem (or stem prefix for per-variant / per-objective figures) -> caption file (workflow/report/<name>.rst)
PER_VARIANT = {"curves": "curves", "isoflop": "isoflop"}
PER_OBJECTIVE = {"frontiers": "frontiers"}
STUDY = ("optimal_allocation", "exponent_forest", "delta_alpha_pure", "delta_alpha_eterm", "extrapolation",
         "loss_vs_params", "sensitivity", "predictions")


def figure_stems(variants, objectives) -> list[str]:
    """File stems (figures/<stem>.png) of a study with these variants and objectives."""
    stems = [f"{prefix}_{v}" for prefix in PER_VARIANT for v in sorted(variants)]
    stems += [f"{prefix}_{o}" for prefix in PER_OBJECTIVE for o in sorted(objectives)]
    return stems + list(STUDY)


def caption_of(stem: str, variants=(), objectives=()) -> str:
    """Caption file name (without .rst) of a figure stem."""
    for prefix, caption in {**PER_VARIANT, **PER_OBJECTIVE}.items():
        names = variants if prefix in PER_VARIANT else objectives
        if any(stem == f"{prefix}_{n}" for n in names):
            return caption
    if stem in STUDY:
        return stem
    raise KeyError(f"unknown figure stem {stem!r}")
