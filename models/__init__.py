"""Model variants for archscale: one variant per file, a registry, size presets, and one
place (`models.accounting`) that counts parameters and training FLOPs.

Importing this package registers every variant module listed in `VARIANT_MODULES`.
"""
from models.registry import (  # noqa: F401
    REGISTRY,
    ModelContext,
    Size,
    Variant,
    ConfigError,
    get_variant,
    register,
    resolve_size,
    variant_names,
)

# Adding a variant: write models/<name>.py that calls `register(Variant(...))`, then add
# its module name here. Nothing else in the pipeline needs to change.
VARIANT_MODULES = (
    "gpt2",
    "transformer_xl",
    "bert_causal",
    "bert_mlm",
    "reformer_hf",
    "reformer",
    "electra",
)

import importlib as _importlib  # noqa: E402  (the registry above comes first)

for _mod in VARIANT_MODULES:
    _importlib.import_module(f"models.{_mod}")
