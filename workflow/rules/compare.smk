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
