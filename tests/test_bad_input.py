"""Bad input, everywhere: each case stops with one line naming the problem (and the fix),
before expensive work, and never deletes earlier results."""
import errno
import os

import numpy as np
import pandas as pd
import pytest

from analysis.curves.table import CurveTableError, validate_curves
from archscale.files import write_text
from training.corpus import CorpusSpec, load_units
from training.data import check_corpus_size
from training.errors import InputError
from study.config import StudyError, load_study
from training.shards import open_tokens

SCHEMA = "workflow/schemas/config.schema.yaml"

CONFIG_CASES = [
    ({"trainin": {}}, "unknown key(s) 'trainin' in (top level); allowed: analysis, budgets, corpus"),
    ({"training": {"tokens": 0}}, "training.tokens: 0 is less than or equal to the minimum of 0"),
    ({"training": {"lr": -0.1}}, "training.lr: -0.1 is less than or equal to the minimum of 0"),
    ({"training": {"device": "tpu"}}, "training.device='tpu' is not allowed; allowed: auto, cpu, cuda"),
    ({"variants": {"gpt3": {"sizes": ["s"]}}}, "variants.gpt3: unknown variant; allowed: "),
    ({"variants": {"gpt2": {"sizes": ["huge"]}}}, "unknown size 'huge' for variant gpt2; allowed presets: xxxs, xxs, xs, xsm, s, m, l"),
    ({"variants": {"gpt2": {"sizes": ["s"], "size_overrides": {"s": {"n_head": 5}}}}},
     "variants.gpt2.s: n_head=5 does not divide d_model=64"),
    ({"variants": {"gpt2": {"sizes": ["s"], "size_overrides": {"s": {"width": 5}}}}}, "unknown field(s) width"),
    ({"variants": {"gpt2": {"sizes": ["s"], "lr_grid": {"m": [1e-3]}}}}, "size 'm' in size_overrides/lr_grid/gpus is not in sizes"),
    ({"variants": {"gpt2": {"sizes": ["s", "s"]}}}, "lists a size twice"),
    ({"variants": {}}, "variants: {} should be non-empty"),
    ({"seeds": []}, "seeds: [] should be non-empty"),
    ({"corpus": {"source": "files", "files": "/nonexistent/*.txt"}}, "corpus.files='/nonexistent/*.txt' matches no file"),
    ({"corpus": {"source": "web"}}, "corpus.source='web' is not allowed; allowed: kjv, files, hf"),
    ({"tokenizer": {"vocab_size": 100}}, "tokenizer.vocab_size: 100 is less than the minimum of 259"),
    ({"tokenizer": {"file": "/nonexistent/tokenizer.json"}}, "tokenizer.file='/nonexistent/tokenizer.json' is not a file"),
    ({"tokenizer": {"file": "README.md", "pretrained": "gpt2"}}, "tokenizer.file and tokenizer.pretrained are both given"),
    ({"tokenizer": {"file": "README.md"}}, "cannot read tokenizer.file='README.md'"),
    ({"corpus": {"val_tokens": 0}}, "corpus.val_tokens: 0 is less than the minimum of 1"),
    ({"analysis": {"compute": "flops_7n"}}, "analysis.compute='flops_7n' is not allowed; allowed: flops, flops_6n"),
    ({"training": {"schedule": "step"}}, "training.schedule='step' is not allowed; allowed: cosine, wsd"),
    ({"budgets": {"kind": "isoflop"}}, "budgets.levels is empty; give the budget levels in FLOPs for kind isoflop"),
    ({"budgets": {"kind": "isoflop", "levels": [1e12, 5e11]}}, "budgets.levels=[1000000000000.0, 500000000000.0] must increase"),
    ({"budgets": {"kind": "isoflop", "levels": [1e11]}},
     "budgets.levels[0]=1e+11 FLOPs: variant gpt2 has 1 size(s) that can train at it"),
    ({"budgets": {"min_sizes": 2}}, "budgets.min_sizes: 2 is less than the minimum of 3"),
    ({"results_dir": "/"}, "results_dir='/' is /: use a folder of its own"),
    ({"results_dir": "../elsewhere"}, "is outside the working directory"),
    ({"results_dir": "/tmp/x", "results_dir_outside": True, "variants": {"gpt2": {"sizes": ["s", "s"]}}}, "lists a size twice"),
    ({"variants": {"gpt2": {"sizes": ["../x"]}}}, "variants.gpt2.sizes.0: '../x' does not match"),
]


@pytest.mark.parametrize("config, message", CONFIG_CASES, ids=[m[:40] for _, m in CONFIG_CASES])
def test_config_errors_are_one_line_and_name_the_key(root, config, message):
    with pytest.raises(StudyError) as err:
        load_study(config, root / SCHEMA)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("config error: ")
    assert message in text, text


