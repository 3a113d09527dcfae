# Runs -> the learning-curve table -> per-variant compute-efficient frontiers.


rule curves:
    input:
        curves=all_curves,
        infos=all_run_infos,
    output:
        curves=f"{RESULTS}/analysis/curves.csv",
        runs=f"{RESULTS}/analysis/runs.csv",
    params:
        code=source_hash("training/collect.py"),
    log:
        f"{RESULTS}/logs/curves.log",
    script:
        "../scripts/collect.py"


rule frontier:
    input:
        curves=rules.curves.output.curves,
    output:
        frontier_points=f"{RESULTS}/analysis/frontier/frontier_points.csv",
        frontier_grid=f"{RESULTS}/analysis/frontier/frontier_grid.csv",
        frontier_summary=f"{RESULTS}/analysis/frontier/frontier_summary.csv",
    params:
        analysis=analysis_params(),
        code=source_hash("analysis"),
    log:
        f"{RESULTS}/logs/frontier.log",
    script:
        "../scripts/frontier.py"
