"""Stage API: validation messages, end-to-end stages, CLI, determinism."""
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from analysis_testlib import ROOT, make_run  # first: puts the repo root on sys.path

from analysis import stages
from analysis.io import read_tables, write_tables
from analysis.options import AnalysisOptions
from analysis.synthetic import synthetic_study
from analysis.curves.table import CurveTableError, validate_curves

OPTS = AnalysisOptions(n_boot=40, n_boot_approach3=10)


@pytest.fixture(scope="module")
def study():
    return synthetic_study(np.random.default_rng(3), n_variants=3)


@pytest.fixture(scope="module")
def tables(study):
    return stages.analyse(study, OPTS, np.random.default_rng(OPTS.seed))


def test_missing_column_message(study):
    with pytest.raises(CurveTableError, match=r"missing column\(s\) 'flops_6n'; required: variant, objective"):
        validate_curves(study.drop(columns="flops_6n"))


@pytest.mark.parametrize("col, value, pattern", [
    ("loss", 0.0, r"column 'loss' has 1 non-positive"),
    ("flops", -1.0, r"column 'flops' has 1 non-positive"),
    ("loss", np.nan, r"1 NaN value\(s\) in column 'loss'"),
    ("objective", "lm", r"'objective' has value 'lm'; use one of causal, masked, rtd"),
])
def test_bad_values_messages(study, col, value, pattern):
    bad = study.copy()
    bad[col] = bad[col].astype(object)
    bad.loc[5, col] = value
    with pytest.raises(CurveTableError, match=pattern):
        validate_curves(bad)


def test_options_validation_names_value():
    with pytest.raises(ValueError, match=r"compute='flops6'"):
        AnalysisOptions(compute="flops6")


def test_fit_refused_with_fewer_than_3_runs(study):
    two = study[(study["variant"] == "v0") & study["size"].isin(["s", "m"])]
    fits = stages.fit_stage(two, OPTS, np.random.default_rng(0))["fits"].set_index(["frontier", "form"])
    assert set(fits.loc["envelope", "status"]) == {"refused"}
    assert fits.loc["envelope", "note"].str.contains("2 usable run").all()
    assert set(fits.loc["final", "status"]) == {"refused", "failed"}  # Approach 3 fails: 2 points
    assert fits.loc[("final", "pure"), "note"] == "fit refused: 2 final point(s) of 2 size(s); need >= 3 sizes"
    assert fits["alpha"].isna().all()


def test_tables_well_formed(tables):
    for name in ("frontier_points", "frontier_grid", "frontier_summary", "fits", "bootstrap", "size_fits",
                 "pairs", "crossovers", "tiers", "extrapolation", "lr_choice", "runs"):
        assert name in tables, name
    fits = tables["fits"]
    assert set(fits["form"]) == {"pure", "eterm", "approach3"}
    lc = fits[fits["primary"]]
    assert set(lc["form"]) == {"pure", "eterm"} and (lc["frontier"] == "envelope").all()
    assert (lc["status"] == "ok").all()
    assert (lc["alpha_lo"] <= lc["alpha"]).all() and (lc["alpha"] <= lc["alpha_hi"]).all()
    assert (lc["alpha_lo"] < lc["alpha_hi"]).all()
    # every size trained on one budget: Approach 3 (final points only) cannot separate N from D
    a3 = fits[fits["form"] == "approach3"]
    assert (a3["status"] == "failed").all() and a3["note"].str.contains("distinct N and D").all()
    assert len(tables["pairs"]) == 2 * 3  # 3 variants -> 3 pairs, per form


def test_per_variant_fit_equals_joint(study):
    rng = lambda: np.random.default_rng(11)
    joint = stages.fit_stage(study, OPTS, rng())
    one = stages.fit_stage(study[study["variant"] == "v1"], OPTS, rng())
    pd.testing.assert_frame_equal(joint["fits"][joint["fits"]["variant"] == "v1"].reset_index(drop=True),
                                  one["fits"])
    jb = joint["bootstrap"]
    pd.testing.assert_frame_equal(jb[jb["variant"] == "v1"].reset_index(drop=True), one["bootstrap"])


def test_analyse_equals_stage_calls(study, tables):
    fr = stages.frontier_stage(study, OPTS)
    ft = stages.fit_stage(study, OPTS, np.random.default_rng(OPTS.seed))
    cp = stages.compare_stage(study, ft, OPTS, np.random.default_rng(OPTS.seed))
    staged = {**fr, **ft, **cp, **stages.predict_stage(study)}
    assert staged.keys() == tables.keys()
    for k in tables:
        pd.testing.assert_frame_equal(staged[k], tables[k], obj=k)


