"""What the GPU path needs that a CPU can prove: gradient accumulation equals one big batch, batch and rate
as functions of size, compile fallback, MFU and tokens/s on every row, time-aware checkpoints and
evaluation sized to a share of the training compute."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from training import checkpoint, loop
from training.device import known_peak, peak_flops
from training.errors import InputError
from training.hparams import size_hparams
from training.loop import TrainConfig, run
from study.config import StudyError, load_study

SCHEMA = "workflow/schemas/config.schema.yaml"
BASE = dict(tokens=64 * 8 * 30, seq_len=64, batch_size=8, eval_points=5, eval_tokens=2048, eval_batch_size=8,
            lr=3e-3, checkpoint_every=1000)


def _curve(path):
    return pd.read_csv(path / "curve.csv")


@pytest.mark.parametrize("variant, rtol", [("gpt2", 1e-5), ("transformer_xl", 1e-5), ("bert_causal", 1e-5),
                                           ("bert_mlm", 2e-2)])
def test_accumulated_micro_batches_equal_one_big_batch(small_data, tmp_path, variant, rtol):
    """Four micro-batches of 2 sequences accumulate to the step of one batch of 8. Causal objectives: the same
    train and eval losses at every row to rtol 1e-5 (float32 sums in another order). Masked and rtd objectives
    draw their masks per forward from the run's generator, so four micro-batches see other masks than one
    batch: the same objective and expected gradient, a trajectory equal only to within that noise (2%)."""
    torch.set_num_threads(1)
    run(variant, "xs", {}, TrainConfig(**BASE), small_data, tmp_path / "one")
    info = run(variant, "xs", {}, TrainConfig(**BASE, micro_batch=2), small_data, tmp_path / "four")
    assert info["micro_batch_size"] == 2
    a, b = _curve(tmp_path / "one"), _curve(tmp_path / "four")
    assert len(a) == len(b) >= 4
    np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=rtol)
    np.testing.assert_allclose(b["eval_loss"], a["eval_loss"], rtol=rtol)


def test_accumulation_is_not_a_smaller_batch(small_data, tmp_path):
    """The equivalence above is not vacuous: a batch of 2 (without accumulation) trains another trajectory."""
    run("gpt2", "xs", {}, TrainConfig(**BASE), small_data, tmp_path / "one")
    run("gpt2", "xs", {}, TrainConfig(**{**BASE, "batch_size": 2, "tokens": 64 * 2 * 30}), small_data, tmp_path / "small")
    assert not np.allclose(_curve(tmp_path / "small")["train_loss"].iloc[1:], _curve(tmp_path / "one")["train_loss"].iloc[1:],
                           rtol=1e-3)


def test_micro_batch_auto_is_the_whole_batch_off_cuda(small_data, tmp_path):
    info = run("gpt2", "xs", {}, TrainConfig(**BASE, micro_batch="auto"), small_data, tmp_path)
    assert info["micro_batch_size"] == 8
    with pytest.raises(InputError, match="training.micro_batch=0 must be a positive integer, auto or null"):
        TrainConfig(**BASE, micro_batch=0)


def test_every_row_has_tokens_per_second_and_mfu(small_data, tmp_path):
    info = run("gpt2", "xs", {}, TrainConfig(**BASE), small_data, tmp_path)
    curve = _curve(tmp_path)
    assert (curve["tokens_per_s"] > 0).all() and (curve["mfu"] > 0).all() and (curve["mfu"] < 1).all()
    peak, source = peak_flops(torch.device("cpu"))
    assert source.startswith("measured fp32 matmul") and info["peak_flops"] == peak
    assert 0 < info["mfu"] < 1 and info["tokens_per_s"] > 0
    # MFU is the accounted training FLOPs per second over the peak
    assert info["mfu"] == pytest.approx(info["train_flops_per_token"] * info["tokens_per_s"] / peak, rel=1e-3)


def test_known_gpu_peaks():
    assert known_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert known_peak("NVIDIA H100 PCIe") == 756e12
    assert known_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert known_peak("NVIDIA H200") == 989e12
    assert known_peak("Some Future GPU") is None


def test_a_failing_compile_warns_once_and_trains_eagerly(small_data, tmp_path, monkeypatch, caplog):
    def broken_compile(fn, **kw):
        def compiled(*args):
            raise RuntimeError("backend exploded\nsecond line")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    info = run("gpt2", "xs", {}, TrainConfig(**BASE, compile=True), small_data, tmp_path / "c")
    eager = run("gpt2", "xs", {}, TrainConfig(**BASE, compile=False), small_data, tmp_path / "e")
    warnings = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(warnings) == 1 and "backend exploded" in warnings[0].getMessage()
    assert info["status"] == eager["status"] == "ok"
    pd.testing.assert_series_equal(_curve(tmp_path / "c")["eval_loss"], _curve(tmp_path / "e")["eval_loss"])


def test_compile_auto_is_eager_on_cpu(small_data, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: pytest.fail("compiled on a CPU under auto"))
    assert run("gpt2", "xs", {}, TrainConfig(**BASE), small_data, tmp_path)["status"] == "ok"


def test_checkpoints_by_wall_time_as_well_as_by_steps(small_data, tmp_path, monkeypatch):
    saved = []
    real = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda d, step, *a, **k: saved.append(step) or real(d, step, *a, **k))
    run("gpt2", "xs", {}, TrainConfig(**BASE), small_data, tmp_path / "steps")
    assert saved == []  # checkpoint_every 1000 > 30 steps, 30 minutes not passed
    run("gpt2", "xs", {}, TrainConfig(**BASE, checkpoint_minutes=1e-9), small_data, tmp_path / "time")
    assert saved == list(range(1, 30))  # every step: the interval has always passed (not the last: the run ends)


def test_eval_share_sizes_intermediate_evaluations_and_keeps_the_final_one_whole(small_data, tmp_path):
    cfg = dict(BASE, eval_tokens=64 * 32, eval_points=6)
    run("gpt2", "xs", {}, TrainConfig(**cfg), small_data, tmp_path / "full")
    run("gpt2", "xs", {}, TrainConfig(**cfg, eval_share=0.1), small_data, tmp_path / "share")
    full, share = _curve(tmp_path / "full"), _curve(tmp_path / "share")
    assert (full["eval_windows"] == 32).all()
    assert share["eval_windows"].iloc[-1] == 32 and share["eval_loss"].iloc[-1] == full["eval_loss"].iloc[-1]
    assert (share["eval_windows"].iloc[:-1] < 32).all() and (share["eval_windows"] >= 16).all()  # >= 2 batches of 8
    # the budget: windows x seq_len forward tokens <= 0.1 x 3 x the tokens trained since the previous row
    trained = share["tokens"].diff().fillna(share["tokens"].iloc[0])
    inner = share.iloc[:-1]
    assert ((inner["eval_windows"] * 64 <= np.maximum(0.3 * trained.iloc[:-1], 16 * 64))).all()
    # a prefix of the same fixed set: the first evaluation of both sees the same windows first
    assert share["eval_loss"].iloc[0] != full["eval_loss"].iloc[0]


def test_batch_and_rate_by_size_follow_the_olmo_ladder():
    rule = {"scale_by_size": {"rule": "power"}, "seq_len": 2048, "batch_size": 8, "lr": 2e-3, "wsd": {}}
    at_ref = size_hparams(rule, {}, "x", 108_000_000)
    assert (at_ref.batch_size, at_ref.lr) == (160, pytest.approx(0.0047))
    small = size_hparams(rule, {}, "x", 108_000_000 / 8)  # 8x smaller: batch / 4, rate x 2
    assert (small.batch_size, small.lr) == (40, pytest.approx(0.0094))
    tiny = size_hparams({**rule, "seq_len": 128}, {}, "x", 1000)
    assert tiny.batch_size >= 1
    with_multiple = size_hparams({**rule, "scale_by_size": {"rule": "power", "batch_multiple": 16}}, {}, "x", 2e7)
    assert with_multiple.batch_size % 16 == 0
    warm = size_hparams({**rule, "warmup_steps": 100}, {}, "x", 108_000_000)
    assert warm.warmup_tokens == 100 * 160 * 2048


def _study(**training):
    cfg = {"variants": {"gpt2": {"sizes": ["xs", "s", "m", "l"]}}, "budgets": {"kind": "tokens"},
           "training": {"tokens": 400_000, "seq_len": 64, **training}}
    return load_study(cfg, SCHEMA)


def test_the_default_rule_resolves_to_the_fixed_batch_and_rate():
    default = load_study({}, SCHEMA)
    tc = [r["train_config"] for r in default["runs"]]
    assert {t["batch_size"] for t in tc} == {8} and {t["warmup_tokens"] for t in tc} == {25600}
    cfg = json.loads(json.dumps(default["config"]))
    assert {(r["variant"], t["lr"]) for r, t in zip(default["runs"], tc)} == {
        (r["variant"], cfg["variants"][r["variant"]].get("lr", cfg["training"]["lr"])) for r in default["runs"]}


def test_a_power_rule_gives_larger_sizes_larger_batches_and_lower_rates():
    study = _study(scale_by_size={"rule": "power", "reference_params": 100_000, "batch_tokens": 4096}, warmup_steps=10,
                   tokens=2_000_000)
    by_size = {r["size"]: r["train_config"] for r in study["runs"]}
    batches = [by_size[s]["batch_size"] for s in ("xs", "s", "m", "l")]
    rates = [by_size[s]["lr"] for s in ("xs", "s", "m", "l")]
    assert batches == sorted(batches) and batches[0] < batches[-1]
    assert rates == sorted(rates, reverse=True)
    assert all(t["warmup_tokens"] == 10 * t["batch_size"] * 64 for t in by_size.values())


def test_a_table_rule_and_its_missing_size():
    table = {"xs": {"batch_size": 4, "lr": 1e-3}, "s": {"batch_size": 8, "lr": 8e-4}}
    cfg = {"variants": {"gpt2": {"sizes": ["xs", "s", "m"]}}, "budgets": {"kind": "tokens"},
           "training": {"tokens": 400_000, "seq_len": 64, "scale_by_size": {"rule": "table", "table": table}}}
    with pytest.raises(StudyError, match="training.scale_by_size.table has no entry for size 'm'"):
        load_study(cfg, SCHEMA)
    cfg["variants"]["gpt2"]["sizes"] = ["xs", "s"]
    by_size = {r["size"]: r["train_config"] for r in load_study(cfg, SCHEMA)["runs"]}
    assert (by_size["xs"]["batch_size"], by_size["xs"]["lr"]) == (4, 1e-3)


def test_too_few_steps_in_a_phase_is_one_line_naming_the_run():
    with pytest.raises(StudyError) as err:
        _study(tokens=64 * 8 * 20, wsd={"warmup_tokens": 64 * 8 * 18})
    text = str(err.value)
    assert "\n" not in text and "gpt2/xs/seed0_lr0.002/D1.02e4: its stable phase has 0 optimiser step(s)" in text
    assert "training.min_phase_steps=10" in text


def test_execution_settings_are_not_params():
    study = _study(micro_batch=4, checkpoint_minutes=5)
    assert all("micro_batch" not in r["train_config"] and "checkpoint_minutes" not in r["train_config"]
               for r in study["runs"] + study["stables"])


def test_loop_module_constant_names_the_execution_fields():
    assert set(loop.EXECUTION_FIELDS) <= {f for f in TrainConfig.__dataclass_fields__}


def test_the_final_evaluation_keeps_its_per_batch_losses_for_paired_comparisons(small_data, tmp_path):
    from training.collect import collect

    cfg = dict(BASE, eval_tokens=64 * 32)
    info = run("gpt2", "xs", {}, TrainConfig(**cfg), small_data, tmp_path / "a")
    batches = info["final_eval_losses"]
    curve = _curve(tmp_path / "a")
    assert len(batches) == 4 and np.mean(batches) == pytest.approx(curve["eval_loss"].iloc[-1], rel=1e-5)
    table, _ = collect([tmp_path / "a"])
    last = table["eval_batch_losses"].iloc[-1]
    assert [float(x) for x in last.split()] == pytest.approx(batches, rel=1e-5)
    assert (table["eval_batch_losses"].iloc[:-1] == "").all()


def test_evaluation_builds_no_autograd_graph(small_data, tmp_path, monkeypatch):
    seen = []
    real = loop.eval_metrics

    def spy(model, batches, device):
        original = model.fixed_eval_losses
        model.fixed_eval_losses = lambda b: seen.append(torch.is_grad_enabled()) or original(b)
        try:
            return real(model, batches, device)
        finally:
            model.fixed_eval_losses = original

    monkeypatch.setattr(loop, "eval_metrics", spy)
    run("gpt2", "xs", {}, TrainConfig(**BASE), small_data, tmp_path)
    assert seen and not any(seen)
