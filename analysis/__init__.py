"""archscale analysis: learning-curve tables -> frontiers -> scaling-law fits -> comparisons.

Notebook API: ``analysis.fit_frontier(curves, variant)`` returns a results object with ``params``,
``conf_int(alpha=0.05)``, ``summary()`` and ``plot(ax=None)``; ``analysis.compare(a, b)`` tests two
exponents (analysis/api.py). Pipeline stages: ``analysis.stages`` (frontier_stage, fit_stage,
compare_stage, analyse), ``analysis.curves.table`` (validate_curves, select_best_lr), ``analysis.io``
(write_tables, read_tables), ``analysis.report.plots`` and ``python -m analysis``. See analysis/README.md.
Importing it leaves the matplotlib backend alone (matplotlib is imported only to plot).
"""
from analysis.api import FrontierResults, compare, fit_frontier  # noqa: F401
