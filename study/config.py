"""Resolve a study config into the list of runs, with one-line errors at DAG-build time.

`load_study(config, schema_path, cache_dir)` validates the config against the JSON schema
(filling defaults), checks it against the model registry (variant names, presets, shapes,
variant constraints such as Reformer's chunking), and returns a plain dict the Snakefile
uses for wildcards and params. Resolving needs the model registry (torch); the result is
cached by a hash of the config, schema and model sources so `snakemake -n` stays fast.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
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


def _resolve(schema: dict, root: dict) -> dict:
    """A subschema with a local $ref ("#/properties/...") replaced by what it points at."""
    ref = schema.get("$ref")
    if not ref or not ref.startswith("#/"):
        return schema
    node = root
    for part in ref[2:].split("/"):
        node = node[part]
    return _resolve(node, root)


def _coerce_numbers(value, schema: dict, root: dict | None = None):
    """Numbers written as text become numbers where the schema wants one: YAML 1.1 reads `1e12` (no dot)
    as a string, and `--config key=1` passes strings."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    for alt in schema.get("anyOf", []):
        alt = _resolve(alt, root)
        types += [alt["type"]] if isinstance(alt.get("type"), str) else list(alt.get("type") or [])
    if isinstance(value, str) and ("number" in types or "integer" in types):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if "integer" in types and number.is_integer() else number
    if isinstance(value, dict):
        objects = [schema] + [_resolve(a, root) for a in schema.get("anyOf", []) if _resolve(a, root).get("type") == "object"]
        props = {k: v for o in objects for k, v in o.get("properties", {}).items()}
        extra = schema.get("additionalProperties")
        return {k: _coerce_numbers(v, props.get(k, extra if isinstance(extra, dict) else {}), root)
                for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_coerce_numbers(v, schema["items"], root) for v in value]
    return value


