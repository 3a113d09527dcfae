"""Predicting a wsd run's final loss from the first 30% of its stable phase (analysis/forecast/predict.py)."""
import numpy as np
import pandas as pd
import pytest

from analysis.forecast.predict import PREDICTION_COLS, PredictError, fit_early_curve, predict_final_losses
from analysis.synthetic import synthetic_wsd_runs

SYNTH = dict(variants=("a", "b", "c"), seeds=(0, 1))


def _curve(rng, E=3.2, A=80.0, a=0.45, n=10, sd=0.002, warmup=25_600):
    tokens = np.geomspace(3e4, 4e6, n)
    loss = (E + A * (tokens - warmup / 2) ** -a) * np.exp(rng.normal(0, sd, n))
    return tokens, loss


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_early_fit_recovers_the_asymptote_within_its_interval(seed):
    tokens, loss = _curve(np.random.default_rng(seed))
    fit = fit_early_curve(tokens, loss, warmup_tokens=25_600)
    lo, hi = fit.conf_int(0.05).loc["E"]
    assert lo <= 3.2 <= hi
    assert hi - lo < 1.0  # informative, not a blanket interval
    truth = 3.2 + 80.0 * (1.2e7 - 12_800) ** -0.45  # 3x past the last point
    assert abs(fit.predict(1.2e7) / truth - 1) < 3 * fit.log_se(1.2e7)[0] + 1e-3


def test_early_fit_refuses_too_few_points():
    tokens, loss = _curve(np.random.default_rng(0), n=3)
    with pytest.raises(PredictError, match="3 stable point.*need >= 4"):
        fit_early_curve(tokens, loss)
    assert fit_early_curve(tokens, loss, form="pure").conf_int().isna().all().all()  # no asymptote in A S^-a
    with pytest.raises(PredictError, match="2 stable point.*need >= 3"):
        fit_early_curve(tokens[:2], loss[:2], form="pure")


def test_predictions_cover_near_nominal_on_synthetic_wsd_runs():
    """Runs drawn from the model the predictor assumes (per-lineage curves, a per-variant cooldown drop with
    spread): its 90% intervals cover close to 90% of the final losses, pooled over replicate studies."""
    inside, errors = [], []
    for seed in range(4):
        p = predict_final_losses(synthetic_wsd_runs(np.random.default_rng(seed), **SYNTH))
        ok = p.table[p.table["status"] == "ok"]
        assert len(ok) >= 30
        inside += list(ok["inside"].astype(bool))
        errors += list(ok["rel_error"].abs())
    assert 0.80 <= np.mean(inside) <= 0.98, np.mean(inside)
    assert np.median(errors) < 0.02


def test_a_prediction_never_uses_its_own_final_loss_or_its_lineage():
    """Changing a run's cooldown (and its lineage's other budgets' cooldowns) leaves its prediction and
    its interval unchanged; changing another lineage's cooldown moves them (the drop model uses it)."""
    curves = synthetic_wsd_runs(np.random.default_rng(5), **SYNTH)
    base = predict_final_losses(curves).table.set_index("run")
    run = base.index[(base["status"] == "ok")][0]
    lineage = run.rsplit("/", 1)[0]
    changed = curves.copy()
    cool = (changed["run"].str.startswith(lineage + "/")) & (changed["phase"] == "cooldown")
    changed.loc[cool, "loss"] *= 1.5
    after = predict_final_losses(changed).table.set_index("run")
    cols = ["predicted", "lo", "hi"]
    np.testing.assert_allclose(after.loc[run, cols].astype(float), base.loc[run, cols].astype(float), rtol=1e-9)
    other = curves["variant"].eq(run.split("/")[0]) & ~curves["run"].str.startswith(lineage + "/") \
        & (curves["phase"] == "cooldown")
    moved = curves.copy()
    moved.loc[other, "loss"] *= 0.9
    assert predict_final_losses(moved).table.set_index("run").loc[run, "predicted"] < base.loc[run, "predicted"] * 0.95


def test_runs_with_too_few_stable_points_are_refused_with_a_stated_status():
    curves = synthetic_wsd_runs(np.random.default_rng(0), **SYNTH, eval_points=5)
    t = predict_final_losses(curves).table
    refused = t[t["status"] == "refused"]
    assert len(refused) > 0
    assert refused["note"].str.contains(r"stable point\(s\) after warmup in the window; need >= 2").all()
    assert refused["predicted"].isna().all()
    assert list(t.columns) == PREDICTION_COLS


def test_diverged_runs_and_tables_without_phases():
    curves = synthetic_wsd_runs(np.random.default_rng(1), **SYNTH)
    run = curves["run"].iloc[0]
    curves.loc[curves["run"] == run, "status"] = "diverged"
    base = predict_final_losses(curves).table.set_index("run")
    curves.loc[curves["run"] == run, "loss"] *= 3.0  # a diverged run's losses are no donor's drop or bias
    t = predict_final_losses(curves).table.set_index("run")
    assert t.loc[run, "status"] == "refused" and "diverged" in t.loc[run, "note"]
    pd.testing.assert_frame_equal(t.drop(index=run)[["predicted", "lo", "hi"]], base.drop(index=run)[["predicted", "lo", "hi"]])
    with pytest.raises(ValueError, match="no 'phase' column"):
        predict_final_losses(curves.drop(columns="phase"))
    with pytest.raises(ValueError, match="fraction"):
        predict_final_losses(curves, fraction=1.5)


def test_summary_numbers_come_from_the_table():
    p = predict_final_losses(synthetic_wsd_runs(np.random.default_rng(2), **SYNTH))
    ok = p.table[p.table["status"] == "ok"]
    assert p.coverage() == pytest.approx(ok["inside"].astype(bool).mean())
    assert p.median_abs_error() == pytest.approx((ok["predicted"] - ok["actual"]).abs().median())
    ci = p.conf_int()
    assert (ci["lower"] < ok.set_index("run")["predicted"]).all()
    assert isinstance(p.summary(), dict) and p.summary()["n_predicted"] == len(ok)
    assert pd.api.types.is_float_dtype(p.table["kappa"])


def test_a_window_whose_loss_does_not_fall_is_predicted_by_its_level():
    tokens = np.geomspace(3e4, 3e5, 5)
    loss = 0.416 * np.exp(np.random.default_rng(0).normal(0, 1e-3, 5)) * (tokens / 3e4) ** 0.001
    with pytest.raises(PredictError, match="does not decrease"):
        fit_early_curve(tokens, loss, form="pure")
    flat = fit_early_curve(tokens, loss, form="level")
    assert flat.predict(3e6) == pytest.approx(np.exp(np.log(loss).mean()))
    assert 0 < flat.log_se(3e6)[0] < 0.01
