"""Training throughput of every variant: our loop vs the Hugging Face `transformers.Trainer`.

For each variant at one preset (default `l`) this measures, on the KJV corpus tokenised
with the project's BPE (training.corpus / training.tokenizer):

* ours: the training loop's own step (`training.loop.train_step` on a Session: batches drawn
  by `training.data.train_batch`, lr set per step, micro-batches accumulated, grad-norm
  clipping, fused AdamW); tokens/s = batch tokens / median step time after a few warm-up
  steps (both sides use the median, which resists load bursts from other processes);
* MFU: accounted model FLOPs (3 x forward, models/accounting.py) per second over the
  device's dense peak (training.device.peak_flops: this CPU's fp32 matmul peak measured in
  the same run, a GPU's data-sheet bf16 peak); HFU also
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

On a GPU (`--device cuda`): bf16 autocast, torch.compile, the loop's micro-batching; the baseline is a
minimal reference loop in the same process (the same model, compiled, the same batches already on the
device, fused AdamW: `time_reference`), and the peak GPU memory of our step is printed. GPT-2 124M
(12 x 768, context 1024, GPT-2's 50,304-wide head) and the same shape for every variant:

    python benchmarks/train_throughput.py --device cuda --d-model 768 --n-layer 12 --n-head 12 --d-ff 3072 \
        --seq-len 1024 --batch 16 --vocab-model 50304 --steps 30 --warmup 10

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

def loop_session(name: str, model, size, acc, ctx, tokens, args, device: torch.device):
    """A training.loop Session around `model`: what `loop.train_step` needs (the loop's optimiser, compiled
    loss, micro-batching, batches from `tokens`), without a study's data folder."""
    from training import loop

    cfg = loop.TrainConfig(lr=args.lr, batch_size=args.batch, seq_len=args.seq_len, tokens=10**12,
                           compile=args.compile, micro_batch=args.micro_batch, warmup_fraction=0.0)
    model = model.to(device)
    s = loop.Session(variant=name, size_name=args.preset, size=size, spec=get_variant(name), account=acc, cfg=cfg,
                     device=device, model=model, optimizer=loop.make_optimizer(model, cfg),
                     generator=torch.Generator(device=device).manual_seed(0),
                     loss_fn=loop.compiled_loss(model.training_loss, device, args.compile), train_tokens=tokens, evals=[],
                     meta={}, key="", threads=torch.get_num_threads())
    s.micro_batch = loop.resolve_micro_batch(s)
    return s


def time_ours(name, model, size, acc, ctx, tokens, args, device) -> float:
    """Median seconds per optimiser step of the training loop's own `train_step` (batches drawn from the
    token array, lr set per step, micro-batches accumulated, grad-norm clip, fused AdamW), over the steps
    after `args.warmup` (the median resists bursts of load from other processes)."""
    from training import loop
    from training.device import synchronize

    s = loop_session(name, model, size, acc, ctx, tokens, args, device)
    stamps = []
    for _ in range(args.warmup + args.steps):
        assert loop.train_step(s), "the loss diverged"
        synchronize(device)
        stamps.append(time.perf_counter())
    return float(np.median(np.diff(stamps[args.warmup - 1:])))


# -- a minimal reference loop ------------------------------------------------------------------------