def validate_config(config: dict, schema_path) -> dict:
    from jsonschema import Draft7Validator

    schema = yaml.safe_load(Path(schema_path).read_text())
    config = _coerce_numbers(copy.deepcopy(dict(config)), schema)
    validator = _fill_defaults(Draft7Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise StudyError(f"config error: {_one_line(errors[0])}")
    # defaults inside additionalProperties (per-variant entries) are not filled by the validator
    for entry in config["variants"].values():
        entry.setdefault("size_overrides", {})
        entry.setdefault("lr_grid", {})
        entry.setdefault("gpus", {})
    return config


def lr_label(lr: float) -> str:
    return f"{lr:g}"


def number_label(x: float) -> str:
    """Short, path-safe number: 1e+12 -> '1e12', 2.5e+11 -> '2.5e11', 20 -> '20'."""
    text = f"{x:.3g}".replace("e+", "e")
    mant, _, exp = text.partition("e")
    return f"{mant}e{int(exp)}" if exp else mant


BUDGET_PREFIX = {"tokens": "D", "isoflop": "C", "tokens_per_param": "T"}


def budget_label(kind: str, level: float) -> str:
    """Folder name of a budget: D<tokens>, C<FLOPs> or T<tokens per parameter>."""
    return BUDGET_PREFIX[kind] + number_label(level)


def level_and_sizes(entry) -> tuple[float, list | None]:
    """A budgets.levels entry: a number, or {level: L, sizes: [...]} restricting the sizes at it."""
    if isinstance(entry, dict):
        return float(entry["level"]), entry.get("sizes")
    return float(entry), None


def variant_budgets(config: dict, variant: str) -> dict:
    """The budgets block of a variant: the study's, with the keys its own `budgets` entry gives replaced
    (objectives differ in loss scale and cost per FLOP, so a masked or rtd variant may need other levels)."""
    return {**config["budgets"], **(config["variants"][variant].get("budgets") or {})}


def _size_budgets(config: dict, size: dict, tokens_per_step: int, b: dict) -> list[dict]:
    """The budgets one size trains at: label, level and tokens (whole optimiser steps)."""
    if b["kind"] == "tokens":
        levels = [(config["training"]["tokens"], None)]
    else:
        levels = [level_and_sizes(x) for x in b["levels"]]
    out = []
    for level, only in levels:
        if b["kind"] == "tokens":
            raw = level
        elif b["kind"] == "isoflop":
            raw = level / size["train_flops_per_token"]
        else:
            raw = level * size["params_nonembedding"]
        steps = max(1, int(round(raw / tokens_per_step)))
        tokens = steps * tokens_per_step
        tpp = tokens / size["params_nonembedding"]
        lo, hi = b["tokens_per_param"]
        joins = b["kind"] == "tokens" or (steps >= b["min_steps"] and (b["kind"] != "isoflop" or lo <= tpp <= hi)
                                          and (only is None or size["size"] in only))
        out.append({"budget": budget_label(b["kind"], level), "level": level, "budget_tokens": tokens,
                    "steps": steps, "tokens_per_param": tpp, "joins": joins})
    return out


def _check_levels(config: dict) -> None:
    """Before anything is computed from them: every level finite and positive, and no two levels of a variant that
    name the same budget folder (equal to 3 significant figures)."""
    for name in config["variants"]:
        b = variant_budgets(config, name)
        if b["kind"] == "tokens":
            continue
        where = f"variants.{name}.budgets" if config["variants"][name].get("budgets") else "budgets"
        levels = [level_and_sizes(x)[0] for x in b["levels"]]
        if not all(math.isfinite(x) and x > 0 for x in levels):
            raise StudyError(f"config error: {where}.levels={levels} must be positive finite numbers")
        labels = [budget_label(b["kind"], x) for x in levels]
        if len(set(labels)) < len(labels):
            twins = sorted({x for x in labels if labels.count(x) > 1})
            raise StudyError(f"config error: {where}.levels={levels}: levels equal to 3 significant figures name the "
                             f"same budget ({', '.join(twins)}); make them differ in the first 3 figures")


def _check_budgets(config: dict, variants: dict) -> None:
    """Each level needs budgets.min_sizes sizes of every variant (isoflop, tokens_per_param)."""
    for name, v in variants.items():
        where = f"variants.{name}.budgets" if config["variants"][name].get("budgets") else "budgets"
        _check_variant_budgets(variant_budgets(config, name), name, v, where)


def _check_variant_budgets(b: dict, name: str, v: dict, where: str = "budgets") -> None:
    if b["kind"] == "tokens":
        return
    unit = "FLOPs" if b["kind"] == "isoflop" else "tokens per parameter"
    if not b["levels"]:
        raise StudyError(f"config error: budgets.levels is empty; give the budget levels in {unit} for kind {b['kind']}")
    levels = [level_and_sizes(x)[0] for x in b["levels"]]
    import models

    known = set(models.get_variant(name).presets)
    for k, entry in enumerate(b["levels"]):
        unknown = [x for x in (level_and_sizes(entry)[1] or []) if x not in known]
        if unknown:
            raise StudyError(f"config error: {where}.levels[{k}] lists unknown size(s) {', '.join(map(repr, unknown))} "
                             f"for variant {name}; allowed presets: {', '.join(models.get_variant(name).presets)}")
    if any(later <= earlier for earlier, later in zip(levels, levels[1:])):
        raise StudyError(f"config error: budgets.levels={levels} must increase, without repeats")
    lo, hi = b["tokens_per_param"]
    if not lo < hi:
        raise StudyError(f"config error: budgets.tokens_per_param={b['tokens_per_param']} must be [low, high] with low < high")
    for k, level in enumerate(levels):
        rows = [(s["size"], s["budgets"][k]) for s in v["sizes"]]
        joined = [size for size, bud in rows if bud["joins"]]
        if len(joined) < b["min_sizes"]:
            detail = ", ".join(f"{size}: {bud['tokens_per_param']:.3g} tokens/param, {bud['steps']} steps"
                               for size, bud in rows)
            raise StudyError(
                f"config error: {where}.levels[{k}]={level:g} {unit}: variant {name} has {len(joined)} size(s) "
                f"that can train at it ({detail}; allowed: {lo:g}-{hi:g} tokens/param, >= {b['min_steps']} steps"
                f"{'' if level_and_sizes(b['levels'][k])[1] is None else ', and the sizes listed at it'}); "
                f"need >= {b['min_sizes']} (budgets.min_sizes): change the level, widen budgets.tokens_per_param "
                "or add sizes")


def _runs_of_size(config: dict, name: str, spec, size: dict, overrides: dict) -> tuple[list, list]:
    """(final runs, stable runs) of one size: one lineage per (seed, lr); per lineage one run per budget
    (wsd: a cooldown branching off the lineage's stable run; cosine: a run from scratch). The batch, rate
    and warm-up are the size's (training/hparams.py); every run's phases are checked for enough steps."""
    from training.hparams import check_phases
    from training.loop import EXECUTION_FIELDS, TrainConfig

    def recorded(cfg) -> dict:  # what a run's params hold: everything that decides its result
        return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in EXECUTION_FIELDS}

    tcfg, entry, hp = config["training"], config["variants"][name], size["hparams"]
    per_size = {"batch_size": hp["batch_size"], "warmup_tokens": hp["warmup_tokens"]}
    gpus = entry["gpus"].get(size["size"], tcfg["gpus"])
    if gpus > 1 and hp["batch_size"] % gpus:
        raise StudyError(f"config error: {name}/{size['size']}: its global batch of {hp['batch_size']} sequences does not "
                         f"split evenly over its {gpus} GPUs; make the batch (or scale_by_size.batch_multiple) a "
                         "multiple of the GPUs")
    if gpus > 1 and tcfg["early_stop"]["enabled"]:
        raise StudyError(f"config error: {name}/{size['size']} trains on {gpus} GPUs and training.early_stop is enabled: "
                         "the early-stop rule runs in one process; train it on one GPU or disable the rule")
    runs, stables = [], []
    for lr in entry["lr_grid"].get(size["size"], [hp["lr"]]):
        for seed in config["seeds"]:
            lineage = f"{name}/{size['size']}/seed{seed}_lr{lr_label(lr)}"
            ident = {"lineage": lineage, "variant": name, "objective": spec.objective, "size": size["size"],
                     "seed": seed, "lr": lr, "lr_label": lr_label(lr), "size_overrides": overrides,
                     "size_config": size["size_config"], "params_nonembedding": size["params_nonembedding"],
                     "params_total": size["params_total"], "schedule": tcfg["schedule"], "source_hash": spec.source_hash(), "gpus": gpus}
            branches = []
            for bud in (b for b in size["budgets"] if b["joins"]):
                cfg = TrainConfig.from_dict(tcfg, tokens=bud["budget_tokens"], lr=lr, seed=seed, **per_size)
                try:
                    check_phases(cfg, f"{lineage}/{bud['budget']}", tcfg["min_phase_steps"])
                except InputError as e:
                    raise StudyError(f"config error: {e}") from None
                branch = cfg.cooldown_start * cfg.tokens_per_step
                branches.append(branch)
                job_tokens = bud["budget_tokens"] - (branch if tcfg["schedule"] == "wsd" else 0)
                runs.append({**ident, "run_id": f"{lineage}/{bud['budget']}", "budget": bud["budget"],
                             "budget_level": bud["level"], "budget_tokens": bud["budget_tokens"],
                             "branch_tokens": branch, "train_flops": size["train_flops_per_token"] * job_tokens,
                             "train_config": recorded(cfg)})
            if tcfg["schedule"] == "wsd" and branches:
                cfg = TrainConfig.from_dict(tcfg, tokens=max(branches), lr=lr, seed=seed, stable_only=True, **per_size)
                # the stable run's params name its trajectory, not where it ends (stable_tokens, read when it runs)
                trajectory = {k: v for k, v in recorded(cfg).items() if k != "tokens"}
                stables.append({**ident, "stable_tokens": max(branches), "branch_tokens": sorted(set(branches)),
                                "train_flops": size["train_flops_per_token"] * max(branches),
                                "train_config": trajectory})
    return runs, stables


