from archscale.workflow import setup

log = setup(snakemake)
from pathlib import Path  # noqa: E402

from training.corpus import CorpusSpec  # noqa: E402
from training.prepare import write_tokens  # noqa: E402

meta = write_tokens(
    CorpusSpec.from_config(snakemake.params.corpus),
    Path(snakemake.input.info).parent,
    Path(snakemake.output.meta).parent,
    shard_tokens=snakemake.params.shard_tokens,
    workers=snakemake.threads,
)
log.info(
    "tokens: %d train (%d documents), %d val (%d documents) in %d + %d shards",
    meta["n_tokens_train"], meta["n_docs_train"], meta["n_tokens_val"], meta["n_docs_val"],
    len(meta["splits"]["train"]["shards"]), len(meta["splits"]["val"]["shards"]),
)
