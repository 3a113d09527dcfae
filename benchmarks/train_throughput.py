"""Training throughput of every variant: our loop vs the Hugging Face `transformers.Trainer`.

For each variant at one preset (default `l`) this measures, on the KJV corpus tokenised
with the project's BPE (training.corpus / training.tokenizer):

* ours: the training loop's step (training.loop: `make_optimizer`, lr set per step,
  `model.training_loss`, backward, grad-norm clipping, AdamW step) on the loop's batches
  (`training.data.train_batch`); tokens/s = batch tokens / median step time after a few
  warm-up steps (both sides use the median, which resists load bursts from other processes);
* MFU: accounted model FLOPs (3 x forward, models/accounting.py) per second over this
  machine's fp32 matmul peak, measured in the same run with a big `torch.mm`; HFU also
  charges Reformer's reversible recomputation (`Accounting.train_flops_per_token`);
* Trainer: the same model on the same windows trained by `transformers.Trainer` with the
  same optimiser settings: the HF model's own forward with labels for gpt2, bert_causal,
  reformer; BertForMaskedLM + `DataCollatorForLanguageModeling` (15% masking, the HF head
  on every position) for bert_mlm; transformer_xl (own code) and electra (two HF models)
  have no single HF forward, so the Trainer drives `training_loss` through an adapter;
* ratio = ours / Trainer tokens/s (goal >= 1.0).

    python benchmarks/train_throughput.py                 # < 3 min on 2 threads
    python benchmarks/train_throughput.py --steps 50 --variants gpt2 reformer
    python benchmarks/train_throughput.py --vocab 4096 --seq-len 256 --batch 16 --d-model 128 --n-layer 4

Not a test: numbers depend on the machine and its load (other processes on the cores).
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]

import models  # noqa: E402
from models import ModelContext, get_variant, resolve_size  # noqa: E402


# -- machine peak ------------------------------------------------------------------------------

def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 FLOP/s of an n x n x n torch.mm on the current thread setting."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


# -- data -------------------------------------------------------------------------------------

def corpus_tokens(vocab: int, n_verses: int):
    """(token array, special ids) from the KJV with the project's BPE."""
    from training.corpus import kjv_units
    from training.tokenizer import encode_documents, special_ids, train_tokenizer

    verses = kjv_units()[:n_verses]
    docs = [" ".join(verses[i:i + 10]) for i in range(0, len(verses), 10)]
    tok = train_tokenizer(docs, vocab)
    return encode_documents(tok, docs).astype(np.int64), special_ids(tok), tok


def loop_batches(tokens, n_steps: int, batch: int, seq_len: int, seed: int = 0) -> list[torch.Tensor]:
    try:
        from training.data import train_batch
    except ImportError:  # minimal equivalent
        def train_batch(tokens, step, batch_size, seq_len, seed):
            rng = np.random.default_rng([seed, step])
            starts = rng.integers(0, len(tokens) - seq_len + 1, size=batch_size)
            return torch.from_numpy(np.stack([tokens[s:s + seq_len] for s in starts]).astype(np.int64))
    return [train_batch(tokens, step, batch, seq_len, seed) for step in range(1, n_steps + 1)]


# -- ours ---------------------------------------------------------------------------------------

def time_ours(model, batches, warmup: int, lr: float) -> float:
    """Median seconds per step of the training loop's step, over the steps after `warmup`
    (the median resists bursts of load from other processes on the cores)."""
    try:
        from training.loop import TrainConfig, make_optimizer
        cfg = TrainConfig(lr=lr)
        opt, clip = make_optimizer(model, cfg), cfg.grad_clip
    except ImportError:
        opt, clip = torch.optim.AdamW(model.unique_parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1), 1.0
    gen = torch.Generator().manual_seed(0)
    model.train()
    stamps = []
    for i, x in enumerate(batches):
        for group in opt.param_groups:
            group["lr"] = lr
        loss = model.training_loss(x, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.unique_parameters(), clip)
        opt.step()
        stamps.append(time.perf_counter())
    return float(np.median(np.diff(stamps[warmup - 1:])))


# -- HF Trainer baseline -------------------------------------------------------------------------

class _Rows(torch.utils.data.Dataset):
    def __init__(self, batches):
        self.rows = torch.cat(batches)  # (N, T)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return {"input_ids": self.rows[i]}


