# Power-law fits with cluster-bootstrap intervals, one job per variant and compute column
# (the configured column feeds the comparisons; the other one the compute-accounting section).


rule fit:
    input:
        curves=rules.curves.output.curves,
    output:
        fits=f"{RESULTS}/analysis/fit/{{variant}}/{{compute}}/fits.csv",
        bootstrap=f"{RESULTS}/analysis/fit/{{variant}}/{{compute}}/bootstrap.csv",
        size_fits=f"{RESULTS}/analysis/fit/{{variant}}/{{compute}}/size_fits.csv",
        isoflop=f"{RESULTS}/analysis/fit/{{variant}}/{{compute}}/isoflop.csv",
        allocation=f"{RESULTS}/analysis/fit/{{variant}}/{{compute}}/allocation.csv",
    log:
        f"{RESULTS}/logs/fit/{{variant}}/{{compute}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit/{{variant}}/{{compute}}.tsv"
    conda:
        ENV
    threads: 1
    params:
        analysis=fit_analysis_params,
        code=source_hash(*STATS_CODE),
    script:
        "../scripts/fit.py"
