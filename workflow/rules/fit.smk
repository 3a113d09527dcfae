# Power-law fits with cluster-bootstrap intervals, one job per variant.


rule fit:
    input:
        curves=rules.curves.output.curves,
    output:
        fits=f"{RESULTS}/analysis/fit/{{variant}}/fits.csv",
        bootstrap=f"{RESULTS}/analysis/fit/{{variant}}/bootstrap.csv",
        ln_fits=f"{RESULTS}/analysis/fit/{{variant}}/ln_fits.csv",
    params:
        analysis=analysis_params(),
        code=source_hash("analysis"),
    threads: 1
    log:
        f"{RESULTS}/logs/fit/{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit/{{variant}}.tsv"
    script:
        "../scripts/fit.py"