EARLY_STOP_COLUMNS = ("run", "variant", "budget", "tokens", "flops", "loss", "phase", "status")


def check_early_stop(tcfg: dict) -> None:
    """training.early_stop, when enabled: a wsd study, and a reference table that exists and has the columns
    the rule reads (its contents are validated when a stable run reads it, analysis.curves.table)."""
    es = tcfg["early_stop"]
    if not es["enabled"]:
        return
    if tcfg["schedule"] != "wsd":
        raise StudyError(f"config error: training.early_stop.enabled needs training.schedule wsd (is "
                         f"{tcfg['schedule']!r}): only a stable run can stop while its budgets wait")
    ref = es["reference"]
    if not ref or not Path(ref).is_file():
        raise StudyError(f"config error: training.early_stop.reference={ref!r} is not a file; give a previous "
                         "study's learning-curve table, e.g. results/analysis/curves.csv")
    import pandas as pd

    try:
        columns = set(pd.read_csv(ref, nrows=0).columns)
    except (OSError, ValueError) as e:
        raise StudyError(f"config error: training.early_stop.reference={ref!r} cannot be read as CSV ({e})") from None
    missing = [c for c in EARLY_STOP_COLUMNS if c not in columns]
    if missing:
        raise StudyError(f"config error: training.early_stop.reference={ref!r} has no column(s) {', '.join(missing)}; "
                         "it must be a learning-curve table of wsd runs (results/analysis/curves.csv)")


