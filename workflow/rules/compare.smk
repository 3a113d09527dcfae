# Variant comparisons: exponent differences (Holm), crossovers, tiers, extrapolation.


rule compare:
    input:
        unpack(primary_fit_tables),
        curves=rules.curves.output.curves,
    output:
        **COMPARE_TABLES,
    params:
        analysis=analysis_params(),
        code=source_hash(*STATS_CODE),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/compare.log",
    benchmark:
        f"{RESULTS}/benchmarks/compare.tsv"
    script:
        "../scripts/compare.py"


# Every wsd run's final loss predicted from the first 30% of its stable phase (analysis/predict.py).
PREDICT_CODE = ("analysis/predict.py", "analysis/fits.py", "analysis/table.py", "analysis/stages.py")


rule predict:
    input:
        curves=rules.curves.output.curves,
    output:
        predictions=PREDICTION_TABLE,
    params:
        code=source_hash(*PREDICT_CODE),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/predict.log",
    script:
        "../scripts/predict.py"