def time_reference(name, model, tokens, args, device) -> float:
    """Median seconds per step of the plainest PyTorch loop on the same model and batches: batches made
    beforehand and already on the device, `torch.compile` where the loop compiles, bf16 autocast on CUDA,
    fused AdamW over all parameters, grad-norm clip. gpt2 and bert_causal through their Hugging Face
    forward(labels); the other variants have no single HF forward and run their `training_loss`."""
    from training.data import train_batch
    from training.device import autocast, synchronize

    model = model.to(device)
    if name in ("gpt2", "bert_causal"):
        hf = model.hf
        step_loss = lambda x, g: hf(input_ids=x, labels=x).loss
    else:
        step_loss = model.training_loss
    compile_on = args.compile is True or (args.compile == "auto" and device.type == "cuda")
    fn = torch.compile(step_loss) if compile_on else step_loss
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    gen = torch.Generator(device=device).manual_seed(0)
    batches = [train_batch(tokens, k, args.batch, args.seq_len, 0).to(device) for k in range(1, args.warmup + args.steps + 1)]
    model.train()
    stamps = []
    for x in batches:
        with autocast(device):
            loss = fn(x, gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        synchronize(device)
        stamps.append(time.perf_counter())
    return float(np.median(np.diff(stamps[args.warmup - 1:])))


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
    if name in ("gpt2", "bert_causal"):
        return model.hf, _causal_collator, "HF forward(labels)"
    if name == "bert_mlm":
        from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=tok.id_to_token(ctx.pad_id),
                                       mask_token=tok.id_to_token(ctx.mask_id))
        return model.hf, DataCollatorForLanguageModeling(fast, mlm=True, mlm_probability=0.15), "HF forward + MLM collator"
    # transformer_xl (own code), electra (two HF models) and reformer (HF's model with our causal LSH layers,
    # whose hash rotations come from the run's generator) have no single HF forward
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
    ap.add_argument("--d-model", type=int, help="override the preset's width (with --n-layer, --n-head, --d-ff)")
    ap.add_argument("--n-layer", type=int)
    ap.add_argument("--n-head", type=int)
    ap.add_argument("--d-ff", type=int)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--micro-batch", default=None, help="sequences per forward (an integer or auto); default: the batch")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=2048, help="the BPE the KJV is tokenised with")
    ap.add_argument("--vocab-model", type=int, default=None,
                    help="the models' vocabulary if larger (e.g. 50304 for GPT-2's head; the ids stay the BPE's)")
    ap.add_argument("--verses", type=int, default=6000, help="KJV verses to tokenise")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--compile", default="auto", type=lambda x: {"true": True, "false": False}.get(x, x),
                    help="auto (on CUDA), true or false: as training.compile")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate ours / the baseline this many times and keep each side's best (noisy machines)")
    ap.add_argument("--baseline", choices=["trainer", "reference", "none"], default=None,
                    help="trainer: transformers.Trainer (default on cpu); reference: a minimal compiled PyTorch loop "
                         "(default on cuda)")
    ap.add_argument("--no-trainer", action="store_true", help="same as --baseline none")
    args = ap.parse_args(argv)
    if args.micro_batch not in (None, "auto"):
        args.micro_batch = int(args.micro_batch)
    baseline = "none" if args.no_trainer else (args.baseline or ("reference" if args.device == "cuda" else "trainer"))

    import logging
    import transformers
    transformers.logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    from training.device import device_name, peak_flops, pick_device

    pick_device(args.device)  # TF32 matmuls on CUDA, as the training loop sets them
    peak, source = peak_flops(device)
    tokens, ids, tok = corpus_tokens(args.vocab, args.verses)
    ctx = ModelContext(vocab_size=args.vocab_model or tok.get_vocab_size(), seq_len=args.seq_len, **ids)
    batches = loop_batches(tokens, args.warmup + args.steps, args.batch, args.seq_len)
    n_tok = args.batch * args.seq_len  # per step; times below are median seconds per step
    print(f"{device_name(device)}: peak {peak / 1e12:.3g} TFLOP/s ({source}); vocab {ctx.vocab_size}, "
          f"batch {args.batch} x {args.seq_len}, {args.steps} timed steps after {args.warmup} warm-up; baseline {baseline}")

    overrides = {k: v for k, v in (("d_model", args.d_model), ("n_layer", args.n_layer), ("n_head", args.n_head),
                                   ("d_ff", args.d_ff)) if v}
    rows = []
    header = (f"{'variant':15s} {'shape':>18s} {'N':>11s} {'ours tok/s':>10s} {'MFU':>6s} {'HFU':>6s} "
              f"{'peak GB':>7s} {'base tok/s':>10s} {'ratio':>6s}  baseline")
    print(header)
    for name in args.variants or models.variant_names():
        v = get_variant(name)
        try:
            size = resolve_size(v, args.preset, ctx, **overrides)
        except Exception as e:  # a shape the variant cannot take (e.g. the Reformer's chunking)
            print(f"{name:15s} skipped: {str(e).splitlines()[0]}")
            continue
        acc = v.account(size, ctx)
        t_ours, t_theirs, how = math.inf, math.inf, "-"
        for _ in range(args.rounds):
            torch.manual_seed(0)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t_ours = min(t_ours, time_ours(name, v.build(size, ctx), size, acc, ctx, tokens, args, device))
            mem = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else float("nan")
            torch.manual_seed(0)
            if baseline == "trainer":
                t, how = time_trainer(name, v.build(size, ctx), batches, args.warmup, args.lr, tok, ctx)
                t_theirs = min(t_theirs, t)
            elif baseline == "reference":
                t_theirs = min(t_theirs, time_reference(name, v.build(size, ctx), tokens, args, device))
                how = "minimal loop" + (", compiled" if args.compile is True or (args.compile == "auto" and device.type == "cuda") else "")
        ours = n_tok / t_ours
        theirs = n_tok / t_theirs if baseline != "none" else float("nan")
        mfu = 3 * acc.forward_flops_per_token * ours / peak
        hfu = acc.train_flops_per_token * ours / peak
        ratio = ours / theirs
        shape = f"d{size.d_model} L{size.n_layer} H{size.n_head} ff{size.d_ff}"
        rows.append((name, shape, acc.params_nonembedding, ours, mfu, hfu, mem, theirs, ratio, how))
        print(f"{name:15s} {shape:>18s} {acc.params_nonembedding:11,d} {ours:10.0f} {mfu:6.1%} {hfu:6.1%} "
              f"{mem:7.2f} {theirs:10.0f} {ratio:6.2f}  {how}", flush=True)
    return rows


if __name__ == "__main__":
    main()
