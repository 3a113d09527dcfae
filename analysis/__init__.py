"""archscale analysis: learning-curve tables -> frontiers -> scaling-law fits -> comparisons.

Entry points: ``analysis.stages`` (frontier_stage, fit_stage, compare_stage, analyse),
``analysis.table`` (validate_curves, select_best_lr), ``analysis.io`` (write_tables, read_tables),
``analysis.plots`` and ``python -m analysis``.  See analysis/README.md.
"""
