"""The size scans side by side: non-embedding parameters N of every variant's presets
(matched to gpt2's where the shapes allow), accounted training FLOPs per token, and with
--time a measured training speed and the estimated wall time of the default study.

    python -m models.sizes                      # matched-N table at vocab 2048, context 128
    python -m models.sizes --time --tokens 1e6  # + tokens/s (batch 8 x 128) and study minutes
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from models import ModelContext, get_variant, resolve_size, variant_names

STUDY_PRESETS = ("xs", "s", "m", "l")


def table(ctx: ModelContext, presets=STUDY_PRESETS) -> list[dict]:
    rows = []
    ref = {p: get_variant("gpt2").account(resolve_size("gpt2", p, ctx), ctx) for p in presets}
    for name in variant_names():
        v = get_variant(name)
        for p in presets:
            if p not in v.presets:
                continue
            size = resolve_size(v, p, ctx)
            acc = v.account(size, ctx)
            rows.append(dict(
                variant=name, preset=p, d_model=size.d_model, n_layer=size.n_layer, n_head=size.n_head,
                d_ff=size.d_ff, N=acc.params_nonembedding, params_total=acc.params_total,
                N_vs_gpt2=acc.params_nonembedding / ref[p].params_nonembedding,
                train_flops_per_token=acc.train_flops_per_token,
                flops_vs_6N=acc.train_flops_per_token / (6 * acc.params_nonembedding),
            ))
    return rows


def step_seconds(model, opt, ctx: ModelContext, batch: int = 8, steps: int = 6, clip: float | None = None) -> float:
    """Median seconds of one training step (forward, backward, gradient clipping when `clip`, the optimiser's
    step) on real-shaped random ids, after one warm-up step: the one step timer (`archscale sizes --time`
    and the planner's probe, study/plan.py)."""
    gen = torch.Generator().manual_seed(0)
    times = []
    for i in range(steps + 1):
        x = torch.randint(4, ctx.vocab_size, (batch, ctx.seq_len), generator=gen)  # (B, T)
        t0 = time.perf_counter()
        loss = model.training_loss(x, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.unique_parameters(), clip)
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_speed(name: str, preset: str, ctx: ModelContext, batch: int = 8, steps: int = 6) -> float:
    """Training tokens/s of a plain AdamW loop (step_seconds)."""
    v = get_variant(name)
    torch.manual_seed(0)
    model = v.build(resolve_size(v, preset, ctx), ctx)
    model.train()
    opt = torch.optim.AdamW(model.unique_parameters(), lr=1e-3)
    return batch * ctx.seq_len / step_seconds(model, opt, ctx, batch, steps)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--time", action="store_true", help="measure tokens/s per preset (slow: ~2 min)")
    ap.add_argument("--tokens", type=float, default=1e6, help="tokens per run for the study estimate")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ctx = ModelContext(vocab_size=args.vocab, seq_len=args.seq_len, pad_id=0, bos_id=1, eos_id=2, mask_id=3)

    rows = table(ctx)
    head = f"{'variant':15s} {'preset':6s} {'d':>4s} {'L':>2s} {'H':>2s} {'d_ff':>5s} {'N':>9s} {'N/gpt2':>7s} {'total':>9s} {'trainF/tok':>10s} {'F/6N':>5s}"
    if args.time:
        head += f" {'tok/s':>7s} {'min':>5s}"
    print(f"matched-N table (vocab {ctx.vocab_size}, context {ctx.seq_len}); N = params_nonembedding")
    print(head)
    minutes: dict[str, float] = {}
    for r in rows:
        line = (f"{r['variant']:15s} {r['preset']:6s} {r['d_model']:4d} {r['n_layer']:2d} {r['n_head']:2d} "
                f"{r['d_ff']:5d} {r['N']:9,d} {r['N_vs_gpt2']:7.2f} {r['params_total']:9,d} "
                f"{r['train_flops_per_token']:10.3g} {r['flops_vs_6N']:5.2f}")
        if args.time:
            tps = measure_speed(r["variant"], r["preset"], ctx)
            m = args.tokens / tps / 60
            minutes[r["variant"]] = minutes.get(r["variant"], 0.0) + m
            line += f" {tps:7.0f} {m:5.1f}"
        print(line, flush=True)
    print()
    for name in variant_names():
        ns = [r["N"] for r in rows if r["variant"] == name]
        print(f"{name:15s} N spans {min(ns):,} .. {max(ns):,} = {math.log10(max(ns) / min(ns)):.2f} decades"
              + (f"; {minutes[name]:.1f} min for {len(ns)} runs at {args.tokens:.2g} tokens" if args.time else ""))
    if args.time:
        print(f"total: {sum(minutes.values()):.1f} min (model compute only, {args.threads} threads)")


if __name__ == "__main__":
    main()
