from archscale.workflow import setup

log = setup(snakemake)
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from training import gpu_slots  # noqa: E402

# a workstation's GPUs: take free device slots before anything touches CUDA (training/gpu_slots.py)
# (held until this process ends: the lock files close with it, SIGKILL included)
gpus = snakemake.resources.get("gpu", 0)
slots = gpu_slots.take(gpus, what=f"training job {snakemake.rule}")

import torch  # noqa: E402

from training.loop import EXECUTION_FIELDS, TrainConfig, skip_cooldown  # noqa: E402

if gpus and not torch.cuda.is_available():  # e.g. a SLURM job given no GPU, or fake device slots
    log.warning("warning: this run asks for %d GPU(s) (training.gpus) and no CUDA device is visible to it: "
                "it trains on the CPU", gpus)
from study.config import lineage_budgets, stable_plan  # noqa: E402

w = snakemake.wildcards
lineage = f"{w.variant}/{w.size}/seed{w.seed}_lr{w.lr}"
schema = f"{snakemake.scriptdir}/../schemas/config.schema.yaml"
# how the run executes (micro-batch, checkpoint interval): read here, not params, so changing it reruns nothing
execution = {k: snakemake.config["training"][k] for k in EXECUTION_FIELDS}
common = dict(variant=w.variant, size_name=w.size, size_overrides=snakemake.params.size_config,
              data_dir=Path(snakemake.input.meta).parent, out_dir=Path(snakemake.output.curve).parent,
              threads=snakemake.threads,
              # read here, not a param: watching the curves live must not rerun a finished run
              logger=snakemake.config["training"]["logger"])


def early_stop_check(es: dict, lr: float, end: int):
    """(tokens, decide) for training.loop.run_stable: the study's early-stop rule (analysis/forecast/early_stop.py)
    against the reference table, judging this lineage's budgets; the check after es["fraction"] x `end`."""
    import pandas as pd

    import models
    from analysis.forecast.early_stop import decide, reference_frontier
    from analysis.forecast.predict import reference_runs

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


def train(kind: str, **kwargs) -> dict:
    """training.loop.<run | run_stable | run_cooldown> in this process, or on `gpus` > 1 processes through
    torch.distributed (training/distributed.py: torchrun, one rank per GPU slot held)."""
    from training import distributed, loop

    if gpus <= 1:
        return {"run": loop.run, "stable": loop.run_stable, "cooldown": loop.run_cooldown}[kind](**kwargs)
    import dataclasses
    import sys

    spec = {**kwargs, **{k: dataclasses.asdict(kwargs[k]) for k in ("cfg", "stable_cfg") if kwargs.get(k)}}
    spec.pop("stop_check", None)  # the config check refuses early stopping on several GPUs
    out_dir = Path(kwargs["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("training on %d processes (torchrun, one per GPU)", gpus)
    rc = distributed.launch(gpus, kind, spec, out_dir / ".torchrun.json", stream=sys.stderr)
    if rc:
        raise distributed.RunFailed(f"the {gpus}-process run of {lineage} failed (torchrun exit status {rc}; the ranks' "
                                    f"errors are in {snakemake.log[0]}); rerun to resume from its last checkpoint")
    return json.loads((out_dir / "run.json").read_text())


if snakemake.rule == "stable":
    # Where the stable run ends and which checkpoints it keeps for branching are read from the study's
    # current budgets, not passed as params: they change what it trains beyond its trajectory and what
    # it keeps, not its trajectory, so adding a budget must not rerun it (the new budget's cooldown
    # trains on from the nearest kept checkpoint, its last one if the budget lies beyond its end).
    end, branches = stable_plan(snakemake.config, schema, lineage)
    cfg = TrainConfig.from_dict({**snakemake.params.train_config, "tokens": end}, **execution)
    es = snakemake.params.train_config.get("early_stop")
    stop_check = early_stop_check(es, cfg.lr, end) if es else None
    info = train("stable", **common, cfg=cfg, branch_tokens=branches, extra_info={"run_id": f"{lineage}/stable"},
                 stop_check=stop_check)
elif snakemake.rule == "cooldown":
    cfg = TrainConfig.from_dict(snakemake.params.train_config, **execution)
    stable_dir = Path(snakemake.input.stable).parent
    stable = json.loads(Path(snakemake.input.stable).read_text())
    extra = {"run_id": f"{lineage}/{w.budget}", "budget": w.budget}
    stopped = stable.get("early_stop") or {}
    if stable["status"] == "stopped" and cfg.cooldown_start * cfg.tokens_per_step > stopped["tokens"]:
        row = next((b for b in stopped["budgets"] if b["budget"] == w.budget), {})
        info = skip_cooldown(stable_dir, common["out_dir"], cfg,
                             {**extra, "early_stop": {"tokens": stopped["tokens"], "reason": stopped["reason"], **row}})
    else:
        info = train("cooldown", **common, cfg=cfg, stable_ckpt_dir=stable_dir / "checkpoints", extra_info=extra,
                     stable_cfg=TrainConfig.from_dict(stable["train_config"]))
else:
    info = train("run", **common, cfg=TrainConfig.from_dict(snakemake.params.train_config, **execution),
                 extra_info={"run_id": f"{lineage}/{w.budget}", "budget": w.budget})
log.info("run finished: status=%s steps=%s elapsed=%ss", info["status"], info["steps_done"], info["elapsed_s"])
