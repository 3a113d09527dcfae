from archscale.workflow import setup

log = setup(snakemake)
from pathlib import Path  # noqa: E402

import json  # noqa: E402

import numpy as np  # noqa: E402

from training.atomic import write_json, write_text  # noqa: E402
from training.collect import baselines, collect  # noqa: E402

curves, runs = collect(sorted({str(Path(p).parent) for p in snakemake.input.curves}))
write_text(snakemake.output.curves, curves.to_csv(index=False))
write_text(snakemake.output.runs, runs.to_csv(index=False))
log.info("collected %d runs, %d curve points", len(runs), len(curves))
meta = json.loads(Path(snakemake.input.meta).read_text())
write_json(snakemake.output.baselines, baselines(
    np.load(snakemake.input.train_tokens, mmap_mode="r"), np.load(snakemake.input.val_tokens, mmap_mode="r"),
    meta["vocab_size"], seq_len=snakemake.params.seq_len, eval_tokens=snakemake.params.eval_tokens,
    special_ids=[meta[k] for k in ("bos_id", "eos_id", "pad_id", "mask_id")], mask_id=meta["mask_id"]))
