"""The one list of each analysis stage's tables: the stages return exactly these (analysis/stages.py), the
workflow declares exactly these outputs (workflow/rules/common.smk) and reads the fit tables back by these
names (workflow/scripts/compare.py). No pandas here, so the workflow can read the list cheaply.
Figures have their own list: analysis/report/figure_list.py."""
from __future__ import annotations

STAGE_TABLES = {
    "frontier": ("final_points", "transient", "frontier_points", "frontier_grid", "frontier_owners",
                 "frontier_summary", "runs"),
    "fit": ("fits", "bootstrap", "size_fits", "isoflop", "allocation"),
    "compare": ("pairs", "crossovers", "tiers", "extrapolation", "lr_choice"),
    "sensitivity": ("sensitivity", "sensitivity_summary"),
    "predict": ("predictions",),
}
