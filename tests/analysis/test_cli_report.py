"""Issue 12, item 7: ``python -m analysis`` speaks (alpha with its interval per variant, verdicts, tiers, what was
dropped, warnings, fragile headlines) and with --report writes the PDF report of a table from elsewhere, with its
sections, the alpha intervals and the sensitivity table; the summary page marks fragile verdicts."""
import io

import numpy as np
import pandas as pd
import pytest
from analysis_testlib import ROOT  # noqa: F401  (puts the repo root on sys.path)
from pypdf import PdfReader

import analysis.__main__ as cli
from analysis.io import read_tables
from analysis.report.pdf import SECTIONS, build_report, ci
from analysis.synthetic import synthetic_study


def pdf_text(data: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages).split())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The CLI on a synthetic table of 4 variants (v0 and v3 share the causal objective: one tested pair)."""
    tmp = tmp_path_factory.mktemp("cli")
    synthetic_study(np.random.default_rng(5), n_variants=4).to_csv(tmp / "ladder.csv", index=False)
    out = tmp / "out"
    with pytest.MonkeyPatch.context() as mp:
        lines = []
        mp.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
        assert cli.main([str(tmp / "ladder.csv"), "--out", str(out), "--n-boot", "60", "--report"]) == 0
    return out, lines


def test_the_console_gives_alpha_with_intervals_verdicts_drops_and_warnings(run):
    out, lines = run
    fits = pd.read_csv(out / "fits.csv")
    pure = fits[(fits["form"] == "pure") & fits["primary"]]
    for r in pure.to_dict("records"):
        assert any(line.startswith(f"  {r['variant']}: {ci(r, 'alpha')}; ") and "across analysis choices" in line
                   for line in lines), (r["variant"], lines)
    pairs = pd.read_csv(out / "pairs.csv")
    tested = pairs[(pairs["form"] == "pure") & pairs["family"].notna()].iloc[0]
    verdict = f"{tested['steeper_variant']} steeper" if tested["verdict"] == "steeper" else tested["verdict"]
    assert any(line.startswith(f"  v0 vs v3: {verdict} (delta alpha") for line in lines), lines
    assert "warning: no replicates: tier floor from eval_loss_se (v0, v1, v2, v3)" in lines
    dropped = [line for line in lines if line.startswith("dropped (early transient): default fraction: 16 run(s)")]
    assert len(dropped) == 1, lines
    assert any(line.startswith("sensitivity: ") and "change under another analysis choice" in line for line in lines)
    n_tables, n_figures = len(list(out.glob("*.csv"))), len(list(out.glob("figures/*.png")))
    assert {"sensitivity.csv", "sensitivity_summary.csv"} <= {p.name for p in out.glob("*.csv")}
    assert lines[-1] == f"wrote {n_tables} tables and {n_figures} figures and report.pdf to {out}"


def test_report_pdf_of_a_table_from_elsewhere(run):
    out, _ = run
    text = pdf_text((out / "report.pdf").read_bytes())
    for section in SECTIONS:
        assert section in text, section
    assert "not trained by this pipeline" in text and "came from elsewhere" in text
    fits = pd.read_csv(out / "fits.csv")
    for r in fits[(fits["form"] == "pure") & fits["primary"]].to_dict("records"):
        assert ci(r, "alpha") in text, r["variant"]
    assert "Sensitivity to analysis choices" in text
    assert "headline subject baseline range (same form) fragile changes under" in text
    summary = pd.read_csv(out / "sensitivity_summary.csv")
    for r in summary[summary["headline"] == "tiers"].to_dict("records"):
        assert f"tiers {r['subject']} {r['baseline_verdict']}" in text
    assert "verdict fragile" in text  # the summary page's verdict table has the fragile column


def test_the_summary_page_marks_a_fragile_verdict(run):
    out, _ = run
    tables = read_tables(out)
    inputs = cli.report_inputs(tables, cli.read_curves(out.parent / "ladder.csv"), cli.AnalysisOptions(), {},
                               out.parent / "ladder.csv")
    summary = tables["sensitivity_summary"].copy()
    pick = (summary["headline"] == "verdict") & (summary["subject"] == "v0 vs v3")
    summary.loc[pick, ["fragile", "differs_under"]] = [True, "compute = flops_6n"]
    before = pdf_text(build_report(inputs))
    inputs.tables = {**tables, "sensitivity_summary": summary}
    after = pdf_text(build_report(inputs))
    assert "v0 - v3" in after
    row = after[after.index("v0 - v3"):][:160]
    assert " yes" in row and "compute = flops_6n" in after
    assert " yes" not in before[before.index("v0 - v3"):][:160]


def test_without_sensitivity_the_report_says_so(tmp_path):
    synthetic_study(np.random.default_rng(2), n_variants=1).to_csv(tmp_path / "c.csv", index=False)
    assert cli.main([str(tmp_path / "c.csv"), "--out", str(tmp_path / "o"), "--n-boot", "10", "--no-figures",
                     "--no-sensitivity", "--report"]) == 0
    assert not (tmp_path / "o" / "sensitivity.csv").exists()
    text = pdf_text((tmp_path / "o" / "report.pdf").read_bytes())
    assert "Sensitivity to analysis choices Not computed" in text
