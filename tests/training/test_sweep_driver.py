"""The recorded-sweep driver (config/sweeps/sweep.py): entries expand to the product of their
lists, study configs expand to their lr grids, and a finished run whose size fields no longer
match the entry is refused rather than reused."""
from __future__ import annotations

import importlib.util
import json

import pytest
import yaml


@pytest.fixture(scope="module")
def sweep(root):
    spec = importlib.util.spec_from_file_location("sweep_driver", root / "config" / "sweeps" / "sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_entry_expands_to_the_product_of_its_lists(sweep):
    runs = sweep.expand({"variant": "bert_mlm", "size": "s", "lr": [0.001, 0.002],
                         "overrides": {"mask_prob": [0.15, 0.4], "norm": "pre"}, "training": {"warmup_tokens": [0, 1024]}})
    assert len(runs) == 8
    assert {(r["lr"], r["overrides"]["mask_prob"], r["training"]["warmup_tokens"]) for r in runs} == {
        (lr, p, w) for lr in (0.001, 0.002) for p in (0.15, 0.4) for w in (0, 1024)}
    assert all(r["overrides"]["norm"] == "pre" for r in runs)
    assert len({sweep.run_id(r) for r in runs}) == 8


def test_the_lr_sweep_study_config_covers_every_variant(sweep, root):
    import models

    spec = yaml.safe_load((root / "config" / "sweeps" / "lr_per_variant.yaml").read_text())
    runs = [r for entry in sweep.study_runs(spec) for r in sweep.expand(entry)]
    assert {r["variant"] for r in runs} == set(models.variant_names())
    assert all(len([r for r in runs if r["variant"] == v]) >= 4 for v in models.variant_names())


def test_a_stale_finished_run_is_refused(sweep, tmp_path):
    run = {"variant": "bert_mlm", "size": "s", "lr": 0.002, "overrides": {"mask_prob": 0.4}, "training": {}}
    from models import resolve_size

    trained = resolve_size("bert_mlm", "s", None, mask_prob=0.4).as_dict()
    (tmp_path / "run.json").write_text(json.dumps({"size_config": trained}))
    sweep.check_still_valid(run, tmp_path)  # same fields: reused
    (tmp_path / "run.json").write_text(json.dumps({"size_config": {**trained, "mask_prob": 0.15}}))
    with pytest.raises(SystemExit, match="mask_prob"):
        sweep.check_still_valid(run, tmp_path)