def _local_tokenizer(tok: dict) -> tuple[str | None, str | None]:
    """(file, folder) of a given tokenizer on this machine; (None, None) for a trained one or a hub name."""
    if tok["file"] and tok["pretrained"]:
        raise StudyError("config error: tokenizer.file and tokenizer.pretrained are both given; give one")
    if tok["file"]:
        if not Path(tok["file"]).is_file():
            raise StudyError(f"config error: tokenizer.file={tok['file']!r} is not a file; give a tokenizers tokenizer.json")
        return tok["file"], None
    if tok["pretrained"] and Path(tok["pretrained"]).is_dir():
        return None, tok["pretrained"]
    return None, None


def vocab_size_of(config: dict) -> int:
    """The models' vocabulary: a given local tokenizer's, with the special tokens archscale adds (read from it);
    otherwise tokenizer.vocab_size (a trained BPE's size; a hub tokenizer's as the config states it)."""
    file, folder = _local_tokenizer(config["tokenizer"])
    if not (file or folder):
        return config["tokenizer"]["vocab_size"]
    from training.tokenizer import load_given_tokenizer, vocab_size

    try:
        return vocab_size(load_given_tokenizer(file, folder)[0])
    except InputError as e:
        raise StudyError(f"config error: {e}") from None


def epoch_warnings(study: dict, meta_path) -> list[str]:
    """One line per run that makes more than corpus.max_epochs passes over the training split, once the tokens
    are prepared (meta_path exists; before that the split's size is not known)."""
    try:
        n = json.loads(Path(meta_path).read_text())["n_tokens_train"]
    except (OSError, ValueError, KeyError):
        return []
    from training.shards import epochs

    limit = study["config"]["corpus"]["max_epochs"]
    return [f"warning: {r['run_id']} trains {r['budget_tokens']:,} tokens, {epochs(r['budget_tokens'], n):.1f} passes "
            f"over the {n:,}-token training split (above corpus.max_epochs={limit:g}: repeated data changes the "
            "scaling law)" for r in study["runs"] if epochs(r["budget_tokens"], n) > limit]


def resolve(config: dict) -> dict:
    """Runs of a validated config, checked against the model registry."""
    import models
    from models.registry import ConfigError, ModelContext
    from training.hparams import size_hparams

    tcfg = config["training"]
    _check_levels(config)
    ctx = ModelContext(vocab_size=vocab_size_of(config), seq_len=tcfg["seq_len"],
                       bos_id=0, eos_id=0, pad_id=1, mask_id=2)
    corpus = config["corpus"]
    if corpus["source"] == "files":
        import glob

        if not corpus["files"] or not glob.glob(corpus["files"], recursive=True):
            raise StudyError(f"config error: corpus.files={corpus['files']!r} matches no file; give a glob of UTF-8 text files")
    if corpus["source"] == "hf" and not corpus["hf"].get("name"):
        raise StudyError("config error: corpus.hf.name is empty; give a dataset name or a builder such as 'json' with data_files")
    variants = {}
    for name, entry in config["variants"].items():
        if name not in models.REGISTRY:
            raise StudyError(f"config error: variants.{name}: unknown variant; allowed: {', '.join(models.variant_names())}")
        spec = models.get_variant(name)
        for key in list(entry["size_overrides"]) + list(entry["lr_grid"]) + list(entry["gpus"]):
            if key not in entry["sizes"]:
                raise StudyError(f"config error: variants.{name}: size {key!r} in size_overrides/lr_grid/gpus is not in sizes {entry['sizes']}")
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
            try:
                hp = size_hparams(tcfg, entry, size_name, account.params_nonembedding)
            except InputError as e:
                raise StudyError(f"config error: {e}") from None
            row = {"size": size_name, "size_config": size.as_dict(), "params_nonembedding": account.params_nonembedding,
                   "params_total": account.params_total,
                   "train_flops_per_token": account.train_flops_per_token, "hparams": hp.as_dict()}
            row["budgets"] = _size_budgets(config, row, hp.batch_size * tcfg["seq_len"], variant_budgets(config, name))
            sizes.append(row)
        variants[name] = {"objective": spec.objective, "sizes": sizes,
                          "source_file": str(Path(spec.source_file).relative_to(ROOT))}
    _check_budgets(config, variants)
    runs, stables = [], []
    for name, v in variants.items():
        spec = models.get_variant(name)
        for size in v["sizes"]:
            r, s = _runs_of_size(config, name, spec, size, config["variants"][name]["size_overrides"].get(size["size"], {}))
            runs += r
            stables += s
    return {"config": config, "runs": runs, "stables": stables, "variants": variants}


