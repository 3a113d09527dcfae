# Runs -> the learning-curve table -> per-variant compute-efficient frontiers.


rule curves:
    input:
        curves=all_curves,
        infos=all_run_infos,
        meta=rules.tokens.output.meta,
    output:
        curves=f"{RESULTS}/analysis/curves.csv",
        runs=f"{RESULTS}/analysis/runs.csv",
        baselines=f"{RESULTS}/analysis/baselines.json",
    log:
        f"{RESULTS}/logs/curves.log",
    conda:
        ENV
    params:
        seq_len=config["training"]["seq_len"],
        eval_tokens=config["training"]["eval_tokens"],
        code=source_hash("training/collect.py", "training/evalset.py"),
    script:
        "../scripts/collect.py"


rule frontier:
    input:
        curves=rules.curves.output.curves,
    output:
        **FRONTIER_TABLES,
    log:
        f"{RESULTS}/logs/frontier.log",
    conda:
        ENV
    params:
        analysis=analysis_params(),
        code=source_hash(*STATS_CODE),
    script:
        "../scripts/frontier.py"
