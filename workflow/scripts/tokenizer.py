from archscale.workflow import setup

log = setup(snakemake)
from pathlib import Path  # noqa: E402

from training.corpus import CorpusSpec  # noqa: E402
from training.prepare import write_tokenizer  # noqa: E402

info = write_tokenizer(
    CorpusSpec.from_config(snakemake.params.corpus), snakemake.params.tokenizer, Path(snakemake.output.info).parent
)
log.info("tokenizer: %s", info)
if info["added_tokens"]:
    log.warning("added to the given tokenizer (it has no token for their role): %s", ", ".join(info["added_tokens"]))
