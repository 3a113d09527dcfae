"""Run a recorded sweep (config/sweeps/<name>.yaml) one run at a time and write its table.

    .venv/bin/python config/sweeps/sweep.py config/sweeps/bert_mlm_recipe.yaml [--data DIR] [--out DIR]

A sweep file is either a study config (config/config.yaml's format: `variants` with `sizes`,
`size_overrides`, `lr_grid`, and `seeds`; runnable by Snakemake too) or a base `training`
block (TrainConfig fields) and a list of `runs`; in a run entry, any of `size`, `lr`, `seed`, `tokens`, a field under `overrides` (size fields) or
under `training` may be a list, and the entry expands to the product of its lists. Every run
goes through the project's own loop (training.loop.run) on the data folder (default
results/data/tokens, the default study's tokens; the sweep's `data` block says how it was
built), single-threaded, into <out>/<run id>/; runs with a finished run.json are not
retrained. The table (<out>/table.csv, copied next to the sweep file as <name>.csv) has one
row per run: its settings, the final eval loss (the fixed evaluation set), every extra loss
the model reports (ELECTRA's generator on the fixed mask), the best eval loss, the
baselines of the set, status and tokens/s.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[2]

from training import loop  # noqa: E402
from training.collect import baselines  # noqa: E402
from training.loop import TrainConfig  # noqa: E402
from training.prepare import prepare  # noqa: E402
from training.shards import open_tokens  # noqa: E402
from training.corpus import CorpusSpec  # noqa: E402


def expand(entry: dict) -> list[dict]:
    """The runs of one sweep entry: the product of every list-valued setting."""
    flat = {k: v for k, v in entry.items() if k not in ("overrides", "training")}
    flat.update({f"overrides.{k}": v for k, v in (entry.get("overrides") or {}).items()})
    flat.update({f"training.{k}": v for k, v in (entry.get("training") or {}).items()})
    keys = list(flat)
    values = [v if isinstance(v, list) else [v] for v in flat.values()]
    runs = []
    for combo in itertools.product(*values):
        spec = dict(zip(keys, combo))
        run = {k: v for k, v in spec.items() if "." not in k}
        run["overrides"] = {k.split(".", 1)[1]: v for k, v in spec.items() if k.startswith("overrides.")}
        run["training"] = {k.split(".", 1)[1]: v for k, v in spec.items() if k.startswith("training.")}
        runs.append(run)
    return runs


def study_runs(spec: dict) -> list[dict]:
    """The runs of a study config (config/config.yaml's format: variants with sizes,
    size_overrides and lr_grid, seeds), as sweep entries."""
    runs = []
    default_lr = (spec.get("training") or {}).get("lr", 0.002)
    for variant, block in spec["variants"].items():
        for size in block["sizes"]:
            for seed in spec.get("seeds", [0]):
                runs.append({"variant": variant, "size": size, "seed": seed,
                             "lr": list((block.get("lr_grid") or {}).get(size, [default_lr])),
                             "overrides": dict((block.get("size_overrides") or {}).get(size, {}))})
    return runs


def run_id(run: dict) -> str:
    digest = hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()[:8]
    return f"{run['variant']}_{run['size']}_{digest}"


def check_still_valid(run: dict, rdir: Path) -> None:
    """A finished run is reused only if today's resolution of its size (the variant's
    defaults may have changed since) matches what it trained with."""
    from models import resolve_size

    trained = json.loads((rdir / "run.json").read_text())["size_config"]
    today = resolve_size(run["variant"], run["size"], None, **run["overrides"]).as_dict()
    differ = {k: (trained[k], today[k]) for k in set(trained) & set(today)
              if json.dumps(trained[k]) != json.dumps(today[k])}
    differ.update({k: (None, today[k]) for k in set(today) - set(trained) if k not in LEGACY_DEFAULTS.get(
        run["variant"], {}) or LEGACY_DEFAULTS[run["variant"]][k] != today[k]})
    if differ:
        raise SystemExit(f"{rdir} trained with other size fields than the sweep entry gives today "
                         f"(field: (trained, today)) {differ}; pin them in the entry, or delete the folder to retrain")


# size fields added after some recorded runs were trained, with the value those runs had
LEGACY_DEFAULTS = {"bert_mlm": dict(p_mask=0.8, pos_init="normal", init_std=0.02, position="absolute"),
                   "electra": dict(init_std=0.02, replace_prob=None, tie_encoder=False)}


def ensure_data(data_dir: Path, spec: dict) -> None:
    """Build the corpus and tokens as the sweep file's `data` block says, if absent."""
    if (data_dir / "meta.json").exists():
        return
    prepare(CorpusSpec.from_config(spec.get("corpus") or {}), {"vocab_size": int(spec.get("vocab_size", 2048))}, data_dir)