def test_corpus_too_small_for_the_budget_or_evaluation():
    with pytest.raises(InputError, match="over 100 epochs"):
        check_corpus_size(10_000, 5_000, 128, budget=2_000_000, eval_tokens=4096)
    with pytest.raises(InputError, match="fewer than 2 windows of seq_len=128; raise corpus.val_fraction"):
        check_corpus_size(100_000, 200, 128, budget=100_000, eval_tokens=4096)
    with pytest.raises(InputError, match="fewer than 4 windows"):
        check_corpus_size(300, 5_000, 128, budget=1000, eval_tokens=4096)


def test_unreadable_corpus_file(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="cannot read corpus file .*bad.txt.*UTF-8"):
        load_units(CorpusSpec(source="files", files=str(tmp_path / "*.txt")))


def test_token_shard_that_does_not_match_its_tokenizer(small_data, tmp_path):
    import shutil

    shutil.copytree(small_data, tmp_path / "data")
    shard = tmp_path / "data" / "shards" / "val_000000.bin"
    np.arange(len(open_tokens(small_data).val), dtype=np.uint16).tofile(shard)  # right size, other ids
    with pytest.raises(InputError, match="val_000000.bin is corrupt") as err:
        open_tokens(tmp_path / "data")
    assert "\n" not in str(err.value)


CURVE_CASES = [
    (lambda df: df.drop(columns=["flops_6n"]), "missing column"),
    (lambda df: df.assign(loss=df["loss"].where(df.index != 2, np.nan)), "NaN"),
    (lambda df: df.assign(flops=df["flops"].where(df.index != 1, -1.0)), "non-positive"),
    (lambda df: df.assign(loss=df["loss"].where(df.index != 1, 0.0)), "non-positive"),
]


@pytest.mark.parametrize("mutate, message", CURVE_CASES, ids=[m for _, m in CURVE_CASES])
def test_curve_table_with_bad_rows(mutate, message):
    rows = [dict(variant="v", objective="causal", size=s, seed=0, params_total=n * 2, params_nonembedding=n,
                 tokens=t, flops=6.0 * n * t, flops_6n=6.0 * n * t, loss=5.0 - 0.1 * i - 0.01 * j)
            for i, (s, n) in enumerate([("a", 1000), ("b", 4000), ("c", 16000)]) for j, t in enumerate([100, 200, 400])]
    df = pd.DataFrame(rows)
    validate_curves(df)
    with pytest.raises(CurveTableError) as err:
        validate_curves(mutate(df))
    assert message.lower() in str(err.value).lower() and "\n" not in str(err.value)


def test_disk_full_during_a_write_keeps_the_old_file_and_names_the_path(tmp_path, monkeypatch):
    target = tmp_path / "curve.csv"
    target.write_text("old results\n")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError) as err:
        write_text(target, "new results\n")
    assert str(target) in str(err.value) and "No space left on device" in str(err.value)
    assert "check free space and permissions" in str(err.value)
    assert target.read_text() == "old results\n"
    assert [p.name for p in tmp_path.iterdir()] == ["curve.csv"]  # no temp file left behind


STUDY_CASES = [
    ({"budgets": {"kind": "isoflop", "levels": [1e12, float("inf")]}}, "budgets.levels=[1000000000000.0, inf] must be positive finite"),
    ({"budgets": {"kind": "isoflop", "levels": [1e12, float("nan")]}}, "must be positive finite numbers"),
    ({"budgets": {"kind": "isoflop", "levels": [1.0e12, 1.0004e12, 2e12]}},
     "levels equal to 3 significant figures name the same budget (C1e12)"),
    ({"budgets": {"kind": "isoflop", "levels": [{"level": 7e11, "sizes": ["xxs", "xs", "xms"]}, 1e12]},
      "variants": {"gpt2": {"sizes": ["xxs", "xs", "xsm"]}}}, "budgets.levels[0] lists unknown size(s) 'xms' for variant gpt2"),
    ({"seeds": [-1]}, "seeds.0: -1 is less than the minimum of 0"),
    ({"seeds": [2**64]}, "seeds.0: 18446744073709551616 is greater than the maximum of 4294967295"),
    ({"training": {"tokens": 64 * 8 * 20, "seq_len": 64, "wsd": {"warmup_tokens": 64 * 8 * 30}}, "budgets": {"kind": "tokens"}},
     "its stable phase has 0 optimiser step(s)"),
]


@pytest.mark.parametrize("config, message", STUDY_CASES, ids=[m[:40] for _, m in STUDY_CASES])
def test_study_configs_that_used_to_fail_late_or_silently(root, config, message):
    with pytest.raises(StudyError) as err:
        load_study(config, root / SCHEMA)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_results_dir_under_the_home_folder_is_expanded_not_a_literal_tilde(root, monkeypatch, tmp_path):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(StudyError, match=f"results_dir='{tmp_path}/home/x' is outside the working directory"):
        load_study({"results_dir": "~/x"}, root / SCHEMA)
    study = load_study({"results_dir": "~/x", "results_dir_outside": True}, root / SCHEMA)
    assert study["config"]["results_dir"] == str(tmp_path / "home" / "x")
