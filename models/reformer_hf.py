"""Reformer (Kitaev et al., 2020) as a causal LM: `transformers.ReformerModelWithLMHead`
(variant `reformer_hf`; the leak-free variant `reformer` in models/reformer.py reuses this
model and replaces its LSH attention).

`is_decoder=True`, layers alternating local (chunked) attention and LSH attention
(`attn_layers`, cycled over n_layer), reversible residual layers (activations are
recomputed in the backward pass), axial position embeddings, and the untied LM head over
the concatenated 2*d reversible streams. Randomly initialised from a config, no dropout.

Causality: local attention is exactly causal. Causal LSH attention is not: which past keys
share a sorted chunk with a query depends on the hash buckets of *all* tokens, future ones
included, so changing late tokens moves earlier logits a little. `causal_leak` measures it
(the loop writes it to run.json at evaluation points); it is not hidden.

Randomness of the hashing (HF draws random rotations from torch's global RNG):
* training: each call seeds the rotations from the passed generator (a new hash per step,
  reproducible given the generator); evaluation: from the fixed size field `hash_seed`,
  so evaluation losses and `causal_leak` are deterministic;
* both run inside `torch.random.fork_rng`, and HF's per-layer dropout reseeding
  (`torch.seed()` / `torch.manual_seed()` on the global RNG in every forward and in the
  reversible backward) is disabled or fenced, so a Reformer step leaves the global RNG as
  it found it. Dropout is 0, so those seeds have nothing to do.

Size fields (defaults in DEFAULTS; None = derived from d_model / seq_len, see `settings`):
attn_layers, lsh_chunk_length, local_chunk_length, num_buckets, num_hashes,
lsh_num_chunks_before/after, local_num_chunks_before/after, axial_pos_shape,
axial_pos_embds_dim, hash_seed.
"""
from __future__ import annotations

import math
from functools import reduce
from operator import mul

import torch
from transformers import ReformerConfig, ReformerModelWithLMHead

from models import accounting, presets
from models.base import ArchModel
from models.registry import ConfigError, ModelContext, Size, Variant, register

# the shared size ladder (models/presets.py)
PRESETS = presets.ladder()
DEFAULTS = dict(
    attn_layers=("local", "lsh"),  # cycled over n_layer
    lsh_chunk_length=32,
    local_chunk_length=32,
    num_buckets=4,  # int, even
    num_hashes=1,
    lsh_num_chunks_before=1,
    lsh_num_chunks_after=0,
    local_num_chunks_before=1,
    local_num_chunks_after=0,
    axial_pos_shape=None,  # None: (a, seq_len // a), a the largest divisor of seq_len <= sqrt
    axial_pos_embds_dim=None,  # None: (d // 4, d - d // 4)
    hash_seed=0,  # evaluation hashing seed
)