def train_one(run: dict, base: dict, data_dir: Path, out: Path) -> dict:
    """Train one run through training.loop.run; its final metrics (all eval losses)."""
    fields = {**base, **run["training"], "seed": run.get("seed", 0), "lr": run["lr"]}
    if "tokens" in run:
        fields["tokens"] = run["tokens"]
    cfg = TrainConfig.from_dict(fields)
    captured: dict = {}

    def recording_evaluate(model, batches, device, seed=None):  # keep every metric of the last eval
        captured.update(loop.eval_metrics(model, batches, device))
        return captured["loss"]

    loop.evaluate, original = recording_evaluate, loop.evaluate
    try:
        t0 = time.perf_counter()
        info = loop.run(run["variant"], run["size"], run["overrides"], cfg, data_dir, out, threads=1)
        elapsed = time.perf_counter() - t0
    finally:
        loop.evaluate = original
    curve = pd.read_csv(out / "curve.csv")
    metrics = {f"final_{k}": v[0] for k, v in captured.items() if k != "loss"}
    row = {"final_loss": curve["eval_loss"].iloc[-1] if len(curve) else np.nan,
           "final_loss_se": curve["eval_loss_se"].iloc[-1] if len(curve) else np.nan,
           "best_loss": curve["eval_loss"].min() if len(curve) else np.nan,
           **metrics, "status": info["status"], "steps": info["steps_done"],
           "params_nonembedding": info["params_nonembedding"],
           "tokens_per_s": info["steps_done"] * cfg.tokens_per_step / elapsed, "elapsed_s": round(elapsed, 1)}
    (out / "sweep_row.json").write_text(json.dumps(row))
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--data", type=Path, default=ROOT / "results" / "data" / "tokens")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--only", default=None, help="comma-separated variant names: run only these")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    spec = yaml.safe_load(args.sweep.read_text())
    name = args.sweep.stem
    out = args.out or ROOT / "results" / "sweeps" / name
    ensure_data(args.data, spec.get("data") or {"corpus": spec.get("corpus"),
                                                 "vocab_size": (spec.get("tokenizer") or {}).get("vocab_size", 2048)})
    meta = json.loads((args.data / "meta.json").read_text())
    spec["training"] = {k: v for k, v in spec["training"].items() if k not in ("threads", "gpus")}
    base_cfg = TrainConfig.from_dict(spec["training"])
    data = open_tokens(args.data)
    ref = baselines(data.train_counts, data.val, meta["vocab_size"],
                    seq_len=base_cfg.seq_len, eval_tokens=base_cfg.eval_tokens)
    rows = []
    entries = spec["runs"] if "runs" in spec else study_runs(spec)
    for entry in entries:
        for run in expand(entry):
            if args.only and run["variant"] not in args.only.split(","):
                continue
            rid = run_id(run)
            rdir = out / rid
            if (rdir / "sweep_row.json").exists():
                check_still_valid(run, rdir)
                row = json.loads((rdir / "sweep_row.json").read_text())
            else:
                row = train_one(run, spec["training"], args.data, rdir)
            setting = {"variant": run["variant"], "size": run["size"], "lr": run["lr"], "seed": run.get("seed", 0),
                       "tokens": run.get("tokens", base_cfg.tokens),
                       **{f"size.{k}": v for k, v in run["overrides"].items()},
                       **{f"train.{k}": v for k, v in run["training"].items()}}
            rows.append({"run": rid, **setting, **row})
            print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    for key in ("unigram_loss", "masked_unigram_loss", "rtd_base_rate_entropy"):
        table[key] = ref[key]
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "table.csv", index=False, float_format="%.5g")
    if not args.only:
        shutil.copy(out / "table.csv", args.sweep.with_suffix(".csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