def test_write_read_roundtrip(tables, tmp_path):
    write_tables(tables, tmp_path)
    back = read_tables(tmp_path)
    assert back.keys() == tables.keys()
    f = back["fits"]
    np.testing.assert_allclose(f["alpha"], tables["fits"]["alpha"], rtol=1e-9)
    # deterministic: writing again gives identical bytes
    first = (tmp_path / "fits.csv").read_bytes()
    write_tables(tables, tmp_path)
    assert (tmp_path / "fits.csv").read_bytes() == first
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_cli_end_to_end(tmp_path):
    df = synthetic_study(np.random.default_rng(5), n_variants=2)
    df.to_csv(tmp_path / "curves.csv", index=False)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "analysis", str(tmp_path / "curves.csv"), "--out", str(out),
                        "--n-boot", "20", "--seed", "1"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()  # one budget per size: only Approach 3 is refused; no warnings
    assert re.fullmatch(rf"wrote \d+ tables and \d+ figures to {re.escape(str(out))}", lines[-1])
    problems = [line for line in lines if line.startswith(("not used", "refused", "failed", "note"))]
    assert all(line.startswith(("failed: v0 L(C) fits approach3", "failed: v1 L(C) fits approach3"))
               for line in problems), lines
    assert r.stderr == ""
    for name in ("fits", "frontier_grid", "pairs", "tiers", "extrapolation", "crossovers"):
        assert (out / f"{name}.csv").is_file()
    assert (out / "figures" / "curves_v0.png").stat().st_size > 1000
    fits = pd.read_csv(out / "fits.csv")
    assert (fits.loc[fits["primary"], "status"] == "ok").all()


def test_cli_reports_bad_input(tmp_path):
    make_run("a", "s", 1e6, [1e6, 2e6], [3.0, 2.9]).drop(columns="loss").to_csv(tmp_path / "c.csv", index=False)
    r = subprocess.run([sys.executable, "-m", "analysis", str(tmp_path / "c.csv"), "--out", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert "missing column(s) 'loss'" in r.stderr


def test_workflow_per_variant_jobs_through_csv(study, tables, tmp_path):
    """The workflow's path: one fit job per variant, tables through CSV, then one compare job."""
    parts = []
    for v in sorted(study["variant"].unique()):
        ft = stages.fit_stage(study[study["variant"] == v], OPTS, np.random.default_rng(OPTS.seed))
        write_tables(ft, tmp_path / v)
        parts.append(read_tables(tmp_path / v))
    merged = {k: pd.concat([p[k] for p in parts], ignore_index=True) for k in parts[0]}
    cp = stages.compare_stage(study, merged, OPTS, np.random.default_rng(OPTS.seed))
    for k in ("pairs", "crossovers", "tiers", "extrapolation"):
        pd.testing.assert_frame_equal(cp[k], tables[k], check_dtype=False, rtol=1e-6, obj=k)


def test_analysis_imports_no_heavy_packages():
    code = ("import sys, analysis.stages, analysis.report.plots, analysis.__main__; "
            "bad = [m for m in ('torch', 'snakemake', 'models', 'training') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_run_column_and_derived_ids(study):
    v = validate_curves(study)
    assert v["run"].iloc[0] == "v0/l/seed0"
    lr = validate_curves(study.assign(lr=3e-4))
    assert lr["run"].iloc[0] == "v0/l/seed0_lr0.0003"
    bad = study.assign(run="r").astype({"run": object})
    bad.loc[3, "run"] = None
    with pytest.raises(CurveTableError, match="column 'run' has 1 missing"):
        validate_curves(bad)
    with pytest.raises(CurveTableError, match="mixes several variants, sizes or seeds"):
        validate_curves(study.assign(run="same"))


def test_a_table_of_final_points_gets_its_headline_fit_from_them(tmp_path, capsys):
    """One row per run, as papers publish them: the envelope of single points failed ("frontier covers only 2
    grid point(s)") while a valid final-point fit sat unused in fits.csv."""
    import numpy as np

    from analysis import __main__ as cli
    from analysis.synthetic import synthetic_study

    study = synthetic_study(np.random.default_rng(3), n_variants=1)
    last = study.sort_values("tokens").groupby(["variant", "size", "seed"]).tail(1)
    assert (last.groupby(["variant", "size", "seed"]).size() == 1).all()
    path = tmp_path / "finals.csv"
    last.to_csv(path, index=False)
    assert cli.main([str(path), "--out", str(tmp_path / "out"), "--n-boot", "50", "--no-figures"]) == 0
    text = capsys.readouterr().out
    assert "on the final-point frontier" in text and "no fit" not in text
