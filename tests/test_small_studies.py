"""Studies of any shape the config accepts end with a PDF and an HTML report that say what could not
be fitted and why: two sizes per variant (every fit refused), and a study whose only masked variant
diverged."""
import pytest
import yaml
from pypdf import PdfReader

from snakemake_helpers import snakemake

pytestmark = pytest.mark.e2e

TINY = {
    "study_name": "tiny study",
    "corpus": {"source": "kjv", "max_units": 2500, "units_per_doc": 20, "val_fraction": 0.1},
    "tokenizer": {"vocab_size": 384},
    "training": {"tokens": 16384, "seq_len": 32, "batch_size": 8, "eval_points": 4, "eval_tokens": 2048,
                 "eval_batch_size": 16, "checkpoint_every": 20, "wsd": {"warmup_tokens": 1024}, "min_phase_steps": 2},
    "analysis": {"n_boot": 100},
}


def _run(root, tmp_path, variants, env=None, **extra):
    cfg = {**TINY, "variants": variants, **extra}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(root, tmp_path, env=env)
    snakemake(root, tmp_path, "--report", "report.html", env=env)
    pdf = tmp_path / "results" / "report" / "report.pdf"
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(pdf).pages).split())
    html = (tmp_path / "report.html").read_text(errors="replace")
    return text, html


def test_a_two_size_study_reports_what_it_could_not_fit(root, tmp_path):
    text, html = _run(root, tmp_path, {"gpt2": {"sizes": ["xs", "s"]}, "bert_causal": {"sizes": ["xs", "s"]}})
    assert "gpt2 (pure fit on the envelope frontier): refused" in text and "need >= 3 sizes" in text
    assert "fewer than two variants with this fit" in html or "delta_alpha_pure.png" in html
    assert "curves_gpt2.png" in html and "report.pdf" in html


def test_a_study_whose_only_masked_variant_diverged_still_reports(root, tmp_path):
    text, html = _run(root, tmp_path, {"gpt2": {"sizes": ["xs", "s", "m"]}, "bert_mlm": {"sizes": ["xs", "s", "m"]}},
                      env={"ARCHSCALE_FAULT_NAN_STEP": "bert_mlm:3"})
    assert "bert_mlm/xs/seed0_lr0.002/D1.64e4 diverged at step 3" in text
    assert "Variant gpt2" in text and "frontiers_masked.png" in html
