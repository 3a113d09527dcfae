from archscale.workflow import setup

log = setup(snakemake)
from pathlib import Path  # noqa: E402

from archscale.files import write_json, write_text  # noqa: E402
from training.collect import baselines, collect  # noqa: E402
from training.shards import open_tokens  # noqa: E402

curves, runs = collect(sorted({str(Path(p).parent) for p in snakemake.input.curves}))
write_text(snakemake.output.curves, curves.to_csv(index=False))
write_text(snakemake.output.runs, runs.to_csv(index=False))
log.info("collected %d runs, %d curve points", len(runs), len(curves))
data = open_tokens(Path(snakemake.input.meta).parent)
write_json(snakemake.output.baselines, baselines(
    data.train_counts, data.val, data.vocab_size, seq_len=snakemake.params.seq_len,
    eval_tokens=snakemake.params.eval_tokens, special_ids=data.special_ids, mask_id=data.meta["mask_id"]))
