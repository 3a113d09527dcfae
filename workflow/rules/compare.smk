# Variant comparisons: exponent differences (Holm), crossovers, tiers, extrapolation.


def all_fit_tables(wildcards=None):
    return {
        kind: expand(f"{RESULTS}/analysis/fit/{{variant}}/{kind}.csv", variant=VARIANTS)
        for kind in ("fits", "bootstrap", "ln_fits")
    }


rule compare:
    input:
        unpack(all_fit_tables),
        curves=rules.curves.output.curves,
    output:
        pairs=f"{RESULTS}/analysis/compare/pairs.csv",
        crossovers=f"{RESULTS}/analysis/compare/crossovers.csv",
        tiers=f"{RESULTS}/analysis/compare/tiers.csv",
        extrapolation=f"{RESULTS}/analysis/compare/extrapolation.csv",
        lr_choice=f"{RESULTS}/analysis/compare/lr_choice.csv",
    params:
        analysis=analysis_params(),
        code=source_hash("analysis"),
    log:
        f"{RESULTS}/logs/compare.log",
    benchmark:
        f"{RESULTS}/benchmarks/compare.tsv"
    script:
        "../scripts/compare.py"
