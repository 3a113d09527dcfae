"""The smoke study end to end through Snakemake, then the DAG's rerun behaviour."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pypdf import PdfReader

from snakemake_helpers import snakemake

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def study(smoke_study):
    return smoke_study


def _study(root, study):
    from study.config import load_study

    cfg = yaml.safe_load((study / "config.yaml").read_text())
    return load_study(cfg, root / "workflow" / "schemas" / "config.schema.yaml")


def test_outputs_exist_and_curves_are_finite(root, study):
    resolved = _study(root, study)
    cfg = resolved["config"]
    for r in resolved["runs"]:
        run = study / "results" / "runs" / r["run_id"]
        curve = pd.read_csv(run / "curve.csv")
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "ok" and info["train_config"]["tokens"] == r["budget_tokens"]
        assert curve["tokens"].iloc[-1] == r["budget_tokens"] and curve["phase"].iloc[-1] == "cooldown"
        # tokens/s and MFU measure the steps since the previous row: none before the branch row of a cooldown
        # that resumed right at its branch (NaN there, by design)
        numbers = curve.select_dtypes("number").drop(columns=["eval_loss_se", "tokens_per_s", "mfu"])
        assert np.isfinite(numbers.to_numpy()).all()
        assert (curve["mfu"].dropna() > 0).all() and curve["mfu"].notna().sum() >= len(curve) - 1
        if r["variant"] == "gpt2" and r["budget_tokens"] > 100 * 512:
            assert curve["eval_loss"].iloc[-1] < math.log(cfg["tokenizer"]["vocab_size"]) - 1.0
    for s in resolved["stables"]:  # each lineage's stable run ends where its last budget's cooldown starts
        info = json.loads((study / "results" / "runs" / s["lineage"] / "stable" / "run.json").read_text())
        assert info["steps_done"] * 512 == s["stable_tokens"]
    table = pd.read_csv(study / "results" / "analysis" / "curves.csv")
    for col in ("variant", "objective", "size", "seed", "params_total", "params_nonembedding", "tokens", "flops",
                "flops_6n", "loss", "budget", "budget_tokens", "schedule"):
        assert col in table
    fits = pd.read_csv(study / "results" / "analysis" / "fit" / "gpt2" / "flops" / "fits.csv")
    pure = fits[(fits["form"] == "pure") & fits["primary"]].iloc[0]
    assert pure["frontier"] == "final"  # several budgets per size: the final-point frontier is primary
    assert pure["status"] == "ok" and pure["alpha_lo"] < pure["alpha"] < pure["alpha_hi"]
    assert pure["n_boot"] >= 100
    iso = pd.read_csv(study / "results" / "analysis" / "fit" / "gpt2" / "flops" / "isoflop.csv")
    assert list(iso["budget"]) == ["C1.5e10", "C3e10", "C6e10"] and (iso["n_sizes"] >= 3).all()


def test_adding_a_budget_reruns_only_its_cooldowns_and_the_analysis(root, study):
    """A budget inside every stable run's range needs only its cooldowns, and so does one beyond
    the stable runs' ends (its cooldown trains on from the stable run's last checkpoint)."""
    cfg = yaml.safe_load((study / "config.yaml").read_text())
    cfg["budgets"]["levels"] = [1.5e10, 2e10, 3e10, 6e10]
    inside = study / "budget_inside.yaml"
    inside.write_text(yaml.safe_dump(cfg))
    out = snakemake(root, study, "-n", "--quiet", "rules", config=inside)
    jobs = _job_counts(out.stdout + out.stderr)
    from study.config import load_study

    new = [r for r in load_study(cfg, root / "workflow" / "schemas" / "config.schema.yaml")["runs"]
           if r["budget"] == "C2e10"]
    assert jobs.get("cooldown") == len(new) > 0, jobs
    assert "stable" not in jobs and "corpus" not in jobs and "tokenizer" not in jobs, jobs
    assert {"curves", "frontier", "fit", "compare", "figures", "report"} <= set(jobs), jobs
    cfg["budgets"]["levels"] = [1.5e10, 3e10, 6e10, 8e10]
    beyond = study / "budget_beyond.yaml"
    beyond.write_text(yaml.safe_dump(cfg))
    out = snakemake(root, study, "-n", "--quiet", "rules", config=beyond)
    jobs = _job_counts(out.stdout + out.stderr)
    new = [r for r in load_study(cfg, root / "workflow" / "schemas" / "config.schema.yaml")["runs"]
           if r["budget"] == "C8e10"]
    # beyond the stable runs' ends: the new cooldowns train on from each stable run's last checkpoint
    assert jobs.get("cooldown") == len(new) > 0 and "stable" not in jobs, jobs


def test_report_pdf_opens_and_has_the_sections(study):
    reader = PdfReader(study / "results" / "report" / "report.pdf")
    assert len(reader.pages) >= 5
    text = "\n".join(p.extract_text() for p in reader.pages)
    for title in ("Summary", "Variant gpt2", "Comparison", "Compute accounting", "Extrapolation check", "Methods",
                  "Caveats", "Appendix"):
        assert title in text, title
    fits = pd.read_csv(study / "results" / "analysis" / "fit" / "gpt2" / "flops" / "fits.csv")
    pure = fits[(fits["form"] == "pure") & fits["primary"]].iloc[0]
    from analysis.report.pdf import ci

    assert ci(pure, "alpha") in text
    # the sensitivity rule's tables, its figure and its subsection in section 3 (issue 12, item 3)
    summary = pd.read_csv(study / "results" / "analysis" / "sensitivity" / "sensitivity_summary.csv")
    assert {"alpha", "verdict", "tiers"} <= set(summary["headline"])
    assert (study / "results" / "report" / "figures" / "sensitivity.png").stat().st_size > 1000
    flat = " ".join(text.split())
    assert "Sensitivity to analysis choices" in flat and "range (same form) fragile changes under" in flat
    pred = pd.read_csv(study / "results" / "analysis" / "predict" / "predictions.csv")  # one row per run, each stated
    assert len(pred) == pred["run"].nunique() == len(_study_runs(study)) and pred["status"].notna().all()
    assert "Final loss of every run, predicted from its beginning" in text
    assert f"{int((pred['status'] == 'ok').sum())} of {len(pred)} runs predicted" in " ".join(text.split())


def _study_runs(study):
    return pd.read_csv(study / "results" / "analysis" / "runs.csv")


def test_rerun_has_nothing_to_do(root, study):
    out = snakemake(root, study, "-n")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_changing_one_width_reruns_only_that_run_and_the_analysis(root, study):
    cfg = yaml.safe_load((study / "config.yaml").read_text())
    cfg["variants"]["gpt2"]["size_overrides"] = {"s": {"d_model": 48}}
    changed = study / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    out = snakemake(root, study, "-n", "--quiet", "rules", config=changed)
    text = out.stdout + out.stderr
    jobs = _job_counts(text)
    n_budgets = sum(r["seed"] == 0 for r in _study(root, study)["runs"] if r["lineage"].startswith("gpt2/s/"))
    assert jobs.get("stable") == len(cfg["seeds"]), text  # size s of gpt2, once per seed
    assert jobs.get("cooldown") == len(cfg["seeds"]) * n_budgets, text
    assert "corpus" not in jobs and "tokenizer" not in jobs
    assert {"curves", "frontier", "report"} <= set(jobs)


def _job_counts(text):
    counts = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0].isidentifier():
            counts[parts[0]] = int(parts[1])
    return counts


def test_bad_config_fails_at_dag_build_with_one_line(root, tmp_path):
    cfg = yaml.safe_load((root / "tests" / "smoke" / "config.yaml").read_text())
    cfg["variants"]["gpt3"] = {"sizes": ["xs"]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake(root, tmp_path, "-n", check=False)
    assert out.returncode != 0
    lines = [line for line in (out.stdout + out.stderr).splitlines() if "archscale:" in line]
    assert lines == [lines[0]] and "unknown variant" in lines[0] and "allowed: " in lines[0] and "gpt2" in lines[0]
    assert not (tmp_path / "results").exists()


def test_seeds_and_learning_rate_grid_are_trained_and_the_best_lr_is_reported(study):
    cfg = yaml.safe_load((study / "config.yaml").read_text())
    runs = pd.read_csv(study / "results" / "analysis" / "runs.csv")
    assert len(runs) == len(_study(Path(__file__).parents[1], study)["runs"]) and set(runs["seed"]) == set(cfg["seeds"])
    choice = pd.read_csv(study / "results" / "analysis" / "compare" / "lr_choice.csv")
    xs = choice[(choice["variant"] == "gpt2") & (choice["size"] == "xs")]
    assert sorted(xs["lr"]) == sorted(cfg["variants"]["gpt2"]["lr_grid"]["xs"]) and xs["chosen"].sum() == 1
    best = xs.loc[xs["mean_final_loss"].idxmin(), "lr"]
    assert xs.loc[xs["chosen"], "lr"].item() == best
    tiers = pd.read_csv(study / "results" / "analysis" / "compare" / "tiers.csv")
    assert (tiers["floor_source"] == "seeds").all()  # two seeds per size: the floor comes from replicates


def test_changing_the_lr_grid_of_one_size_reruns_only_those_runs(root, study):
    cfg = yaml.safe_load((study / "config.yaml").read_text())
    cfg["variants"]["gpt2"]["lr_grid"]["xs"] = [0.002, 0.004, 0.008]
    changed = study / "lr.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    out = snakemake(root, study, "-n", "--quiet", "rules", config=changed)
    jobs = _job_counts(out.stdout + out.stderr)
    assert jobs.get("stable") == len(cfg["seeds"]), jobs  # only the new lr, once per seed
    assert jobs.get("cooldown") == 3 * len(cfg["seeds"]), jobs  # at each of the three budgets
    assert "corpus" not in jobs and {"curves", "report"} <= set(jobs)


def test_snakemake_html_report_contains_the_captioned_figures(root, study):
    snakemake(root, study, "--report", "report.html")
    html = (study / "report.html").read_text(errors="replace")
    for caption in ("Learning curves of every run of one variant", "Fitted frontier exponent alpha",
                    "Predicted versus actual frontier loss", "The full PDF report of the study"):
        assert caption in html, caption
    for stem in ("curves_gpt2", "curves_reformer", "isoflop_gpt2", "frontiers_causal", "optimal_allocation",
                 "exponent_forest", "extrapolation"):
        assert f"{stem}.png" in html, stem


def test_bring_your_own_runs_command_gives_the_pipelines_tables(study, tmp_path):
    """`python -m analysis curves.csv` on the pipeline's learning-curve table reproduces the
    pipeline's frontier, fit and comparison tables."""
    cfg = yaml.safe_load((study / "config.yaml").read_text())
    res = study / "results" / "analysis"
    out = tmp_path / "byo"
    subprocess.run([sys.executable, "-m", "analysis", str(res / "curves.csv"), "--out", str(out), "--no-figures",
                    "--n-boot", str(cfg["analysis"]["n_boot"]), "--seed", "0"], check=True, cwd=Path(__file__).parents[1])
    pipeline = {
        "frontier_grid": pd.read_csv(res / "frontier" / "frontier_grid.csv"),
        "frontier_summary": pd.read_csv(res / "frontier" / "frontier_summary.csv"),
        "fits": pd.concat([pd.read_csv(p) for p in sorted(res.glob("fit/*/flops/fits.csv"))], ignore_index=True),
        "isoflop": pd.concat([pd.read_csv(p) for p in sorted(res.glob("fit/*/flops/isoflop.csv"))], ignore_index=True),
        "allocation": pd.concat([pd.read_csv(p) for p in sorted(res.glob("fit/*/flops/allocation.csv"))],
                                ignore_index=True),
        "final_points": pd.read_csv(res / "frontier" / "final_points.csv"),
        "pairs": pd.read_csv(res / "compare" / "pairs.csv"),
        "crossovers": pd.read_csv(res / "compare" / "crossovers.csv"),
        "tiers": pd.read_csv(res / "compare" / "tiers.csv"),
        "extrapolation": pd.read_csv(res / "compare" / "extrapolation.csv"),
    }
    for name, ours in pipeline.items():
        theirs = pd.read_csv(out / f"{name}.csv")
        keys = [c for c in ("variant", "form", "frontier", "variant_a", "variant_b", "size", "budget", "quantity",
                            "run", "compute") if c in ours]
        a = ours.sort_values(keys).reset_index(drop=True)
        b = theirs.sort_values(keys).reset_index(drop=True)[a.columns]
        # equal up to the tables' 10-significant-digit CSV rounding (the pipeline's compare stage reads
        # the fit tables back from CSV; the CLI keeps them in memory)
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6, obj=name)


