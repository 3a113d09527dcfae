from archscale.workflow import setup

log = setup(snakemake)
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from training.loop import TrainConfig, run, run_cooldown, run_stable, skip_cooldown  # noqa: E402
from training.study import lineage_budgets, stable_plan  # noqa: E402

w = snakemake.wildcards
lineage = f"{w.variant}/{w.size}/seed{w.seed}_lr{w.lr}"
schema = f"{snakemake.scriptdir}/../schemas/config.schema.yaml"
common = dict(variant=w.variant, size_name=w.size, size_overrides=snakemake.params.size_config,
              data_dir=Path(snakemake.input.meta).parent, out_dir=Path(snakemake.output.curve).parent,
              threads=snakemake.threads,
              # read here, not a param: watching the curves live must not rerun a finished run
              logger=snakemake.config["training"]["logger"])


def early_stop_check(es: dict, lr: float, end: int):
    """(tokens, decide) for training.loop.run_stable: the study's early-stop rule (analysis/early_stop.py)
    against the reference table, judging this lineage's budgets; the check after es["fraction"] x `end`."""
    import pandas as pd

    import models
    from analysis.early_stop import decide, reference_frontier
    from analysis.predict import reference_runs

    table = pd.read_csv(snakemake.input.reference[0])
    frontier, reference = reference_frontier(table), reference_runs(table, es["fraction"])
    budgets = lineage_budgets(snakemake.config, schema, lineage)
    ident = {"run": f"{lineage}/stable", "variant": w.variant, "objective": models.get_variant(w.variant).objective,
             "size": w.size, "seed": int(w.seed), "lr": lr}

    def check(rows, seen_tokens):
        rows = [{**r, "loss": r["eval_loss"]} for r in rows]  # the curve's eval loss is the table's loss
        d = decide(reference, frontier, rows, ident, budgets, seen_tokens, es["fraction"], es["level"], es["margin"])
        log.info("early stop at %d tokens: %s (%s)", seen_tokens, "stop" if d.stop else "go on", d.reason)
        return d.as_dict()

    return es["fraction"] * end, check


if snakemake.rule == "stable":
    # Where the stable run ends and which checkpoints it keeps for branching are read from the study's
    # current budgets, not passed as params: they change what it trains beyond its trajectory and what
    # it keeps, not its trajectory, so adding a budget must not rerun it (the new budget's cooldown
    # trains on from the nearest kept checkpoint, its last one if the budget lies beyond its end).
    end, branches = stable_plan(snakemake.config, schema, lineage)
    cfg = TrainConfig.from_dict({**snakemake.params.train_config, "tokens": end})
    es = snakemake.params.train_config.get("early_stop")
    stop_check = early_stop_check(es, cfg.lr, end) if es else None
    info = run_stable(**common, cfg=cfg, branch_tokens=branches, extra_info={"run_id": f"{lineage}/stable"},
                      stop_check=stop_check)
elif snakemake.rule == "cooldown":
    cfg = TrainConfig.from_dict(snakemake.params.train_config)
    stable_dir = Path(snakemake.input.stable).parent
    stable = json.loads(Path(snakemake.input.stable).read_text())
    extra = {"run_id": f"{lineage}/{w.budget}", "budget": w.budget}
    stopped = stable.get("early_stop") or {}
    if stable["status"] == "stopped" and cfg.cooldown_start * cfg.tokens_per_step > stopped["tokens"]:
        row = next((b for b in stopped["budgets"] if b["budget"] == w.budget), {})
        info = skip_cooldown(stable_dir, common["out_dir"], cfg,
                             {**extra, "early_stop": {"tokens": stopped["tokens"], "reason": stopped["reason"], **row}})
    else:
        info = run_cooldown(**common, cfg=cfg, stable_ckpt_dir=stable_dir / "checkpoints", extra_info=extra)
else:
    info = run(**common, cfg=TrainConfig.from_dict(snakemake.params.train_config),
               extra_info={"run_id": f"{lineage}/{w.budget}", "budget": w.budget})
log.info("run finished: status=%s steps=%s elapsed=%ss", info["status"], info["steps_done"], info["elapsed_s"])
