# Corpus -> documents split -> BPE tokenizer -> token arrays.


rule corpus:
    output:
        train=f"{DATA}/corpus/train.jsonl",
        val=f"{DATA}/corpus/val.jsonl",
        info=f"{DATA}/corpus/corpus.json",
    log:
        f"{RESULTS}/logs/corpus.log",
    conda:
        ENV
    params:
        corpus=config["corpus"],
        code=source_hash("training/corpus.py", "training/prepare.py"),
    script:
        "../scripts/corpus.py"


rule tokenizer:
    input:
        train=rules.corpus.output.train,
        val=rules.corpus.output.val,
        info=rules.corpus.output.info,
    output:
        tokenizer=f"{DATA}/tokens/tokenizer.json",
        train=f"{DATA}/tokens/train.npy",
        val=f"{DATA}/tokens/val.npy",
        meta=f"{DATA}/tokens/meta.json",
    log:
        f"{RESULTS}/logs/tokenizer.log",
    benchmark:
        f"{RESULTS}/benchmarks/tokenizer.tsv"
    conda:
        ENV
    params:
        vocab_size=config["tokenizer"]["vocab_size"],
        code=source_hash("training/tokenizer.py", "training/prepare.py"),
    script:
        "../scripts/tokenizer.py"
