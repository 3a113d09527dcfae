"""Variant registry and size presets (sizes are data, as in litgpt's config.py).

A `Variant` bundles a name, its training objective, its size presets and a `build`
function that turns a `Size` plus a `ModelContext` (vocabulary, context length, token ids)
into an `ArchModel` (see models/base.py). `resolve_size(variant, preset, **overrides)` is
the `from_name` of this project: the config names a preset and may override any field.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

OBJECTIVES = ("causal", "masked", "rtd")


class ConfigError(ValueError):
    """A model or size configuration that cannot be built; the message names the bad value."""


@dataclass(frozen=True)
class Size:
    """Shape of one model in a size scan.

    d_ff defaults to 4 * d_model. `extra` holds variant-specific fields (e.g. Reformer's
    chunk lengths, Transformer-XL's mem_len) as a sorted tuple of (key, value) pairs so the
    object stays hashable; read them with `size.get(key, default)`.
    """

    d_model: int
    n_layer: int
    n_head: int
    d_ff: int = 0
    extra: tuple = ()

    def __post_init__(self):
        for name in ("d_model", "n_layer", "n_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name}={value!r} must be a positive integer")
        if self.d_model % self.n_head:
            raise ConfigError(
                f"n_head={self.n_head} does not divide d_model={self.d_model}; "
                f"allowed n_head values: {[h for h in range(1, self.d_model + 1) if self.d_model % h == 0 and h <= 64]}"
            )
        if self.d_ff == 0:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        if not isinstance(self.d_ff, int) or self.d_ff <= 0:
            raise ConfigError(f"d_ff={self.d_ff!r} must be a positive integer")
        object.__setattr__(self, "extra", tuple(sorted(dict(self.extra).items())))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def get(self, key, default=None):
        return dict(self.extra).get(key, default)

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out.update(dict(self.extra))
        return out


@dataclass(frozen=True)
class ModelContext:
    """What every model needs besides its shape: the tokenizer's facts and the context length."""

    vocab_size: int
    seq_len: int
    bos_id: int = 0
    eos_id: int = 0
    pad_id: int = 0
    mask_id: int = 0

    def __post_init__(self):
        if self.vocab_size < 8:
            raise ConfigError(f"vocab_size={self.vocab_size} is too small (need >= 8)")
        if self.seq_len < 2:
            raise ConfigError(f"seq_len={self.seq_len} must be >= 2")
        for name in ("bos_id", "eos_id", "pad_id", "mask_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                raise ConfigError(f"{name}={getattr(self, name)} is outside the vocabulary 0..{self.vocab_size - 1}")


@dataclass(frozen=True)
class Variant:
    name: str
    objective: str
    build: Callable  # (Size, ModelContext) -> models.base.ArchModel
    presets: Mapping[str, Mapping]  # preset name -> size fields (d_model, n_layer, n_head, [d_ff], extras)
    source_file: str
    account: Callable  # (Size, ModelContext) -> models.accounting.Accounting
    description: str = ""
    size_fields: tuple = ()  # names allowed in `extra` for this variant
    check: Callable | None = None  # (Size, ModelContext) -> None, raises ConfigError
    defaults: Mapping = field(default_factory=dict)  # default values of `extra` fields
    uses: tuple = ()  # other models/ files the variant's code imports (they count in source_hash)

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"variant {self.name}: objective={self.objective!r}; allowed: {', '.join(OBJECTIVES)}")

    def source_hash(self) -> str:
        """Hash of the files whose code this variant runs (its own file, the shared model code)."""
        from archscale.code import code_hash

        here = Path(__file__).parent
        shared = {here / "base.py", here / "accounting.py", here / "registry.py", *(here / f for f in self.uses)}
        return code_hash(sorted({Path(self.source_file), *shared}))


REGISTRY: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    if variant.name in REGISTRY:
        raise ConfigError(f"variant {variant.name!r} is registered twice")
    REGISTRY[variant.name] = variant
    return variant


def variant_names() -> list[str]:
    return sorted(REGISTRY)


def get_variant(name: str) -> Variant:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown variant {name!r}; allowed: {', '.join(variant_names())}") from None


def resolve_size(variant: str | Variant, preset: str, ctx: ModelContext | None = None, **overrides) -> Size:
    """The size `preset` of `variant`, with fields overridden; validated against the variant."""
    v = get_variant(variant) if isinstance(variant, str) else variant
    if preset in v.presets:
        base = dict(v.presets[preset])
    elif {"d_model", "n_layer", "n_head"} <= set(overrides):
        base = {}
    else:
        raise ConfigError(
            f"unknown size {preset!r} for variant {v.name}; allowed presets: {', '.join(v.presets)} "
            "(or give d_model, n_layer and n_head explicitly)"
        )
    fields = {**dict(v.defaults), **base, **overrides}
    core = {k: fields.pop(k) for k in ("d_model", "n_layer", "n_head", "d_ff") if k in fields}
    unknown = sorted(set(fields) - set(v.size_fields))
    if unknown:
        raise ConfigError(
            f"size {preset!r} of {v.name}: unknown field(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(['d_model', 'n_layer', 'n_head', 'd_ff', *v.size_fields])}"
        )
    size = Size(**core, extra=tuple(fields.items()))
    if v.check is not None and ctx is not None:
        v.check(size, ctx)
    return size
