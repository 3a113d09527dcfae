# Variant comparisons: exponent differences (Holm), crossovers, tiers, extrapolation; and the sensitivity of
# every headline to the analysis choices (analysis/sensitivity.py).


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


rule sensitivity:
    input:
        curves=rules.curves.output.curves,
    output:
        **SENSITIVITY_TABLES,
    params:
        analysis=analysis_params(),
        code=source_hash(*SENSITIVITY_CODE),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/sensitivity.log",
    benchmark:
        f"{RESULTS}/benchmarks/sensitivity.tsv"
    script:
        "../scripts/sensitivity.py"
