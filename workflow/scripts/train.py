from archscale.workflow import setup

log = setup(snakemake)
from pathlib import Path  # noqa: E402

from training.loop import TrainConfig, run, run_cooldown, run_stable  # noqa: E402
from training.study import stable_branches  # noqa: E402

w = snakemake.wildcards
lineage = f"{w.variant}/{w.size}/seed{w.seed}_lr{w.lr}"
cfg = TrainConfig.from_dict(snakemake.params.train_config)
common = dict(variant=w.variant, size_name=w.size, size_overrides=snakemake.params.size_config, cfg=cfg,
              data_dir=Path(snakemake.input.meta).parent, out_dir=Path(snakemake.output.curve).parent,
              threads=snakemake.threads,
              # read here, not a param: watching the curves live must not rerun a finished run
              logger=snakemake.config["training"]["logger"])
if snakemake.rule == "stable":
    # The checkpoints kept for branching are those of the study's current budgets. They are read here
    # rather than passed as params: they change what is kept, not the run's outputs, so adding a budget
    # within the stable run's range must not rerun it (the new cooldown catches up from the nearest one).
    branches = stable_branches(snakemake.config, f"{snakemake.scriptdir}/../schemas/config.schema.yaml", lineage)
    info = run_stable(**common, branch_tokens=branches, extra_info={"run_id": f"{lineage}/stable"})
elif snakemake.rule == "cooldown":
    info = run_cooldown(**common, stable_ckpt_dir=Path(snakemake.input.stable).parent / "checkpoints",
                        extra_info={"run_id": f"{lineage}/{w.budget}", "budget": w.budget})
else:
    info = run(**common, extra_info={"run_id": f"{lineage}/{w.budget}", "budget": w.budget})
log.info("run finished: status=%s steps=%s elapsed=%ss", info["status"], info["steps_done"], info["elapsed_s"])
