import sys; sys.path.insert(0, snakemake.scriptdir)  # noqa: E702
from _common import setup

log = setup(snakemake)
from pathlib import Path  # noqa: E402

from training.loop import TrainConfig, run  # noqa: E402

w = snakemake.wildcards
cfg = TrainConfig.from_dict(snakemake.params.training, seed=snakemake.params.seed, lr=snakemake.params.lr)
info = run(
    variant=w.variant,
    size_name=w.size,
    size_overrides=snakemake.params.size_config,
    cfg=cfg,
    data_dir=Path(snakemake.input.meta).parent,
    out_dir=Path(snakemake.output.curve).parent,
    threads=snakemake.threads,
    extra_info={"run_id": f"{w.variant}/{w.size}/seed{w.seed}_lr{w.lr}"},
)
log.info("run finished: status=%s steps=%s elapsed=%ss", info["status"], info["steps_done"], info["elapsed_s"])
