# Variant comparisons: exponent differences (Holm), crossovers, tiers, extrapolation; and the sensitivity of
# every headline to the analysis choices (analysis/comparison/sensitivity.py).


rule compare:
    input:
        unpack(primary_fit_tables),
        curves=rules.curves.output.curves,
    output:
        **COMPARE_TABLES,
    log:
        f"{RESULTS}/logs/compare.log",
    benchmark:
        f"{RESULTS}/benchmarks/compare.tsv"
    conda:
        ENV
    params:
        analysis=analysis_params(),
        code=source_hash(*STATS_CODE),
    script:
        "../scripts/compare.py"


rule sensitivity:
    input:
        curves=rules.curves.output.curves,
    output:
        **SENSITIVITY_TABLES,
    log:
        f"{RESULTS}/logs/sensitivity.log",
    benchmark:
        f"{RESULTS}/benchmarks/sensitivity.tsv"
    conda:
        ENV
    params:
        analysis=analysis_params(),
        code=source_hash(*STATS_CODE),
    script:
        "../scripts/sensitivity.py"


# Every wsd run's final loss predicted from the first 30% of its stable phase (analysis/forecast/predict.py).


rule predict:
    input:
        curves=rules.curves.output.curves,
    output:
        predictions=PREDICTION_TABLE,
    log:
        f"{RESULTS}/logs/predict.log",
    conda:
        ENV
    params:
        code=source_hash(*STATS_CODE),
    script:
        "../scripts/predict.py"
