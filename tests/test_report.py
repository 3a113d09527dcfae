"""The PDF report, built from analysis tables of a crafted study: sections, variants, CI
figures and the caveats the input triggers appear in its text; a changed fit table changes it."""
import io

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader

from analysis.io import write_figure
from analysis.options import AnalysisOptions
from analysis.report.plots import all_figures
from analysis.report.pdf import (SECTIONS, ReportInputs, build_report, ci, fmt, lr_sweep_table,
                             planned_bracketing_sentence)
from analysis.stages import analyse, fit_stage
from analysis.synthetic import synthetic_curves
from study.config import validate_config


@pytest.fixture(scope="module")
def crafted(root, tmp_path_factory):
    rng = np.random.default_rng(3)
    parts = [
        synthetic_curves(rng, variant="gpt2", objective="causal", alpha=0.20),
        synthetic_curves(rng, variant="reformer", objective="causal", alpha=0.26, C_c=3e16),
        synthetic_curves(rng, variant="bert_mlm", objective="masked", alpha=0.15),
        synthetic_curves(rng, variant="tiny", objective="causal", alpha=0.2, sizes=(("s", 2e6), ("m", 6e6))),
    ]
    curves = pd.concat(parts, ignore_index=True)
    curves["lr"] = 0.002
    curves["status"] = "ok"
    # one gpt2 run diverged: it must be excluded and listed
    bad = synthetic_curves(rng, variant="gpt2", objective="causal", alpha=0.2, sizes=(("xl2", 1.6e8),))
    bad["lr"], bad["status"] = 0.002, "diverged"
    curves = pd.concat([curves, bad], ignore_index=True)
    curves["run"] = curves["variant"] + "/" + curves["size"] + "/seed0_lr0.002"
    last = curves.sort_values("tokens").groupby("run").tail(1)
    runs = pd.DataFrame({
        "run": last["run"], "variant": last["variant"], "objective": last["objective"], "size": last["size"],
        "seed": 0, "lr": 0.002, "status": last["status"], "params_total": last["params_total"],
        "params_nonembedding": last["params_nonembedding"], "final_loss": last["loss"], "tokens": last["tokens"],
        "flops": last["flops"], "flops_6n": last["flops_6n"],
        "causal_leak": np.where(last["variant"] == "reformer", 0.03, np.nan),
        "diverged_step": np.where(last["status"] == "diverged", 17, np.nan),
        "device": "cpu (test)", "elapsed_s": 1.0, "corpus_sha256": "ab" * 32,
    })
    opts = AnalysisOptions(n_boot=100)
    tables = analyse(curves, opts, np.random.default_rng(0))
    alt = fit_stage(curves, AnalysisOptions(n_boot=100, compute="flops_6n"), np.random.default_rng(0))["fits"]
    fig_dir = tmp_path_factory.mktemp("figs")
    figures = {stem: write_figure(fig, fig_dir / f"{stem}.png") for stem, fig in all_figures(curves, tables).items()}
    config = validate_config({"study_name": "crafted study", "variants": {
        v: {"sizes": sorted(curves.loc[curves["variant"] == v, "size"].unique())} for v in curves["variant"].unique()}},
        root / "workflow" / "schemas" / "config.schema.yaml")
    # the masked variant sits just under the unigram baseline: flagged as not having learned beyond it
    unigram = float(runs.loc[runs["variant"] == "bert_mlm", "final_loss"].min()) + 0.05
    return ReportInputs(config=config, curves=curves, runs=runs, tables=tables, alt_fits=alt, figures=figures,
                        environment={"date": "2026-11-23", "commit": "test", "device": "cpu (test)"},
                        baselines={"chance_loss": 7.62, "unigram_loss": unigram})


def pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_report_has_every_section_variant_ci_and_caveat(crafted):
    data = build_report(crafted)
    assert data.startswith(b"%PDF") and len(data) < 10 * 2**20
    text = pdf_text(data)
    flat = " ".join(text.split())
    for section in SECTIONS:
        assert section in text, section
    for variant in ("gpt2", "reformer", "bert_mlm", "tiny"):
        assert f"Variant {variant}" in text
    for column in ("non-emb. params", "FLOPs", "budget", "final loss", "leak probe"):
        assert column in text, column
    fits = crafted.tables["fits"]
    for row in fits[(fits["form"] == "pure") & (fits["status"] == "ok") & fits["primary"]].to_dict("records"):
        assert ci(row, "alpha") in flat, (row["variant"], ci(row, "alpha"))
    assert "Objectives are not on one scale" in flat
    assert "gpt2/xl2/seed0_lr0.002 diverged at step 17" in flat
    assert "reformer: measured causal leak" in flat
    assert "Tiny scale" in flat
    cross = crafted.tables["crossovers"]
    row = cross[(cross["form"] == "pure") & (cross["crossover_verdict"] == "crossover")].iloc[0]
    assert f"frontiers cross at C = {fmt(row['crossover_c'])} FLOPs" in flat  # the built-in crossover
    assert "bert_mlm: its best run ends at" in flat and "unigram baseline" in flat
    gpt2_best = crafted.runs.loc[(crafted.runs["variant"] == "gpt2") & (crafted.runs["status"] == "ok"), "final_loss"].min()
    assert ("gpt2: its best run ends at" in flat) == (gpt2_best > crafted.baselines["unigram_loss"] - 0.25)
    assert "not bracketed" in flat
    tiny = fits[(fits["variant"] == "tiny") & (fits["form"] == "pure") & fits["primary"]].iloc[0]
    assert tiny["status"] != "ok" and "tiny (pure fit on the envelope frontier)" in flat
    pairs = crafted.tables["pairs"]  # every pure-fit verdict is on the summary page with its own words
    for r in pairs[pairs["form"] == "pure"].to_dict("records"):
        verdict = r["verdict"] if r["verdict"] != "steeper" else f"{r['steeper_variant']} steeper"
        assert f"{r['variant_a']} - {r['variant_b']}" in flat and verdict in flat, (r["variant_a"], r["variant_b"], verdict)


def test_a_changed_fit_table_changes_the_report(crafted):
    before = pdf_text(build_report(crafted))
    fits = crafted.tables["fits"].copy()
    mask = (fits["variant"] == "gpt2") & (fits["form"] == "pure") & fits["primary"]
    fits.loc[mask, ["alpha", "alpha_lo", "alpha_hi"]] = [0.4321, 0.4011, 0.4655]
    changed = ReportInputs(**{**crafted.__dict__, "tables": {**crafted.tables, "fits": fits}})
    after = " ".join(pdf_text(build_report(changed)).split())
    assert "0.432 [0.401, 0.466]" in after and "0.432 [0.401, 0.466]" not in before


def test_a_variant_whose_sizes_form_one_tier_is_called_out(crafted):
    tiers = crafted.tables["tiers"].copy()
    tiers.loc[tiers["variant"] == "reformer", "tier"] = 0
    one_tier = ReportInputs(**{**crafted.__dict__, "tables": {**crafted.tables, "tiers": tiers}})
    flat = " ".join(pdf_text(build_report(one_tier)).split())
    n = int((tiers["variant"] == "reformer").sum())
    assert f"reformer: all {n} sizes form one tier" in flat
    assert "gpt2: all" not in flat


