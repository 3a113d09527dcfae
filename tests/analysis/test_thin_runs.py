"""Issue 13, item 8: densely logged runs are thinned to about K log-spaced points before the CLI's
analysis, keeping what the run-level results depend on (first, final and best points)."""
import numpy as np
import pandas as pd
import pytest

from analysis_testlib import ROOT  # noqa: F401  (puts the repo root on sys.path)
import analysis.__main__ as cli
from analysis.synthetic import synthetic_study
from analysis.curves.table import run_table, thin_runs, validate_curves


@pytest.fixture(scope="module")
def dense():
    df = validate_curves(synthetic_study(np.random.default_rng(2), n_variants=2, n_points=3000))
    short = validate_curves(synthetic_study(np.random.default_rng(2), n_variants=1, n_points=21))
    return df, short


def test_thinning_keeps_first_last_and_best_points(dense):
    df, _ = dense
    thin, n = thin_runs(df, 100)
    assert n == df["run"].nunique()
    per_run = thin.groupby("run").size()
    assert (per_run <= 103).all() and (per_run >= 30).all()
    cols = ["run", "n_points", "final_tokens", "final_loss", "best_loss", "params_total", "status"]
    full, small = run_table(df)[cols], run_table(thin)[cols]
    assert (full.drop(columns="n_points") == small.drop(columns="n_points")).all(axis=None)
    assert thin.groupby("run")["tokens"].min().equals(df.groupby("run")["tokens"].min())
    # log-spaced: in log tokens, no gap is much wider than the run's range / K (where the run has points)
    for _, g in thin.groupby("run"):
        lt = np.log(g["tokens"].to_numpy(float))
        full_lt = np.log(df.loc[df["run"] == g["run"].iloc[0], "tokens"].to_numpy(float))
        widest_gap_available = np.diff(full_lt).max()
        assert np.diff(lt).max() <= max(2.5 * (lt[-1] - lt[0]) / 100, 1.01 * widest_gap_available)
    assert list(thin.columns) == list(df.columns)
    pd.testing.assert_frame_equal(validate_curves(thin), thin, check_like=True)  # still valid, same order


def test_short_runs_and_max_points_zero_are_untouched(dense):
    df, short = dense
    same, n = thin_runs(short, 100)
    assert n == 0 and same.equals(short)
    same, n = thin_runs(df, 0)
    assert n == 0 and same.equals(df)
    with pytest.raises(ValueError, match="max_points=1 is invalid"):
        thin_runs(df, 1)


def test_cli_says_it_thinned(tmp_path, capsys, dense):
    df, _ = dense
    df.drop(columns="run").to_csv(tmp_path / "c.csv", index=False)
    assert cli.main([str(tmp_path / "c.csv"), "--out", str(tmp_path / "o"), "--n-boot", "5", "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("thinned: 8 run(s) with more than 100 evaluation points were analysed at about 100 "
                          "log-spaced points each")
    assert cli.main([str(tmp_path / "c.csv"), "--out", str(tmp_path / "o"), "--n-boot", "0", "--no-figures",
                     "--max-points-per-run", "0"]) == 0
    assert not any(line.startswith("thinned") for line in capsys.readouterr().out.splitlines())
