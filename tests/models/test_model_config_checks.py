"""Config-time validation: one-line ConfigErrors naming the bad value."""
from __future__ import annotations

import pytest

from model_test_helpers import STUDY_CTX
from models import ConfigError, ModelContext, get_variant, resolve_size

REFORMER_ERRORS = [
    (dict(axial_pos_shape=(8, 8)), r"axial_pos_shape=\(8, 8\) multiplies to 64, but training needs it to equal seq_len=128"),
    (dict(axial_pos_embds_dim=(8, 8)), r"axial_pos_embds_dim=\(8, 8\) sums to 16, but must sum to d_model=64"),
    (dict(lsh_chunk_length=48), r"seq_len=128 is not a multiple of the lcm 96 of the chunk lengths"),
    (dict(num_buckets=5), r"num_buckets=5 must be an even integer"),
    (dict(lsh_num_chunks_after=1), r"lsh_num_chunks_after=1 must be 0 for a causal LM"),
    (dict(local_num_chunks_after=2), r"local_num_chunks_after=2 must be 0 for a causal LM"),
    (dict(attn_layers=("lsh", "global")), r"attn_layers=.*allowed entries: 'local', 'lsh'"),
]


@pytest.mark.parametrize("fields,message", REFORMER_ERRORS)
def test_reformer_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message) as err:
        resolve_size("reformer", "s", STUDY_CTX, **fields)
    assert "\n" not in str(err.value)


def test_reformer_check_runs_at_build_time_too():
    v = get_variant("reformer")
    size = resolve_size(v, "s", None, num_buckets=3)  # no ctx: check deferred
    with pytest.raises(ConfigError, match="num_buckets=3"):
        v.build(size, STUDY_CTX)


def test_reformer_chunk_lcm_uses_only_the_attention_types_present():
    # local-only: the LSH chunk length does not constrain seq_len
    resolve_size("reformer", "s", STUDY_CTX, attn_layers=("local",), lsh_chunk_length=48)


@pytest.mark.parametrize("fields,ctx,message", [
    (dict(seg_len=48), STUDY_CTX, r"seq_len=128 is not divisible by seg_len=48; allowed seg_len: \[1, 2, 4, 8, 16, 32, 64, 128\]"),
    (dict(mem_len=-1), STUDY_CTX, r"mem_len=-1 must be an integer >= 0"),
    (dict(seg_len=0), STUDY_CTX, r"seg_len=0 must be a positive integer"),
    (dict(seg_len=32), ModelContext(vocab_size=2048, seq_len=100), r"seq_len=100 is not divisible by seg_len=32"),
])
def test_transformer_xl_config_errors(fields, ctx, message):
    with pytest.raises(ConfigError, match=message) as err:
        resolve_size("transformer_xl", "s", ctx, **fields)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("fields,message", [
    (dict(gen_divisor=3), r"gen_divisor=3 must be a positive integer dividing d_model=64"),
    (dict(position="learned"), r"electra: position='learned'; allowed: absolute, rotary"),
    (dict(mask_prob=0.15, replace_prob=0.3), r"replace_prob=0.3 must be a number in \(0, mask_prob=0.15\]"),
    (dict(tie_encoder=True), r"tie_encoder=true shares the discriminator's encoder .* needs gen_divisor=1 \(got 4\)"),
])
def test_electra_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message) as err:
        resolve_size("electra", "s", STUDY_CTX, **fields)
    assert "\n" not in str(err.value)


def test_unknown_size_field_is_rejected():
    with pytest.raises(ConfigError, match="unknown field"):
        resolve_size("reformer", "s", STUDY_CTX, seg_len=32)


@pytest.mark.parametrize("fields,message", [
    (dict(norm="sandwich"), r"bert_mlm: norm='sandwich'; allowed: post, pre"),
    (dict(mask_prob=1.5), r"bert_mlm: mask_prob=1.5 must be a number in \(0, 1\)"),
    (dict(position="alibi"), r"bert_mlm: position='alibi'; allowed: rotary, absolute"),
    (dict(position="rotary", norm="pre"), r"need position=absolute"),
])
def test_bert_mlm_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message) as err:
        resolve_size("bert_mlm", "s", STUDY_CTX, **fields)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("fields", [dict(position="rotary"), dict(position="absolute", norm="post"),
                                    dict(position="absolute", norm="pre"), dict(mask_prob=0.15)])
def test_bert_mlm_options_are_accounted(fields):
    v = get_variant("bert_mlm")
    size = resolve_size(v, "s", STUDY_CTX, **fields)
    model = v.build(size, STUDY_CTX)
    acc = v.account(size, STUDY_CTX)
    assert (acc.params_total, acc.params_nonembedding) == (model.get_num_params(False), model.get_num_params(True))
