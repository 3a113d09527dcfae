from archscale.workflow import setup

log = setup(snakemake)
from pathlib import Path  # noqa: E402

from training.prepare import write_tokens  # noqa: E402

meta = write_tokens(Path(snakemake.input.info).parent, snakemake.params.vocab_size, Path(snakemake.output.meta).parent)
log.info("tokens: %s", meta)
