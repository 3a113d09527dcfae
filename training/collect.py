"""Gather finished runs into the learning-curve table (the interface to `analysis/`).

No torch here: this runs in the light analysis jobs. Columns of the table:
variant, objective, size, seed, lr, run, status, budget, budget_tokens, schedule,
params_total, params_nonembedding, step, tokens, flops, flops_6n, loss (= eval loss),
eval_loss_se, train_loss, warmup_tokens, phase (stable / cooldown / cosine), lr_at_step (the
scheduled learning rate at that step), elapsed_s. A wsd run's rows are its stable run's rows
up to the branch followed by its cooldown's; its last row is the (N, D) point of its budget.
A budget stopped by the early-stop rule (status stopped) has only its stable run's rows up to the
stop; the run table's stop_* columns hold the prediction that stopped it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from training import evalset
from training.errors import InputError
from training.tokenizer import SPECIAL_TOKENS

RUN_FIELDS = ("variant", "objective", "size", "seed", "lr", "budget", "schedule", "status", "diverged_step", "steps_done",
              "params_total", "params_nonembedding", "causal_leak", "device", "threads", "elapsed_s",
              "slurm_job_id", "resumed", "torch", "transformers", "corpus_sha256", "epochs", "train_split_tokens",
              "micro_batch_size", "tokens_per_s", "mfu", "peak_flops_source")
# the resolved batch (sequences) and warm-up of a run (training/hparams.py), from its run.json's train_config
TRAIN_FIELDS = ("batch_size", "seq_len", "warmup_tokens")
# a run stopped by the early-stop rule (status stopped): run.json's early_stop, as stop_<field> columns
STOP_FIELDS = ("tokens", "predicted", "lo", "hi", "frontier", "form", "reason")


def baselines(train_counts: np.ndarray, val_tokens, vocab_size: int, *, seq_len: int | None = None,
              eval_tokens: int | None = None, special_ids=None, mask_id: int | None = None) -> dict:
    """Reference losses every objective should beat, on the fixed evaluation set
    (training/evalset.py) of the first `eval_tokens` held-out tokens in windows of `seq_len`
    (None: the whole validation split):

    * chance_loss: ln V, a uniform guess;
    * unigram_loss: the cross-entropy of the held-out tokens under the training split's
      token frequencies (add-one smoothed); a causal LM near it has learned token
      frequencies, not language;
    * masked_unigram_loss (objective `masked`): the same at the fixed 15% masked positions,
      over the non-special tokens (never masked): a masked LM's best score without context;
    * rtd_base_rate_entropy (objective `rtd`): the binary entropy of the fraction of the
      fixed corrupted set's positions that were replaced, the discriminator's best score
      without context (replacements follow token frequencies, so a token's identity does
      not tell); `rtd_replaced_fraction` beside it.

    `special_ids` and `mask_id` default to the project tokenizer's (special tokens first:
    training/tokenizer.py)."""
    counts = np.asarray(train_counts, dtype=float) + 1.0
    p = counts / counts.sum()
    specials = list(range(len(SPECIAL_TOKENS))) if special_ids is None else sorted(special_ids)
    mask_id = SPECIAL_TOKENS.index("[MASK]") if mask_id is None else mask_id
    seq_len = seq_len or len(val_tokens) // 2
    eval_tokens = eval_tokens or len(val_tokens)
    fixed = evalset.build(val_tokens, train_counts, vocab_size, specials, mask_id, seq_len, eval_tokens)
    return {"vocab_size": int(vocab_size), "chance_loss": float(np.log(vocab_size)),
            "unigram_loss": float(-np.log(p[fixed.input_ids]).mean()),
            "masked_unigram_loss": fixed.masked_unigram_loss(train_counts, specials),
            "rtd_base_rate_entropy": fixed.base_rate_entropy(),
            "rtd_replaced_fraction": fixed.replaced_fraction(),
            "eval_tokens_scored": int(fixed.input_ids.size)}


def read_run(run_dir) -> tuple[pd.DataFrame, dict]:
    run_dir = Path(run_dir)
    try:
        info = json.loads((run_dir / "run.json").read_text())
        curve = pd.read_csv(run_dir / "curve.csv")
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read run {run_dir} ({e}); rerun it with `snakemake --forcerun train`") from None
    return curve, info


def collect(run_dirs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(learning-curve table, run table) for the given run folders."""
    curves, runs = [], []
    for run_dir in run_dirs:
        curve, info = read_run(run_dir)
        run_id = info.get("run_id") or f"{info['variant']}/{info['size']}/seed{info['seed']}_lr{info['lr']:g}"
        # the curve's `lr` is the scheduled rate at that step; the table's `lr` is the run's peak
        curve = curve.rename(columns={"eval_loss": "loss", "lr": "lr_at_step"})
        for key in ("variant", "objective", "size", "seed", "lr", "status"):
            curve[key] = info[key]
        curve["run"] = run_id
        curve["budget"] = info.get("budget", "")
        curve["budget_tokens"] = info.get("train_config", {}).get("tokens")
        curve["schedule"] = info.get("schedule", "cosine")
        # the final evaluation's per-batch losses, on its row (analysis pairs runs on the same batches)
        batches = info.get("final_eval_losses")
        curve["eval_batch_losses"] = ""
        if batches and len(curve):
            curve.loc[curve.index[-1], "eval_batch_losses"] = " ".join(f"{x:.6g}" for x in batches)
        curves.append(curve)
        last = curve.iloc[-1] if len(curve) else {}
        stop = info.get("early_stop") or {}
        tc = info.get("train_config", {})
        runs.append({"run": run_id, **{k: info.get(k) for k in RUN_FIELDS}, **{k: tc.get(k) for k in TRAIN_FIELDS},
                     **{f"stop_{k}": stop.get(k) for k in STOP_FIELDS},
                     **{k: last.get(k, float("nan")) for k in ("tokens", "flops", "flops_6n")},
                     "final_loss": last.get("loss", float("nan")),
                     "size_config": json.dumps(info.get("size_config", {}), sort_keys=True)})
    table = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    front = ["variant", "objective", "size", "seed", "lr", "run", "status", "budget", "budget_tokens", "schedule",
             "params_total", "params_nonembedding",
             "step", "tokens", "flops", "flops_6n", "loss", "eval_loss_se", "train_loss", "warmup_tokens"]
    table = table[[c for c in front if c in table] + [c for c in table if c not in front]]
    return table, pd.DataFrame(runs)
