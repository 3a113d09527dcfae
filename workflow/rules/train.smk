# One job per (variant, size, seed, learning rate).


rule train:
    input:
        meta=rules.tokenizer.output.meta,
        train=rules.tokenizer.output.train,
        val=rules.tokenizer.output.val,
    output:
        curve=f"{RUN_DIR}/curve.csv",
        info=f"{RUN_DIR}/run.json",
    params:
        size_config=train_size_overrides,
        seed=train_seed,
        lr=train_lr,
        training=config["training"],
        code=train_source_hash,
    threads: config["training"]["threads"]
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=config["training"]["gpus"],
    conda:
        ENV
    log:
        f"{RESULTS}/logs/train/{{variant}}/{{size}}/seed{{seed}}_lr{{lr}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{variant}}/{{size}}/seed{{seed}}_lr{{lr}}.tsv"
    script:
        "../scripts/train.py"
