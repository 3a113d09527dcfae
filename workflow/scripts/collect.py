import sys; sys.path.insert(0, snakemake.scriptdir)  # noqa: E702
from _common import setup

log = setup(snakemake)
from pathlib import Path  # noqa: E402

from training.atomic import write_text  # noqa: E402
from training.collect import collect  # noqa: E402

curves, runs = collect(sorted({str(Path(p).parent) for p in snakemake.input.curves}))
write_text(snakemake.output.curves, curves.to_csv(index=False))
write_text(snakemake.output.runs, runs.to_csv(index=False))
log.info("collected %d runs, %d curve points", len(runs), len(curves))