def check_results_dir(config: dict, workdir=None) -> None:
    """results_dir must be a folder of its own: never a filesystem root or the home folder (Snakemake would
    write, and on a rerun delete, outputs there), and outside the working directory only when allowed."""
    import os

    workdir = Path(workdir or os.getcwd()).resolve()
    path = (workdir / os.path.expanduser(config["results_dir"])).resolve()
    if path == Path(path.anchor) or path == Path.home().resolve() or path == workdir:
        raise StudyError(f"config error: results_dir={config['results_dir']!r} is {path}: use a folder of its own, "
                         "e.g. results")
    if not path.is_relative_to(workdir) and not config.get("results_dir_outside"):
        raise StudyError(f"config error: results_dir={config['results_dir']!r} is outside the working directory "
                         f"{workdir}; set results_dir_outside: true to allow it")


def load_study(config: dict, schema_path, cache_dir=None) -> dict:
    from archscale.code import code_hash

    config = validate_config(config, schema_path)
    if config["results_dir"].startswith("~"):  # Snakemake would make a folder literally named '~'
        config["results_dir"] = os.path.expanduser(config["results_dir"])
    check_results_dir(config)
    check_early_stop(config["training"])  # before the cache: the reference may have gone since
    given = [p for p in _local_tokenizer(config["tokenizer"]) if p]
    given = [f for p in given for f in ([Path(p)] if Path(p).is_file() else sorted(Path(p).glob("*.json")))]
    key = code_hash([ROOT / "models", Path(schema_path), Path(__file__), *given],
                    salt=json.dumps(config, sort_keys=True), length=20)
    cache = Path(cache_dir) / f"study-{key}.json" if cache_dir else None
    if cache is not None and cache.is_file():
        return json.loads(cache.read_text())
    # canonical key order, so params compare equal whether or not the cache was used
    study = json.loads(json.dumps(resolve(config), sort_keys=True))
    if cache is not None:
        from archscale.files import write_json

        try:
            write_json(cache, study)
        except OSError:
            pass  # a cache, not a result
    return study


def stable_plan(config: dict, schema_path, lineage: str, cache_dir=".snakemake/archscale") -> tuple[int, list[int]]:
    """(end, branches) of a wsd lineage's stable run under the study's current budgets: its last
    budget's cooldown start, and the token counts where each budget's cooldown branches off."""
    study = load_study(config, schema_path, cache_dir)
    stable = next(s for s in study["stables"] if s["lineage"] == lineage)
    return stable["stable_tokens"], stable["branch_tokens"]


def flops_per_token(study: dict) -> dict:
    """{(variant, size): accounted training FLOPs per token} of a resolved study."""
    return {(v, s["size"]): s["train_flops_per_token"] for v, var in study["variants"].items() for s in var["sizes"]}


def lineage_budgets(config: dict, schema_path, lineage: str, cache_dir=".snakemake/archscale") -> list[tuple]:
    """[(budget, branch tokens, accounted FLOPs at the budget's end, {size: non-embedding N} of the sizes
    the budget trains)] of a wsd lineage's budgets."""
    study = load_study(config, schema_path, cache_dir)
    runs = [r for r in study["runs"] if r["lineage"] == lineage]
    fpt = flops_per_token(study)
    sizes = {}
    for r in study["runs"]:
        sizes.setdefault((r["variant"], r["budget"]), {})[r["size"]] = r["params_nonembedding"]
    return [(r["budget"], r["branch_tokens"], fpt[(r["variant"], r["size"])] * r["budget_tokens"],
             sizes[(r["variant"], r["budget"])]) for r in runs]
