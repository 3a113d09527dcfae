# Training jobs, from one rule. cosine: `train`, one run from scratch per (lineage, budget). wsd: one
# `stable` run per lineage (variant, size, seed, lr) and one `cooldown` per budget branching off it, both
# `train` with their own inputs and outputs (`train` itself then yields to `cooldown`: ruleorder below).
TRAIN_BENCH = f"{RESULTS}/benchmarks/train/{{variant}}/{{size}}/seed{{seed}}_lr{{lr}}"
TRAIN_LOG = f"{RESULTS}/logs/train/{{variant}}/{{size}}/seed{{seed}}_lr{{lr}}"


rule train:
    input:
        meta=rules.tokens.output.meta,
    output:
        curve=f"{RUN_DIR}/curve.csv",
        info=f"{RUN_DIR}/run.json",
    log:
        f"{TRAIN_LOG}/{{budget}}.log",
    benchmark:
        f"{TRAIN_BENCH}/{{budget}}.tsv"
    priority: train_priority
    conda:
        ENV
    threads: config["training"]["threads"]
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=train_gpus,
    params:
        size_config=train_size_config,
        train_config=train_config,
        code=train_source_hash,
    script:
        "../scripts/train.py"


if WSD:

    use rule train as stable with:
        input:
            meta=rules.tokens.output.meta,
            reference=early_stop_reference,
        output:
            curve=f"{STABLE_DIR}/curve.csv",
            info=f"{STABLE_DIR}/run.json",
        log:
            f"{TRAIN_LOG}/stable.log",
        benchmark:
            f"{TRAIN_BENCH}/stable.tsv"

    use rule train as cooldown with:
        input:
            meta=rules.tokens.output.meta,
            stable=stable_info,

    ruleorder: cooldown > train
