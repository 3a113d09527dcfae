from archscale.workflow import setup

log = setup(snakemake)
from pathlib import Path  # noqa: E402

from training.loop import TrainConfig, run, run_cooldown, run_stable  # noqa: E402
from training.study import stable_plan  # noqa: E402

w = snakemake.wildcards
lineage = f"{w.variant}/{w.size}/seed{w.seed}_lr{w.lr}"
common = dict(variant=w.variant, size_name=w.size, size_overrides=snakemake.params.size_config,
              data_dir=Path(snakemake.input.meta).parent, out_dir=Path(snakemake.output.curve).parent,
              threads=snakemake.threads,
              # read here, not a param: watching the curves live must not rerun a finished run
              logger=snakemake.config["training"]["logger"])
if snakemake.rule == "stable":
    # Where the stable run ends and which checkpoints it keeps for branching are read from the study's
    # current budgets, not passed as params: they change what it trains beyond its trajectory and what
    # it keeps, not its trajectory, so adding a budget must not rerun it (the new budget's cooldown
    # trains on from the nearest kept checkpoint, its last one if the budget lies beyond its end).
    end, branches = stable_plan(snakemake.config, f"{snakemake.scriptdir}/../schemas/config.schema.yaml", lineage)
    cfg = TrainConfig.from_dict({**snakemake.params.train_config, "tokens": end})
    info = run_stable(**common, cfg=cfg, branch_tokens=branches, extra_info={"run_id": f"{lineage}/stable"})
elif snakemake.rule == "cooldown":
    info = run_cooldown(**common, cfg=TrainConfig.from_dict(snakemake.params.train_config),
                        stable_ckpt_dir=Path(snakemake.input.stable).parent / "checkpoints",
                        extra_info={"run_id": f"{lineage}/{w.budget}", "budget": w.budget})
else:
    info = run(**common, cfg=TrainConfig.from_dict(snakemake.params.train_config),
               extra_info={"run_id": f"{lineage}/{w.budget}", "budget": w.budget})
log.info("run finished: status=%s steps=%s elapsed=%ss", info["status"], info["steps_done"], info["elapsed_s"])
