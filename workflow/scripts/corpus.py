from archscale.workflow import setup

log = setup(snakemake)
from pathlib import Path  # noqa: E402

from training.corpus import CorpusSpec  # noqa: E402
from training.prepare import write_corpus  # noqa: E402

info = write_corpus(CorpusSpec.from_config(snakemake.params.corpus), Path(snakemake.output.info).parent)
log.info("corpus: %s", info)