def test_the_prediction_subsection_states_error_and_coverage_from_its_table(crafted, tmp_path):
    """The final-loss predictions of synthetic wsd runs: the report shows their figure, the median absolute
    error and the interval coverage that the predictions table gives, and names the refused runs."""
    from analysis.report.plots import plot_predictions
    from analysis.forecast.predict import predict_final_losses
    from analysis.synthetic import synthetic_wsd_runs

    pred = predict_final_losses(synthetic_wsd_runs(np.random.default_rng(0), variants=("a", "b", "c"), eval_points=5)).table
    fig = write_figure(plot_predictions(pred), tmp_path / "predictions.png")
    inp = ReportInputs(**{**crafted.__dict__, "tables": {**crafted.tables, "predictions": pred},
                          "figures": {**crafted.figures, "predictions": fig}})
    flat = " ".join(pdf_text(build_report(inp)).split())
    ok = pred[pred["status"] == "ok"]
    assert f"Median absolute error {fmt((ok['predicted'] - ok['actual']).abs().median())} nats" in flat
    assert f"the 90% intervals cover {int(ok['inside'].sum())} of {len(ok)} actual final losses" in flat
    assert f"{len(ok)} of {len(pred)} runs predicted from the first 30% of their stable phase" in flat
    refused = pred[pred["status"] == "refused"]
    assert f"refused: {len(refused)} run(s)" in flat and "need >= 2" in flat
    assert "no final-loss predictions" in " ".join(pdf_text(build_report(crafted)).split())


def test_the_appendix_shows_the_lr_sweep_and_predicted_vs_measured_job_time(crafted):
    """The recorded lr sweep: every rate's loss, the best rate per variant marked, the rate this study used;
    the job-time table: the measured / predicted ratio stated from its rows."""
    sweep = pd.DataFrame({"variant": ["gpt2"] * 3 + ["reformer"] * 2, "size": "s",
                          "lr": [0.001, 0.004, 0.008, 0.002, 0.004], "final_loss": [4.3, 4.05, 4.29, 4.6, 4.47]})
    jobs = pd.DataFrame({"job": ["gpt2/s/seed0_lr0.002/stable", "gpt2/s/seed0_lr0.002/C1e12"], "seconds": [120.0, 30.0],
                         "max RSS (MB)": [500, 500], "predicted_s": [100.0, 30.0], "ratio": [1.2, 1.0]})
    inp = ReportInputs(**{**crafted.__dict__, "lr_sweep": sweep, "job_runtimes": jobs})
    flat = " ".join(pdf_text(build_report(inp)).split())
    assert "Learning-rate sweep" in flat and "Transfer assumption" in flat
    table = lr_sweep_table(sweep, crafted.runs)
    assert table.loc[table["best"] == "yes", ["variant", "lr"]].values.tolist() == [["gpt2", 0.004], ["reformer", 0.004]]
    assert set(table["lr of this study"]) == {"0.002"}
    assert "median ratio 1.10 over 2 jobs" in flat and "2.5 min measured vs 2.2 min predicted (ratio 1.15)" in flat
    assert "Learning-rate sweep" not in " ".join(pdf_text(build_report(crafted)).split())


def test_the_plans_expected_bracketing_is_set_against_the_isoflop_tables():
    iso = pd.DataFrame({"variant": ["a", "a", "b", "b"], "budget": ["C1e11", "C2e11", "C5.47e11", "C1e12"],
                        "bracketed": [True, False, False, True]})
    line = planned_bracketing_sentence({"expected_unbracketed": {"b": [5.47e11]}}, iso)
    assert line == ("Bracketing as planned: the plan expected 3 of 4 budgets to bracket and 2 of them did (not: a C2e11); "
                    "of the 1 it placed below a floor to fit the time, 0 bracketed.")
    assert planned_bracketing_sentence({}, iso) == ""  # a study not written by `archscale plan`


def test_budget_levels_given_with_their_sizes_and_per_variant_are_reported(crafted):
    """The default study lists levels as {level, sizes} and gives some variants their own levels."""
    cfg = {**crafted.config, "budgets": {**crafted.config["budgets"], "kind": "isoflop",
                                         "levels": [{"level": 7e11, "sizes": ["s", "m", "l"]}, 1.4e12]},
           "variants": {**crafted.config["variants"],
                        "bert_mlm": {**crafted.config["variants"]["bert_mlm"],
                                     "budgets": {"levels": [{"level": 3.5e11, "sizes": ["s", "m", "l"]}]}}}}
    flat = " ".join(pdf_text(build_report(ReportInputs(**{**crafted.__dict__, "config": cfg}))).split())
    assert f"{fmt(7e11)}, {fmt(1.4e12)} (bert_mlm: {fmt(3.5e11)})" in flat
