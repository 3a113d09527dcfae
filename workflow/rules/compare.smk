# Variant comparisons: exponent differences (Holm), crossovers, tiers, extrapolation.


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
