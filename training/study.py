"""Resolve a study config into the list of runs, with one-line errors at DAG-build time.

`load_study(config, schema_path, cache_dir)` validates the config against the JSON schema
(filling defaults), checks it against the model registry (variant names, presets, shapes,
variant constraints such as Reformer's chunking), and returns a plain dict the Snakefile
uses for wildcards and params. Resolving needs the model registry (torch); the result is
cached by a hash of the config, schema and model sources so `snakemake -n` stays fast.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import yaml

from training.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


class StudyError(InputError):
    pass


def _fill_defaults(validator_cls):
    from jsonschema import validators

    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return validators.extend(validator_cls, {"properties": set_defaults})


def _one_line(error) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"unknown key(s) {', '.join(map(repr, extra))} in {where}; allowed: {', '.join(allowed)}"
    if error.validator == "enum":
        return f"{where}={error.instance!r} is not allowed; allowed: {', '.join(map(str, error.validator_value))}"
    return f"{where}: {error.message}"


def validate_config(config: dict, schema_path) -> dict:
    from jsonschema import Draft7Validator

    schema = yaml.safe_load(Path(schema_path).read_text())
    config = copy.deepcopy(dict(config))
    validator = _fill_defaults(Draft7Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise StudyError(f"config error: {_one_line(errors[0])}")
    # defaults inside additionalProperties (per-variant entries) are not filled by the validator
    for entry in config["variants"].values():
        entry.setdefault("size_overrides", {})
        entry.setdefault("lr_grid", {})
    return config


def lr_label(lr: float) -> str:
    return f"{lr:g}"


def resolve(config: dict) -> dict:
    """Runs of a validated config, checked against the model registry."""
    import models
    from models.registry import ConfigError, ModelContext

    tcfg = config["training"]
    ctx = ModelContext(vocab_size=config["tokenizer"]["vocab_size"], seq_len=tcfg["seq_len"],
                       bos_id=0, eos_id=0, pad_id=1, mask_id=2)
    corpus = config["corpus"]
    if corpus["source"] == "files":
        import glob

        if not corpus["files"] or not glob.glob(corpus["files"], recursive=True):
            raise StudyError(f"config error: corpus.files={corpus['files']!r} matches no file; give a glob of UTF-8 text files")
    if corpus["source"] == "hf" and not corpus["hf"].get("name"):
        raise StudyError("config error: corpus.hf.name is empty; give a dataset name or a builder such as 'json' with data_files")
    runs, variants = [], {}
    for name, entry in config["variants"].items():
        if name not in models.REGISTRY:
            raise StudyError(f"config error: variants.{name}: unknown variant; allowed: {', '.join(models.variant_names())}")
        spec = models.get_variant(name)
        for key in list(entry["size_overrides"]) + list(entry["lr_grid"]):
            if key not in entry["sizes"]:
                raise StudyError(f"config error: variants.{name}: size {key!r} in size_overrides/lr_grid is not in sizes {entry['sizes']}")
        if len(set(entry["sizes"])) != len(entry["sizes"]):
            raise StudyError(f"config error: variants.{name}.sizes lists a size twice: {entry['sizes']}")
        sizes = []
        for size_name in entry["sizes"]:
            overrides = entry["size_overrides"].get(size_name, {})
            try:
                size = models.resolve_size(spec, size_name, ctx, **overrides)
            except ConfigError as e:
                raise StudyError(f"config error: variants.{name}.{size_name}: {e}") from None
            account = spec.account(size, ctx)
            sizes.append({"size": size_name, "size_config": size.as_dict(), "params_nonembedding": account.params_nonembedding,
                          "train_flops_per_token": account.train_flops_per_token})
            for lr in entry["lr_grid"].get(size_name, [tcfg["lr"]]):
                for seed in config["seeds"]:
                    run_id = f"{name}/{size_name}/seed{seed}_lr{lr_label(lr)}"
                    runs.append({
                        "run_id": run_id, "variant": name, "objective": spec.objective, "size": size_name,
                        "seed": seed, "lr": lr, "lr_label": lr_label(lr), "size_overrides": overrides,
                        "size_config": size.as_dict(), "params_nonembedding": account.params_nonembedding,
                        "train_flops": account.train_flops_per_token * tcfg["tokens"],
                        "source_hash": spec.source_hash(),
                    })
        variants[name] = {"objective": spec.objective, "sizes": sizes, "source_file": str(Path(spec.source_file).relative_to(ROOT))}
    return {"config": config, "runs": runs, "variants": variants}


def load_study(config: dict, schema_path, cache_dir=None) -> dict:
    config = validate_config(config, schema_path)
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for path in sorted((ROOT / "models").glob("*.py")) + [Path(schema_path), Path(__file__)]:
        key.update(path.read_bytes())
    cache = Path(cache_dir) / f"study-{key.hexdigest()[:20]}.json" if cache_dir else None
    if cache is not None and cache.is_file():
        return json.loads(cache.read_text())
    # canonical key order, so params compare equal whether or not the cache was used
    study = json.loads(json.dumps(resolve(config), sort_keys=True))
    if cache is not None:
        from training.atomic import write_json

        try:
            write_json(cache, study)
        except OSError:
            pass  # a cache, not a result
    return study
