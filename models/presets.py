"""The size ladder every variant shares (sizes are data, as in litgpt's config.py): one table.

Non-embedding parameters N of gpt2 (vocab 2048, context 128) in comments; each variant's scan is
matched to gpt2's N as closely as its blocks allow (`python -m models.sizes` prints the table).
Below `s` the ladder is dense: at the compute a 2-core study can afford, the compute-optimal
model is a few thousand to a few tens of thousands of non-embedding parameters (the LM head over
the vocabulary costs most of a tiny model's FLOPs), and an IsoFLOP budget needs sizes on both
sides of its optimum. `xs` and below use d_ff = 3d so that the ladder spans its decades evenly.
"""
from __future__ import annotations

LADDER = {
    "xxxs": dict(d_model=16, n_layer=1, n_head=2, d_ff=48),  # 2.8k
    "xxs": dict(d_model=16, n_layer=2, n_head=2, d_ff=48),   # 5.5k
    "xs": dict(d_model=32, n_layer=2, n_head=2, d_ff=96),    # 21k
    "xsm": dict(d_model=48, n_layer=2, n_head=4, d_ff=192),  # 57k (between xs and s)
    "s": dict(d_model=64, n_layer=2, n_head=4, d_ff=256),    # 100k
    "m": dict(d_model=96, n_layer=3, n_head=4, d_ff=384),    # 336k
    "l": dict(d_model=128, n_layer=4, n_head=4, d_ff=512),   # 793k
    "xl": dict(d_model=192, n_layer=6, n_head=6, d_ff=768),  # 2.7M
    # The GPU ladder: ~1M to ~300M non-embedding parameters in steps of 1.7-3.4x, shapes of the GPT-2 and
    # Pythia families (Biderman et al. 2023: 14M = 128 x 6, 70M = 512 x 6, 410M = 1024 x 24; GPT-2 small
    # 768 x 12), heads of 64 dimensions, d_ff = 4d. N here at context 1024 (gpt2; 12 L d^2 + biases):
    "g1m": dict(d_model=128, n_layer=6, n_head=2, d_ff=512),        # 1.2M (Pythia-14M's blocks)
    "g3m": dict(d_model=256, n_layer=4, n_head=4, d_ff=1024),       # 3.2M
    "g10m": dict(d_model=384, n_layer=6, n_head=6, d_ff=1536),      # 10.6M
    "g20m": dict(d_model=512, n_layer=6, n_head=8, d_ff=2048),      # 18.9M (Pythia-70M's blocks)
    "g50m": dict(d_model=640, n_layer=10, n_head=10, d_ff=2560),    # 49M
    "g85m": dict(d_model=768, n_layer=12, n_head=12, d_ff=3072),    # 85M (GPT-2 small's blocks)
    "g150m": dict(d_model=1024, n_layer=12, n_head=16, d_ff=4096),  # 151M
    "g300m": dict(d_model=1024, n_layer=24, n_head=16, d_ff=4096),  # 302M (Pythia-410M's, GPT-2 medium's blocks)
}
GPU_SIZES = ("g1m", "g3m", "g10m", "g20m", "g50m", "g85m", "g150m", "g300m")
CPU_SIZES = tuple(name for name in LADDER if name not in GPU_SIZES)  # the sizes a 2-core study can afford


def ladder(d_ff_offset: float = 0.0) -> dict:
    """The ladder with d_ff changed by `d_ff_offset` x d_model: a variant whose block holds extra square
    matrices narrows its MLP to keep gpt2's N (Transformer-XL's relative-position projection: -0.5)."""
    return {name: {**shape, "d_ff": int(shape["d_ff"] + d_ff_offset * shape["d_model"])}
            for name, shape in LADDER.items()}
