# Corpus -> tokenizer (trained on a bounded sample, or given) -> token shards and their index.
# The shards (tokens/shards/) are not declared outputs: Snakemake would delete them before a rerun,
# and a killed preparation resumes from them (training/prepare.py); meta.json indexes them.


rule tokenizer:
    input:
        given=given_tokenizer_files,
    output:
        tokenizer=f"{DATA}/tokens/tokenizer.json",
        info=f"{DATA}/tokens/tokenizer_info.json",
    log:
        f"{RESULTS}/logs/tokenizer.log",
    benchmark:
        f"{RESULTS}/benchmarks/tokenizer.tsv"
    conda:
        ENV
    params:
        corpus=tokenizer_corpus_params(),
        tokenizer=tokenizer_params(),
        code=source_hash(
            "training/corpus.py", "training/tokenizer.py", "training/prepare.py"
        ),
    script:
        "../scripts/tokenizer.py"


rule tokens:
    input:
        tokenizer=rules.tokenizer.output.tokenizer,
        info=rules.tokenizer.output.info,
    output:
        meta=f"{DATA}/tokens/meta.json",
    log:
        f"{RESULTS}/logs/tokens.log",
    benchmark:
        f"{RESULTS}/benchmarks/tokens.tsv"
    conda:
        ENV
    threads: prepare_threads()
    params:
        corpus=config["corpus"],
        shard_tokens=config["tokenizer"]["shard_tokens"],
        code=source_hash(
            "training/corpus.py",
            "training/tokenizer.py",
            "training/prepare.py",
            "training/shards.py",
        ),
    script:
        "../scripts/tokens.py"