def test_a_finished_run_that_lost_its_files_retrains_and_the_analysis_is_rebuilt(root, study, tmp_path):
    """Deleting a finished run's curve.csv (or run.json): Snakemake alone would rerun nothing (the curve table
    downstream is up to date) and the analysis would keep the run's rows; it retrains, identically, and every
    table after it is rebuilt."""
    import shutil

    work = tmp_path / "study"
    shutil.copytree(study, work, symlinks=True)
    run = next(r for r in _study(root, work)["runs"] if r["variant"] == "gpt2" and r["size"] == "s")
    run_dir = work / "results" / "runs" / "gpt2" / "s" / f"seed{run['seed']}_lr{run['lr_label']}" / run["budget"]
    before = pd.read_csv(work / "results" / "analysis" / "curves.csv")
    (run_dir / "curve.csv").unlink()
    out = snakemake(root, work, "-n")
    text = out.stdout + out.stderr
    jobs = _job_counts(text)
    assert jobs.get("cooldown") == 1 and "stable" not in jobs, jobs
    assert {"curves", "frontier", "fit", "compare", "report"} <= set(jobs), jobs
    assert "1 finished run(s) lost their curve.csv or run.json" in text and run["budget"] in text
    snakemake(root, work, "--until", "curves")
    after = pd.read_csv(work / "results" / "analysis" / "curves.csv")
    from training.loop import TIMING_COLUMNS

    def rows(t):
        return t[t["run"] == run["run_id"]].drop(columns=list(TIMING_COLUMNS)).reset_index(drop=True)

    assert len(rows(before)) > 0
    pd.testing.assert_frame_equal(rows(before), rows(after))
    (run_dir / "run.json").unlink()  # the other file of a run: the same
    jobs = _job_counts((lambda o: o.stdout + o.stderr)(snakemake(root, work, "-n")))
    assert jobs.get("cooldown") == 1 and "curves" in jobs, jobs