def settings(size: Size, ctx: ModelContext) -> dict:
    """The size's Reformer fields with the derived defaults filled in."""
    s = {k: size.get(k, v) for k, v in DEFAULTS.items()}
    if isinstance(s["attn_layers"], str):
        s["attn_layers"] = tuple(x.strip() for x in s["attn_layers"].split(","))
    s["layers"] = [s["attn_layers"][i % len(s["attn_layers"])] for i in range(size.n_layer)]
    T, d = ctx.seq_len, size.d_model
    if s["axial_pos_shape"] is None:
        a = max(f for f in range(1, int(math.isqrt(T)) + 1) if T % f == 0)
        s["axial_pos_shape"] = (a, T // a)
    if s["axial_pos_embds_dim"] is None:
        s["axial_pos_embds_dim"] = (d // 4, d - d // 4)
    s["axial_pos_shape"] = tuple(s["axial_pos_shape"])
    s["axial_pos_embds_dim"] = tuple(s["axial_pos_embds_dim"])
    return s


def check(size: Size, ctx: ModelContext) -> None:
    """Reformer's constraints, as one-line ConfigErrors (HF would assert or fail mid-training)."""
    s = settings(size, ctx)
    bad = sorted(set(s["attn_layers"]) - {"local", "lsh"})
    if bad or not s["attn_layers"]:
        raise ConfigError(f"reformer: attn_layers={s['attn_layers']!r}; allowed entries: 'local', 'lsh'")
    T, d = ctx.seq_len, size.d_model
    prod = reduce(mul, s["axial_pos_shape"], 1)
    if prod != T:
        raise ConfigError(
            f"reformer: axial_pos_shape={s['axial_pos_shape']} multiplies to {prod}, but training needs "
            f"it to equal seq_len={T}"
        )
    if sum(s["axial_pos_embds_dim"]) != d:
        raise ConfigError(
            f"reformer: axial_pos_embds_dim={s['axial_pos_embds_dim']} sums to {sum(s['axial_pos_embds_dim'])}, "
            f"but must sum to d_model={d}"
        )
    chunks = [s[f"{kind}_chunk_length"] for kind in sorted(set(s["layers"]))]
    lcm = math.lcm(*chunks)
    if T % lcm:
        raise ConfigError(
            f"reformer: seq_len={T} is not a multiple of the lcm {lcm} of the chunk lengths "
            f"{dict(zip(sorted(set(s['layers'])), chunks))}"
        )
    if not isinstance(s["num_buckets"], int) or s["num_buckets"] < 2 or s["num_buckets"] % 2:
        raise ConfigError(f"reformer: num_buckets={s['num_buckets']!r} must be an even integer >= 2")
    for kind in ("lsh", "local"):
        if s[f"{kind}_num_chunks_after"] != 0:
            raise ConfigError(
                f"reformer: {kind}_num_chunks_after={s[f'{kind}_num_chunks_after']} must be 0 "
                "for a causal LM (it would attend to future chunks)"
            )
    if not isinstance(s["num_hashes"], int) or s["num_hashes"] < 1:
        raise ConfigError(f"reformer: num_hashes={s['num_hashes']!r} must be a positive integer")


class ReformerHF(ArchModel):
    objective = "causal"

    def __init__(self, size: Size, ctx: ModelContext):
        super().__init__(size, ctx)
        check(size, ctx)
        s = self.settings = settings(size, ctx)
        config = ReformerConfig(
            vocab_size=ctx.vocab_size,
            hidden_size=size.d_model,
            num_attention_heads=size.n_head,
            attention_head_size=size.head_dim,
            num_hidden_layers=size.n_layer,
            attn_layers=s["layers"],
            feed_forward_size=size.d_ff,
            hidden_act="gelu",
            is_decoder=True,
            max_position_embeddings=ctx.seq_len,
            axial_pos_embds=True,
            axial_pos_shape=s["axial_pos_shape"],
            axial_pos_embds_dim=s["axial_pos_embds_dim"],
            lsh_attn_chunk_length=s["lsh_chunk_length"],
            local_attn_chunk_length=s["local_chunk_length"],
            num_buckets=s["num_buckets"],
            num_hashes=s["num_hashes"],
            lsh_num_chunks_before=s["lsh_num_chunks_before"],
            lsh_num_chunks_after=s["lsh_num_chunks_after"],
            local_num_chunks_before=s["local_num_chunks_before"],
            local_num_chunks_after=s["local_num_chunks_after"],
            hash_seed=None,  # HF would call torch.manual_seed(hash_seed) in every layer
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            lsh_attention_probs_dropout_prob=0.0,
            local_attention_probs_dropout_prob=0.0,
            pad_token_id=ctx.pad_id,
            eos_token_id=ctx.eos_id,
            tie_word_embeddings=False,
        )
        self.hf = ReformerModelWithLMHead(config)
        for layer in self.hf.reformer.encoder.layers:
            _fence_global_rng(layer)

    def _hashed(self, seed: int, fn):
        """Run fn() with the hashing rotations drawn from torch's RNG seeded with `seed`,
        restoring the global RNG (CPU and, on a GPU, the model's device) afterwards."""
        device = self.hf.lm_head.decoder.weight.device
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return fn()

    def logits(self, input_ids):
        """Logits (B, T, V) with the evaluation hash seed."""
        return self._hashed(self.settings["hash_seed"], lambda: self.hf(input_ids=input_ids).logits)

    def training_loss(self, input_ids, generator=None):
        device = generator.device if generator is not None else "cpu"
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device))  # random hashing per step
        return self._hashed(seed, lambda: self.hf(input_ids=input_ids, labels=input_ids).loss)

    def eval_loss(self, input_ids, generator=None):
        return self._hashed(self.settings["hash_seed"], lambda: self.hf(input_ids=input_ids, labels=input_ids).loss)

    @torch.no_grad()
    def causal_leak(self, input_ids, n_rows: int = 2, n_perturbations: int = 4):
        """Max |logit change| at positions < 3T/4 when the last quarter of the tokens of the
        first n_rows sequences is replaced by random tokens (n_perturbations fixed-seed
        draws; evaluation hashing). 0.0 for exactly causal attention."""
        was_training = self.training
        self.eval()
        x = input_ids[:n_rows]
        T = x.size(1)
        cut = T - T // 4
        base = self.logits(x)[:, :cut]  # (n_rows, cut, V)
        leak = 0.0
        for p in range(n_perturbations):
            g = torch.Generator(device=x.device).manual_seed(p)
            perturbed = x.clone()
            perturbed[:, cut:] = torch.randint(0, self.ctx.vocab_size, (x.size(0), T - cut), generator=g,
                                               device=x.device)
            leak = max(leak, (self.logits(perturbed)[:, :cut] - base).abs().max().item())
        self.train(was_training)
        return float(leak)

    def embedding_parameters(self):
        e = self.hf.reformer.embeddings
        # the untied 2d x V head weight counts with the embeddings (models/accounting.py)
        return [e.word_embeddings.weight, *e.position_embeddings.weights, self.hf.lm_head.decoder.weight]