class _LossAdapter(nn.Module):
    """Lets the Trainer drive an ArchModel that has no single HF forward (TXL, ELECTRA)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.gen = torch.Generator().manual_seed(0)

    def forward(self, input_ids, labels=None, **kwargs):
        return {"loss": self.model.training_loss(input_ids, self.gen)}


def _causal_collator(features):
    x = torch.stack([f["input_ids"] for f in features])
    return {"input_ids": x, "labels": x.clone()}


def trainer_setup(name: str, model, tok, ctx):
    """(module the Trainer trains, data collator, how it is driven)."""
    if name in ("gpt2", "bert_causal", "reformer"):
        return model.hf, _causal_collator, "HF forward(labels)"
    if name == "bert_mlm":
        from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=tok.id_to_token(ctx.pad_id),
                                       mask_token=tok.id_to_token(ctx.mask_id))
        return model.hf, DataCollatorForLanguageModeling(fast, mlm=True, mlm_probability=0.15), "HF forward + MLM collator"
    return _LossAdapter(model), _causal_collator, "adapter(training_loss)"


def time_trainer(name, model, batches, warmup: int, lr: float, tok, ctx) -> tuple[float, str]:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from transformers.trainer_callback import PrinterCallback

    module, collator, how = trainer_setup(name, model, tok, ctx)
    stamps = []

    class Clock(TrainerCallback):  # step end to step end: includes data loading and collation
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=batches[0].size(0), max_steps=len(batches),
            learning_rate=lr, lr_scheduler_type="constant", weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95,
            max_grad_norm=1.0, logging_strategy="no", save_strategy="no", eval_strategy="no", report_to=[],
            disable_tqdm=True, use_cpu=True, dataloader_num_workers=0, dataloader_pin_memory=False, seed=0,
        )
        trainer = Trainer(model=module, args=args, train_dataset=_Rows(batches), data_collator=collator,
                          callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return float(np.median(np.diff(stamps[warmup - 1:]))), how


# -- main ---------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="*", default=None, help="default: all registered")
    ap.add_argument("--preset", default="l")
    ap.add_argument("--d-model", type=int, help="override the preset's width (with --n-layer, --n-head)")
    ap.add_argument("--n-layer", type=int)
    ap.add_argument("--n-head", type=int)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--verses", type=int, default=6000, help="KJV verses to tokenise")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate ours / Trainer this many times and keep each side's best (noisy machines)")
    ap.add_argument("--no-trainer", action="store_true", help="skip the HF Trainer baseline")
    args = ap.parse_args(argv)

    import logging
    import transformers
    transformers.logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)

    peak = matmul_peak()
    tokens, ids, tok = corpus_tokens(args.vocab, args.verses)
    ctx = ModelContext(vocab_size=tok.get_vocab_size(), seq_len=args.seq_len, **ids)
    batches = loop_batches(tokens, args.warmup + args.steps, args.batch, args.seq_len)
    n_tok = args.batch * args.seq_len  # per step; times below are median seconds per step
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s ({args.threads} threads); vocab {ctx.vocab_size}, "
          f"batch {args.batch} x {args.seq_len}, {args.steps} timed steps after {args.warmup} warm-up")

    overrides = {k: v for k, v in (("d_model", args.d_model), ("n_layer", args.n_layer), ("n_head", args.n_head)) if v}
    rows = []
    header = (f"{'variant':15s} {'shape':>14s} {'N':>9s} {'ours tok/s':>10s} {'MFU':>6s} {'HFU':>6s} "
              f"{'Trainer tok/s':>13s} {'ratio':>6s}  Trainer drives")
    print(header)
    for name in args.variants or models.variant_names():
        v = get_variant(name)
        size = resolve_size(v, args.preset, ctx, **overrides)
        acc = v.account(size, ctx)
        t_ours, t_theirs, how = math.inf, math.inf, "-"
        for _ in range(args.rounds):
            torch.manual_seed(0)
            t_ours = min(t_ours, time_ours(v.build(size, ctx), batches, args.warmup, args.lr))
            if not args.no_trainer:
                torch.manual_seed(0)
                t, how = time_trainer(name, v.build(size, ctx), batches, args.warmup, args.lr, tok, ctx)
                t_theirs = min(t_theirs, t)
        ours = n_tok / t_ours
        theirs = n_tok / t_theirs if not args.no_trainer else float("nan")
        mfu = 3 * acc.forward_flops_per_token * ours / peak
        hfu = acc.train_flops_per_token * ours / peak
        ratio = ours / theirs if not args.no_trainer else float("nan")
        shape = f"d{size.d_model} L{size.n_layer} H{size.n_head}"
        rows.append((name, shape, acc.params_nonembedding, ours, mfu, hfu, theirs, ratio, how))
        print(f"{name:15s} {shape:>14s} {acc.params_nonembedding:9,d} {ours:10.0f} {mfu:6.1%} {hfu:6.1%} "
              f"{theirs:13.0f} {ratio:6.2f}  {how}", flush=True)
    return rows


if __name__ == "__main__":
    main()
