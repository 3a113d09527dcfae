"""The fixed evaluation set (training/evalset.py): one yardstick per objective, identical for
every run and seed, and the baselines computed on it."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from models.base import EVAL_FIELDS
from training import evalset, loop
from training.collect import baselines
from training.errors import InputError
from training.loop import TrainConfig, run
from training.shards import open_tokens

SPECIALS = [0, 1, 2]  # the project tokenizer's specials come first (training/tokenizer.py)
MASK_ID = 2


@pytest.fixture(scope="module")
def tokens(small_data):
    data = open_tokens(small_data)
    assert (data.meta["eos_id"], data.meta["pad_id"], data.meta["mask_id"]) == (0, 1, 2)
    return data.train_counts, np.asarray(data.val), data.vocab_size


def _build(tokens, seq_len=64, n_tokens=4096):
    train, val, vocab = tokens
    return evalset.build(val, train, vocab, SPECIALS, MASK_ID, seq_len, n_tokens)


def test_the_set_is_a_pure_function_of_the_data(tokens):
    torch.manual_seed(1)
    np.random.seed(1)
    a = _build(tokens)
    torch.manual_seed(2)
    np.random.seed(2)
    b = _build(tokens)
    for field in evalset.FIELDS:
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    # a longer evaluation extends the set; its first windows are the same
    longer = _build(tokens, n_tokens=8192)
    for field in evalset.FIELDS:
        assert np.array_equal(getattr(longer, field)[: len(a.input_ids)], getattr(a, field)), field


def test_masked_set_masks_15_percent_of_the_non_special_tokens_all_as_mask(tokens):
    s = _build(tokens, n_tokens=10**6)
    special = np.isin(s.input_ids, SPECIALS)
    assert special.any()
    masked = s.masked
    assert not (masked & special).any()
    assert abs(masked.sum() / (~special).sum() - evalset.MASK_PROB) < 0.01
    assert (s.mlm_input_ids[masked] == MASK_ID).all()  # no kept or random positions: nothing to copy
    assert np.array_equal(s.mlm_input_ids[~masked], s.input_ids[~masked])
    assert np.array_equal(s.mlm_labels[masked], s.input_ids[masked])
    assert (s.mlm_labels[~masked] == evalset.IGNORE_INDEX).all()


def test_rtd_set_replaces_from_the_training_unigram_and_labels_what_changed(tokens):
    train, _, vocab = tokens
    s = _build(tokens, n_tokens=10**6)
    scored = s.rtd_labels != evalset.IGNORE_INDEX
    assert np.array_equal(scored, ~np.isin(s.input_ids, SPECIALS))  # specials are not scored
    changed = s.rtd_input_ids != s.input_ids
    assert np.array_equal(changed, s.rtd_labels == 1)
    assert not (changed & ~s.masked).any()  # only the masked positions are corrupted
    assert not np.isin(s.rtd_input_ids[s.masked], SPECIALS).any()
    # the replacements follow the training split's token frequencies
    drawn = np.bincount(s.rtd_input_ids[s.masked], minlength=vocab)
    expected = evalset.non_special_unigram(train, SPECIALS) * s.masked.sum()
    common = expected > 50
    assert np.corrcoef(drawn[common], expected[common])[0, 1] > 0.95
    r = s.replaced_fraction()
    assert 0.13 < r <= 0.15
    assert s.base_rate_entropy() == pytest.approx(-(r * math.log(r) + (1 - r) * math.log(1 - r)))


def test_baselines_are_computed_on_the_fixed_set(tokens):
    train, val, vocab = tokens
    ref = baselines(train, val, vocab, seq_len=64, eval_tokens=4096)
    s = _build(tokens)
    p = evalset.non_special_unigram(train, SPECIALS)
    assert ref["masked_unigram_loss"] == pytest.approx(float(-np.log(p[s.input_ids[s.masked]]).mean()))
    assert ref["rtd_base_rate_entropy"] == pytest.approx(s.base_rate_entropy())
    assert ref["eval_tokens_scored"] == s.input_ids.size == 4096
    assert ref["chance_loss"] == pytest.approx(math.log(vocab))
    assert 0.3 < ref["rtd_base_rate_entropy"] < math.log(2)


def test_bad_input_is_one_line():
    with pytest.raises(InputError, match="fewer than 2 windows") as err:
        evalset.build(np.arange(10) % 7, evalset.token_counts(np.arange(100) % 7, 8), 8, SPECIALS, MASK_ID, 8, 64)
    assert "\n" not in str(err.value)


def test_field_names_agree_with_the_models():
    assert tuple(EVAL_FIELDS) == tuple(evalset.FIELDS)


def test_every_run_and_seed_is_scored_on_the_same_set(small_data, tmp_path, monkeypatch):
    """Through the training loop: runs of different variants and seeds evaluate the very
    same masked positions, tokens and replacements."""
    seen = []

    def recording(model, batches, device, seed=None):
        seen.append(batches)
        return loop.eval_metrics(model, batches, device)["loss"]

    monkeypatch.setattr(loop, "evaluate", recording)
    cfg = dict(tokens=64 * 8 * 3, seq_len=64, batch_size=8, eval_points=2, eval_tokens=2048, eval_batch_size=8)
    for i, (variant, seed) in enumerate([("bert_mlm", 0), ("bert_mlm", 1), ("electra", 2)]):
        info = run(variant, "xs", {}, TrainConfig(**cfg, seed=seed), small_data, tmp_path / str(i))
        assert info["status"] == "ok"
        curve = (tmp_path / str(i) / "curve.csv").read_text()
        assert len(curve.splitlines()) >= 2
    first = seen[0]
    assert all(len(b.fields) == len(first.fields) for b in seen)
    for batches in seen[1:]:
        for a, b in zip(first.fields, batches.fields):
            for field in EVAL_FIELDS:
                assert torch.equal(a[field], b[field]), field
    assert json.loads((tmp_path / "2" / "run.json").read_text())["objective"] == "rtd"