def _keep_rng(seed):
    """Stands in for torch.manual_seed inside HF's reversible backward pass: leaves the RNG as it is."""
    return torch.random.default_generator


def _fence_global_rng(layer) -> None:
    """Stop a HF ReformerLayer from reseeding torch's global RNG (it does so for dropout,
    which is 0 here): constant seeds in the forward, no reseeding in the reversible backward pass."""
    def no_reseed_attention():
        layer.attention_seed = 0

    def no_reseed_feed_forward():
        layer.feed_forward_seed = 0

    backward_pass = layer.backward_pass

    def fenced_backward_pass(*args, **kwargs):
        # HF reseeds the global RNG twice per layer here (torch.manual_seed: on a machine without CUDA
        # each call also formats a stack trace for CUDA's lazy seeding, ~7% of a tiny model's step);
        # with dropout 0 nothing draws from it, so the reseeding is skipped and the RNG is untouched
        original = torch.manual_seed
        torch.manual_seed = _keep_rng
        try:
            return backward_pass(*args, **kwargs)
        finally:
            torch.manual_seed = original

    layer._init_attention_seed = no_reseed_attention
    layer._init_feed_forward_seed = no_reseed_feed_forward
    layer.backward_pass = fenced_backward_pass


def account(size: Size, ctx: ModelContext):
    """Parameters and FLOPs (models/accounting.py), handed its resolved Reformer fields."""
    return accounting.reformer_hf(size, ctx, settings(size, ctx))


register(Variant(
    name="reformer_hf",
    objective="causal",
    build=ReformerHF,
    presets=PRESETS,
    source_file=__file__,
    description="Reformer (transformers.ReformerModelWithLMHead): local + HF causal LSH attention (leaks a "
                "little through the bucket sort, measured per run), reversible layers",
    account=account,
    size_fields=tuple(DEFAULTS),
    defaults=DEFAULTS,
    check=check,
))
