"""The optional early-stop rule through Snakemake (training.early_stop): a study given a reference whose
frontier lies far below every run, with its optimum at size m, stops the stable run of the size that does not
bracket that optimum (xs) at its check, records its budgets that branch later as stopped, trains its budget
that branched earlier and every run of the other sizes, and its analysis and report run on what is left."""
import json
import math

import pandas as pd
import pytest
import yaml
from pypdf import PdfReader

from snakemake_helpers import snakemake

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stopped_study(root, smoke_study, tmp_path_factory):
    work = tmp_path_factory.mktemp("early_stop")
    reference = pd.read_csv(smoke_study / "results" / "analysis" / "curves.csv")
    # the smoke study's curves with every run's losses scaled: the drops and biases the predictions borrow are
    # ratios within a run and stay as they were, but the frontier lies below what any run reaches (every
    # prediction is off it), and size m is its optimum at every budget (so s, m and l bracket it and go on)
    scale = reference["size"].map({"m": 0.3}).fillna(0.5)
    reference.assign(loss=reference["loss"] * scale).to_csv(work / "reference.csv", index=False)
    cfg = yaml.safe_load((root / "tests" / "smoke" / "config.yaml").read_text())
    cfg["seeds"] = [0]
    cfg["variants"] = {"gpt2": {"sizes": ["xs", "s", "m", "l"]}}
    cfg["training"]["early_stop"] = {"enabled": True, "reference": "reference.csv"}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(root, work)
    return work


def test_the_stable_run_off_the_bracket_stops_at_its_check_and_its_later_budgets_are_recorded_stopped(
        root, stopped_study, monkeypatch):
    from study.config import load_study

    monkeypatch.chdir(stopped_study)  # the config names its reference relative to the study's folder
    cfg = yaml.safe_load((stopped_study / "config.yaml").read_text())
    study = load_study(cfg, root / "workflow" / "schemas" / "config.schema.yaml")
    runs = stopped_study / "results" / "runs"
    tps = cfg["training"]["batch_size"] * cfg["training"]["seq_len"]
    n_stopped = n_trained = 0
    for s in study["stables"]:
        info = json.loads((runs / s["lineage"] / "stable" / "run.json").read_text())
        check = math.ceil(0.3 * s["stable_tokens"] / tps)
        if s["size"] != "xs":  # s, m, l bracket the optimum (or have too few early points to predict): never stopped
            assert info["status"] == "ok" and info["steps_done"] * tps == s["stable_tokens"]
            assert not info["early_stop"]["stop"] and "goes on: " in info["early_stop"]["reason"]
            continue
        assert info["status"] == "stopped" and info["steps_done"] == check, info["early_stop"]
        assert info["early_stop"]["stop"] and "predicted off the frontier" in info["early_stop"]["reason"]
        assert (runs / s["lineage"] / "stable" / "checkpoints" / f"step-{check:08d}.json").is_file()
        for r in (r for r in study["runs"] if r["lineage"] == s["lineage"]):
            run = json.loads((runs / r["run_id"] / "run.json").read_text())
            curve = pd.read_csv(runs / r["run_id"] / "curve.csv")
            if r["branch_tokens"] > check * tps:
                n_stopped += 1
                assert run["status"] == "stopped" and set(curve["phase"]) == {"stable"}
                stop = run["early_stop"]
                assert stop["budget"] == r["budget"] and stop["lo"] > stop["frontier"] and stop["off_frontier"]
            else:
                n_trained += 1
                assert run["status"] == "ok" and curve["tokens"].iloc[-1] == r["budget_tokens"]
    assert n_stopped == 2 and n_trained == 1  # xs: C3e10 and C6e10 stopped, C1.5e10 trained
    s_info = json.loads((runs / "gpt2" / "s" / "seed0_lr0.002" / "stable" / "run.json").read_text())
    assert "size s brackets the expected optimum" in s_info["early_stop"]["reason"]
    iso = pd.read_csv(stopped_study / "results" / "analysis" / "fit" / "gpt2" / "flops" / "isoflop.csv")
    assert iso.set_index("budget").loc["C6e10", "sizes"] == "s m l"  # the bracket around m is kept


def test_stopped_runs_are_left_out_of_the_frontier_and_named_in_the_tables_and_report(stopped_study):
    analysis = stopped_study / "results" / "analysis"
    runs = pd.read_csv(analysis / "runs.csv")
    stopped = runs[runs["status"] == "stopped"]
    assert len(stopped) and (stopped["stop_lo"] > stopped["stop_frontier"]).all()
    used = pd.read_csv(analysis / "frontier" / "runs.csv").set_index("run")
    assert (used.loc[stopped["run"], "reason"] == "stopped early: predicted off the frontier").all()
    assert not used.loc[stopped["run"], "used"].any()
    finals = pd.read_csv(analysis / "frontier" / "final_points.csv")
    assert not set(finals["run"]) & set(stopped["run"])
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(stopped_study / "results" / "report" /
                                                                  "report.pdf").pages).split())
    assert f"{stopped['run'].iloc[0]} was stopped early by the early-stop rule" in text


def test_the_rule_needs_a_wsd_study_and_a_reference_table(root, tmp_path):
    cfg = yaml.safe_load((root / "tests" / "smoke" / "config.yaml").read_text())
    (tmp_path / "other.csv").write_text("variant,loss\ngpt2,3.0\n")
    for change, message in [({"enabled": True, "reference": "missing.csv"}, "is not a file"),
                            ({"enabled": True, "reference": "other.csv"}, "has no column(s) run, budget, tokens")]:
        cfg["training"]["early_stop"] = change
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
        out = snakemake(root, tmp_path, "-n", check=False)
        lines = [line for line in (out.stdout + out.stderr).splitlines() if "archscale:" in line]
        assert out.returncode != 0 and len(lines) == 1 and message in lines[0], out.stderr[-2000:]
    cfg["training"]["schedule"] = "cosine"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake(root, tmp_path, "-n", check=False)
    assert out.returncode != 0 and "needs training.schedule wsd" in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()
