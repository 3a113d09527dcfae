"""The PDF report: formats analysis outputs (tables and saved figures); never refits.

`build_report(inputs) -> bytes` lays out, in order: summary, one page per variant, the
comparison (frontiers, exponent forest, delta-alpha matrix, crossovers and multipliers),
compute accounting, extrapolation check, methods, caveats, appendix. Text that states a
number comes from the tables; text that states a method comes from the resolved config and
the analysis code's own constants, so the report cannot drift from what was computed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from fpdf import FPDF
from fpdf.fonts import FontFace

from analysis.comparison.comparisons import PAIR_METHOD, TIER_METHOD
from analysis.options import AnalysisOptions
from analysis.comparison.sensitivity import SENS_METHOD, fragile_pairs

UNIGRAM_MARGIN = 0.25  # nats: a best loss closer than this to the unigram baseline is flagged
# each objective's best score without context, in baselines.json (training/collect.py:baselines)
BASELINE_KEY = {"causal": "unigram_loss", "masked": "masked_unigram_loss", "rtd": "rtd_base_rate_entropy"}
BASELINE_NAME = {"causal": "unigram", "masked": "unigram at the masked positions", "rtd": "base-rate entropy"}


def baseline_of(inp, objective: str):
    """The objective's no-context baseline on the fixed evaluation set (None when not known)."""
    value = inp.baselines.get(BASELINE_KEY.get(objective, ""))
    if value is None and objective == "masked":  # tables from before the fixed masked set: all positions
        value = inp.baselines.get("unigram_loss")
    return float(value) if value is not None else None
SECTIONS = ("Summary", "Variants", "Comparison", "Compute accounting", "Extrapolation check",
            "Methods", "Caveats", "Appendix")
DEFAULT_TITLE = "archscale: scaling analysis of a learning-curve table"
PIPELINE_SECTIONS = ("training", "budgets", "corpus", "tokenizer")  # config sections of a study this pipeline trained
PUBLISHED_SCALE = "Kaplan et al. (2020) fitted L(C) over 10^-8..10^1 PF-days with models of 10^3..10^9 parameters"


@dataclass
class ReportInputs:
    config: dict | None               # resolved study config; None or a minimal one (analysis, report) for a table from elsewhere
    curves: pd.DataFrame              # learning-curve table
    runs: pd.DataFrame                # one row per run (run.json fields)
    tables: dict                      # analysis tables by name (fits, pairs, ... for the configured compute)
    alt_fits: pd.DataFrame | None     # fits with the other compute column
    figures: dict                     # figure stem -> PNG path
    environment: dict = field(default_factory=dict)  # versions, commit, date, hardware
    job_runtimes: pd.DataFrame | None = None          # rule, job, seconds
    baselines: dict = field(default_factory=dict)     # chance_loss, unigram_loss of the evaluation set
    lr_sweep: pd.DataFrame | None = None              # recorded lr sweep: variant, size, lr, final_loss


def fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, (int, np.integer)):
        return f"{x:,}"
    x = float(x)
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits}f}"


def ci(row, name, digits=3) -> str:
    lo, hi = row.get(f"{name}_lo"), row.get(f"{name}_hi")
    return f"{fmt(row.get(name), digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def _cfg(inp) -> dict:
    return inp.config or {}


def from_pipeline(inp) -> bool:
    """Was the table trained by this pipeline (the config describes training)? Else it came from elsewhere."""
    return all(k in _cfg(inp) for k in PIPELINE_SECTIONS)


def report_title(inp) -> str:
    return _cfg(inp).get("report", {}).get("title", DEFAULT_TITLE)


def options_of(inp) -> AnalysisOptions:
    """The analysis options the tables were made with (the config's analysis section; defaults otherwise)."""
    a = _cfg(inp).get("analysis", {})
    return AnalysisOptions(**{k: v for k, v in a.items() if k in AnalysisOptions.__dataclass_fields__})


def _present(df: pd.DataFrame, cols) -> list:
    return [c for c in cols if c in df.columns]


class _PDF(FPDF):
    def __init__(self, title):
        super().__init__(format="A4")
        self.title_text = title
        font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        self.add_font("dejavu", "", str(font_dir / "DejaVuSans.ttf"))
        self.add_font("dejavu", "B", str(font_dir / "DejaVuSans-Bold.ttf"))
        self.add_font("dejavu", "I", str(font_dir / "DejaVuSans-Oblique.ttf"))
        self.set_auto_page_break(True, margin=15)
        self.set_margins(15, 15, 15)

    def footer(self):
        self.set_y(-10)
        self.set_font("dejavu", "", 7)
        self.set_text_color(120)
        self.cell(0, 5, f"{self.title_text} - page {self.page_no()}", align="C")
        self.set_text_color(0)

    def h1(self, text):
        self.set_font("dejavu", "B", 15)
        self.multi_cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def h2(self, text):
        self.set_font("dejavu", "B", 11.5)
        self.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
        self.ln(0.5)

    def para(self, text, size=9.5, style=""):
        self.set_font("dejavu", style, size)
        self.multi_cell(0, 4.6, text, new_x="LMARGIN", new_y="NEXT")
        self.ln(1.5)

    def bullets(self, items, size=9.5):
        self.set_font("dejavu", "", size)
        for item in items:
            self.multi_cell(0, 4.6, f"\u2022 {item}", new_x="LMARGIN", new_y="NEXT")
        self.ln(1.5)

    def table(self, df: pd.DataFrame, size=7.5, widths=None):
        if df is None or df.empty:
            self.para("(no rows)", size=size, style="I")
            return
        self.set_font("dejavu", "", size)
        with super().table(col_widths=widths, text_align="LEFT", line_height=size * 0.5,
                           headings_style=FontFace(emphasis="BOLD", fill_color=(230, 230, 235)),
                           padding=0.6) as t:
            row = t.row()
            for c in df.columns:
                row.cell(str(c))
            for rec in df.itertuples(index=False):
                row = t.row()
                for v in rec:
                    row.cell(v if isinstance(v, str) else fmt(v))
        self.ln(2)

    def figure(self, path, width=170, title=None):
        """A figure (and its heading) kept together on one page."""
        if not (path and Path(path).is_file()):
            return
        from PIL import Image

        with Image.open(path) as im:
            height = width * im.height / im.width
        if self.get_y() + height + (8 if title else 0) > self.h - 15:
            self.add_page()
        if title:
            self.h2(title)
        self.image(str(path), w=width, x=(self.w - width) / 2)
        self.ln(2)


# -- section content ------------------------------------------------------------------------------

def _fits(inp, form=None):
    fits = inp.tables.get("fits", pd.DataFrame())
    return fits if form is None else fits[fits["form"] == form]


def primary(fits: pd.DataFrame) -> pd.DataFrame:
    """The L(C) fits on the frontier the study compares on (final points or the envelope)."""
    if "primary" not in fits.columns:
        return fits
    return fits[fits["primary"].astype(str).str.lower() == "true"]


def frontier_kind(inp) -> str:
    f = primary(_fits(inp))
    return str(f["frontier"].iloc[0]) if len(f) and "frontier" in f else "envelope"


def ranking(fits: pd.DataFrame, form: str) -> pd.DataFrame:
    fits = primary(fits)
    f = fits[(fits["form"] == form) & (fits["status"] == "ok")].sort_values("alpha", ascending=False)
    return pd.DataFrame({
        "rank": range(1, len(f) + 1), "variant": f["variant"], "objective": f["objective"],
        "alpha [95% CI]": [ci(r, "alpha") for r in f.to_dict("records")],
        "runs": f["n_runs"].astype(int), "RMSE (log)": f["rmse_log"],
    })


def verdict_table(pairs: pd.DataFrame, form: str) -> pd.DataFrame:
    """One row per pair: the exponent difference with its interval, the adjusted p and the verdict."""
    p = pairs[pairs["form"] == form] if len(pairs) else pairs
    rows = []
    for r in p.to_dict("records"):
        verdict = r["verdict"] if r["verdict"] != "steeper" else f"{r['steeper_variant']} steeper"
        lo, hi = (r.get("delta_lo_adj"), r.get("delta_hi_adj")) if pd.notna(r.get("delta_lo_adj")) else \
            (r.get("delta_lo"), r.get("delta_hi"))
        rows.append({"pair": f"{r['variant_a']} - {r['variant_b']}",
                     "delta alpha [Holm-level CI]": f"{fmt(r['delta_alpha'])} [{fmt(lo)}, {fmt(hi)}]",
                     "Holm p": fmt(r.get("p_holm"), 2), "verdict": verdict})
    return pd.DataFrame(rows, columns=["pair", "delta alpha [Holm-level CI]", "Holm p", "verdict"])


def with_fragile(table: pd.DataFrame, pairs: pd.DataFrame, summary, form: str) -> pd.DataFrame:
    """The verdict table with a `fragile` column (yes / no) when the sensitivity summary is there: a verdict that
    changes under some analysis choice, or differs with fewer resamples (analysis.comparison.sensitivity.fragile_pairs)."""
    if summary is None or not len(summary) or not len(table):
        return table
    frag = fragile_pairs(pairs, summary, form).set_index("subject")["fragile"]
    subject = table["pair"].str.replace(" - ", " vs ", regex=False)
    return table.assign(fragile=subject.map(lambda s: "-" if s not in frag.index else ("yes" if frag[s] else "no")))


def budget_sentences(iso: pd.DataFrame) -> list[str]:
    """Per variant: how many IsoFLOP budgets bracket an optimum, and which do not and why."""
    out = []
    for v, g in iso.groupby("variant", sort=True):
        ok = int((g["status"] == "ok").sum())
        bad = [f"{r['budget']} ({r['note']})" for r in g.to_dict("records") if r["status"] != "ok"]
        out.append(f"{v}: {ok} of {len(g)} budgets bracketed" + (f"; not: {'; '.join(bad)}" if bad else "") + ".")
    return out


def tier_sentences(tiers: pd.DataFrame) -> list[str]:
    out = []
    for v, g in tiers.groupby("variant", sort=True):
        groups = g.groupby("tier", sort=True)["size"].apply(list)
        multi = [sizes for sizes in groups if len(sizes) > 1]
        floor = g["floor"].dropna().max() if g["floor"].notna().any() else float("nan")
        src = g["floor_source"].dropna().iloc[0] if g["floor_source"].notna().any() else "-"
        if "floor_unpaired" in g and g["floor_unpaired"].notna().any():  # paired: the unpaired value beside it
            src += f"; unpaired {fmt(g['floor_unpaired'].dropna().max())}"
        if multi:
            out.append(f"{v}: tiers {' | '.join(', '.join(s) for s in groups)} (noise floor {fmt(floor)} nats from {src}); "
                       f"sizes in one tier are no better than the smallest of the tier.")
        else:
            out.append(f"{v}: no tiers - every larger size beats the next smaller by more than the noise floor "
                       f"({fmt(floor)} nats, {src}).")
    return out


def crossover_sentences(cross: pd.DataFrame, form: str) -> list[str]:
    out = []
    for r in cross[cross["form"] == form].to_dict("records"):
        pair = f"{r['variant_a']} vs {r['variant_b']} ({r['objective']})"
        if isinstance(r.get("crossover_verdict"), str) and "no crossover" in r["crossover_verdict"]:
            head = f"{pair}: no crossover within the observed range"
        else:
            head = (f"{pair}: frontiers cross at C = {fmt(r['crossover_c'])} FLOPs (95% CI {fmt(r['crossover_lo'])} to "
                    f"{fmt(r['crossover_hi'])}; crossing in {fmt(100 * r['p_cross_boot'], 2)}% of bootstrap resamples)")
        mult = (f"; at C = {fmt(r['c_at'])} FLOPs {r['variant_b']} needs {ci(r, 'multiplier')} x the compute of "
                f"{r['variant_a']} to reach its loss") if pd.notna(r.get("multiplier")) else ""
        out.append(head + mult + ".")
    return out


MAX_EPOCHS = 4.0  # passes over the training split above which a run is named, for a config without corpus.max_epochs


def caveats(inp: ReportInputs) -> list[str]:
    """The report's caveats: of the fits and frontiers, then of the runs, then the scale."""
    nmax = inp.curves["params_nonembedding"].max()
    cmax = inp.curves["flops"].max()
    return _fit_caveats(inp) + _run_caveats(inp) + [
        f"Tiny scale: at most {fmt(int(nmax))} non-embedding parameters and {fmt(cmax)} FLOPs per run. "
        f"{PUBLISHED_SCALE}; exponents measured here need not hold there."]


def _fit_caveats(inp: ReportInputs) -> list[str]:
    """Objectives on different scales, unbracketed frontiers and budgets, failed or thin fits."""
    out = []
    objectives = sorted(inp.curves["objective"].unique())
    if len(objectives) > 1:
        out.append(f"Objectives are not on one scale ({', '.join(objectives)}): loss levels, crossovers and "
                   "compute multipliers are compared only within an objective; exponents across objectives are flagged.")
    if frontier_kind(inp) == "envelope":
        summ = inp.tables.get("frontier_summary", pd.DataFrame())
        for r in summ.to_dict("records"):
            if not r.get("bracketed", True):
                out.append(f"{r['variant']}: frontier not bracketed - its largest size ({r['largest_size']}) still owns "
                           "the highest compute, so the frontier may bend further; more sizes needed.")
    iso = inp.tables.get("isoflop", pd.DataFrame())
    for r in (iso.to_dict("records") if len(iso) else []):
        if r["status"] == "unbracketed":
            out.append(f"{r['variant']}, budget {r['budget']}: not bracketed - {r['note']}.")
    alloc = inp.tables.get("allocation", pd.DataFrame())
    for r in (alloc[alloc["quantity"] == "N_opt"].to_dict("records") if len(alloc) else []):
        if r["status"] != "ok":
            out.append(f"{r['variant']}: no N_opt(C) exponent - {r['note']}.")
    for r in _fits(inp).to_dict("records"):
        where = f"{r['form']} fit" + (f" on the {r['frontier']} frontier" if r["form"] != "approach3" and "frontier" in r else "")
        if r["status"] != "ok" and (r["form"] == "approach3" or str(r.get("primary")).lower() == "true"):
            out.append(f"{r['variant']} ({where}): {r['status']} - {r['note']}")
        elif r["status"] == "ok" and r["n_runs"] < 5 and r["form"] == "pure" and str(r.get("primary")).lower() == "true":
            out.append(f"{r['variant']}: fits rest on {int(r['n_runs'])} runs; intervals from so few clusters are rough.")
    return out


def _run_caveats(inp: ReportInputs) -> list[str]:
    """Runs near their baseline, one-tier variants, diverged or stopped runs, repeated data, causal leaks."""
    out = []
    ok = inp.runs[inp.runs["status"] == "ok"]
    for (v, obj), g in ok.groupby(["variant", "objective"]):
        base, best = baseline_of(inp, obj), g["final_loss"].min()
        if base is None:
            continue
        if obj != "rtd" and best > base - UNIGRAM_MARGIN:
            out.append(f"{v}: its best run ends at {fmt(best)} nats, within {UNIGRAM_MARGIN} nats of the "
                       f"{BASELINE_NAME[obj]} baseline ({fmt(base)} nats: held-out tokens scored by training-split "
                       "token frequencies). At this budget it has learned little beyond token frequencies; its "
                       "frontier and exponent describe that plateau, not the architecture's scaling.")
        if obj == "rtd" and best > 0.9 * base:
            out.append(f"{v}: its best discriminator loss {fmt(best)} is {fmt(best / base)} x the base-rate entropy "
                       f"of the fixed corrupted set ({fmt(base)}): less than a 10% gain from context.")
    tiers = inp.tables.get("tiers", pd.DataFrame(columns=["variant", "tier"]))
    for v, g in tiers.groupby("variant", sort=True):
        if len(g) > 1 and g["tier"].nunique() == 1:
            out.append(f"{v}: all {len(g)} sizes form one tier - no larger size beat the smallest by more than the noise "
                       "floor, so its frontier is the smallest model's curve and its exponent is not a scaling result.")
    div = inp.runs[inp.runs["status"] == "diverged"]
    for r in div.to_dict("records"):
        out.append(f"{r['run']} diverged at step {r.get('diverged_step')} and is excluded from frontiers and fits.")
    stopped = inp.runs[inp.runs["status"] == "stopped"]
    for r in stopped.to_dict("records"):
        out.append(f"{r['run']} was stopped early by the early-stop rule after {fmt(r.get('stop_tokens'))} tokens: "
                   f"its final loss was predicted {fmt(r.get('stop_predicted'))} [{fmt(r.get('stop_lo'))}, "
                   f"{fmt(r.get('stop_hi'))}], above the reference frontier {fmt(r.get('stop_frontier'))}; it is "
                   "excluded from frontiers and fits.")
    limit = float(_cfg(inp).get("corpus", {}).get("max_epochs", MAX_EPOCHS))
    if "epochs" in inp.runs:
        many = inp.runs[pd.to_numeric(inp.runs["epochs"], errors="coerce") > limit]
        if len(many):
            names = ", ".join(f"{r['run']} ({fmt(float(r['epochs']))})" for r in many.to_dict("records"))
            out.append(f"{len(many)} run(s) made more than {limit:g} passes over the training split "
                       f"(epochs in brackets): {names}. Repeating data beyond about 4 epochs changes "
                       "the scaling law (Muennighoff et al. 2023); their losses are not those of fresh data.")
    if "causal_leak" in inp.runs:
        leaks = inp.runs[pd.to_numeric(inp.runs["causal_leak"], errors="coerce") > 0]
        for v, g in leaks.groupby("variant"):
            out.append(f"{v}: measured causal leak (max |logit change| at earlier positions when later tokens change) "
                       f"{fmt(g['causal_leak'].astype(float).min())}-{fmt(g['causal_leak'].astype(float).max())}; "
                       "its causal loss is slightly optimistic.")
    return out


def budget_levels(cfg) -> str:
    """The study's budget levels, with each variant's own levels (`variants.<v>.budgets`) where it has them;
    a level may be a number or {level, sizes}."""
    def levels(entries):
        return ", ".join(fmt(e["level"] if isinstance(e, dict) else e) for e in entries)

    own = {v: e["budgets"]["levels"] for v, e in cfg.get("variants", {}).items()
           if (e.get("budgets") or {}).get("levels")}
    text = levels(cfg["budgets"]["levels"])
    if own:
        text += " (" + "; ".join(f"{v}: {levels(ls)}" for v, ls in sorted(own.items())) + ")"
    return text


def _training_method(cfg) -> str:
    t, b = cfg["training"], cfg["budgets"]
    if b["kind"] == "tokens":
        budget = f"every run {fmt(t['tokens'])} tokens"
    else:
        unit = "accounted training FLOPs" if b["kind"] == "isoflop" else "tokens per non-embedding parameter"
        budget = (f"budgets {budget_levels(cfg)} {unit} "
                  + ("(at each, a size trains C / its FLOPs per token; sizes join a budget when their tokens per "
                     f"non-embedding parameter lie in {b['tokens_per_param'][0]:g}-{b['tokens_per_param'][1]:g} and "
                     f"it gives >= {b['min_steps']} steps)" if b["kind"] == "isoflop" else ""))
    if t["schedule"] == "wsd":
        w = t["wsd"]
        sched = (f"warmup-stable-decay: linear warmup over {fmt(w['warmup_tokens'])} tokens, constant rate, then a "
                 f"{w['cooldown_shape']} cooldown over the last {w['cooldown_fraction']:.0%} of each budget to "
                 f"{w['final_lr_ratio']:.0%} of the peak; one stable run per (variant, size, seed, lr), each budget's "
                 "cooldown branches from its checkpoint")
    else:
        sched = (f"linear warmup over {t['warmup_fraction']:.0%} of steps then cosine decay to {t['min_lr_ratio']:.0%} "
                 "of the peak; each budget trained from scratch")
    return (f"Training: {budget}; batch {t['batch_size']} x {t['seq_len']}, AdamW (betas {t['beta1']}/{t['beta2']}, "
            f"weight decay {t['weight_decay']}), {sched}; gradient clip {t['grad_clip']}; seeds {cfg['seeds']}; "
            f"evaluation on {fmt(t['eval_tokens'])} held-out tokens at {t['eval_points']} log-spaced steps plus the last.")


BYO_ORIGIN = ("Training: the learning-curve table came from elsewhere (not trained by this pipeline); this report "
              "knows only what its columns say - no corpus, tokenizer, schedule or hardware is assumed.")


def transient_summary(inp) -> list[str]:
    from analysis.curves.transient import TransientDrop, summary_lines

    runs = inp.tables.get("transient")
    if runs is None or not len(runs):
        return []
    return summary_lines(TransientDrop(pd.Series(dtype=bool), runs), max_runs=3)


def methods(inp: ReportInputs) -> list[str]:
    cfg, opts = _cfg(inp), options_of(inp)
    kind = frontier_kind(inp)
    alloc = inp.tables.get("allocation", pd.DataFrame())
    noise = (f"{fmt(alloc['noise'].iloc[0])} nats from {alloc['noise_source'].iloc[0]}" if len(alloc) else "-")
    origin = [
        f"Corpus: source '{cfg['corpus']['source']}', {cfg['corpus']['units_per_doc']} units per document, "
        f"{cfg['corpus']['val_fraction']:.0%} of documents held out (split seed {cfg['corpus']['split_seed']}); "
        f"byte-level BPE with {cfg['tokenizer']['vocab_size']} tokens trained on the training split.",
        _training_method(cfg)] if from_pipeline(inp) else [BYO_ORIGIN]
    sens = [SENS_METHOD.format(n_boot=opts.n_boot_sensitivity)] if "sensitivity_summary" in inp.tables else []
    return origin + [
        f"Primary frontier: {'final points (Approach 1)' if kind == 'final' else 'learning-curve envelope'} over "
        f"'{opts.compute}'. Approach 1 uses one point per run, its final evaluation (the end of its cooldown or "
        "decay): per budget the best size, then the lower envelope over compute. The summary, comparisons, "
        "crossovers and the extrapolation check use the primary frontier.",
        "Fits of L(C): pure L = (C_c/C)^alpha by OLS on log-log (statsmodels); E-term L = E + (C_c/C)^alpha by Huber "
        f"loss (delta {opts.huber_delta}) on log-loss residuals; a fit whose parameter ends on a bound of the search "
        "is reported as at_bound and not compared.",
        "Approach 2 (IsoFLOP): per budget, final loss against ln N (non-embedding) fitted by a parabola; N_opt at its "
        "minimum. A budget is bracketed only when its best size has a smaller and a larger neighbour; the others are "
        "flagged and left out of N_opt(C) = k C^a and D_opt(C) (OLS in logs). Intervals: parametric bootstrap, every "
        f"final loss perturbed by the study's noise ({noise}), {opts.n_boot} resamples.",
        "Approach 3: L(N, D) = E + A/N^alpha + B/D^beta on final points only (N = all parameters, D = tokens), Huber "
        f"delta {opts.huber_delta}, from a variable-projection grid of starts; bootstrap over final points.",
        f"Secondary view, the learning-curve envelope (Kaplan et al.): every evaluation of every run, interpolated "
        f"log-log on {opts.grid_points} compute points; each run's early transient dropped by "
        + ("the default rule (points before 10% of the run's tokens, or before its warmup ends if later; "
           "analysis/curves/transient.py)" if opts.drop_fraction is None else
           f"a fixed share ({opts.drop_fraction:g} of each run's tokens, or its warmup if later)")
        + (f": {'; '.join(transient_summary(inp))}." if transient_summary(inp) else "."),
        f"Uncertainty: bootstrap over runs, {opts.n_boot} resamples (the frontier is rebuilt from each resample and "
        f"refitted), percentile {opts.ci_level:.0%} intervals; resamples that fail to fit are counted and reported.",
        PAIR_METHOD.format(significance=opts.significance),
        "Crossovers and compute multipliers only within one objective.",
        TIER_METHOD.format(default=opts.noise_floor_default),
        "Extrapolation check: each variant's primary frontier is refitted without its largest budget (final points) "
        "or its largest size (envelope) and predicts the loss held out, with a bootstrap prediction interval.",
    ] + sens


# -- the document -----------------------------------------------------------------------------------

def _study_sentence(inp, sizes: str, total_flops: float) -> str:
    """The pipeline study's design: corpus, tokenizer, sizes, budgets, schedule."""
    cfg = inp.config
    b = cfg["budgets"]
    design = (f"every size trained {fmt(cfg['training']['tokens'])} tokens" if b["kind"] == "tokens" else
              f"{len(b['levels'])} {'IsoFLOP' if b['kind'] == 'isoflop' else 'tokens-per-parameter'} budgets "
              f"({budget_levels(cfg)})")
    return (f"{cfg['study_name']}. Corpus '{cfg['corpus']['source']}' (sha256 "
            f"{str(inp.runs['corpus_sha256'].iloc[0])[:12]}...), {cfg['tokenizer']['vocab_size']}-token byte-level "
            f"BPE. Variants and sizes: {sizes}; {design}, schedule {cfg['training']['schedule']}; {len(inp.runs)} runs, "
            f"{fmt(total_flops)} accounted training FLOPs in all.")


def provenance(inp) -> str:
    """The summary page's first paragraph: what was trained (or that the table came from elsewhere), where, when."""
    env = inp.environment
    variants = sorted(inp.curves["variant"].unique())
    total_flops = inp.curves.groupby("run")["flops"].max().sum() if "run" in inp.curves else inp.curves["flops"].max()
    if from_pipeline(inp):
        cfg = inp.config
        sizes = ", ".join(f"{v} ({', '.join(cfg['variants'][v]['sizes'])})" for v in variants if v in cfg["variants"])
        head = _study_sentence(inp, sizes, total_flops) + f" Hardware: {env.get('device', '?')}."
    else:
        sizes = ", ".join(f"{v} ({', '.join(map(str, g.sort_values('params_total')['size'].unique()))})"
                          for v, g in inp.curves.groupby("variant", sort=True))
        head = (f"{_cfg(inp).get('study_name', 'A learning-curve table from elsewhere')}: not trained by this pipeline "
                f"(bring your own runs). Variants and sizes: {sizes}; {len(inp.runs)} runs, {fmt(total_flops)} FLOPs in "
                "all (the table's own accounting).")
    return (head + f" Built {env.get('date', '?')} with archscale {env.get('version', '?')} "
            f"(commit {env.get('commit', '?')})."
            + (f" Reference losses on the evaluation set: chance ln V = {fmt(inp.baselines['chance_loss'])} nats, unigram "
               f"(token frequencies) {fmt(inp.baselines['unigram_loss'])} nats." if inp.baselines else ""))


def _summary(pdf: _PDF, inp: ReportInputs, form: str) -> None:
    """Page 1: what a reader came for - the frontier of each objective and the ranking with CIs."""
    pdf.add_page()
    pdf.h1(report_title(inp))
    pdf.para(provenance(inp), size=8.5)
    pdf.h2("1 Summary")
    for stem in sorted(k for k in inp.figures if k.startswith("frontiers_")):
        pdf.figure(inp.figures[stem], width=120)
    kind = "final-point frontier (Approach 1)" if frontier_kind(inp) == "final" else "learning-curve envelope"
    pdf.para(f"Variants ranked by the exponent alpha of the pure power law L(C) = (C_c/C)^alpha on the {kind} "
             f"(compute '{options_of(inp).compute}', 95% bootstrap intervals):", size=9)
    pdf.table(ranking(_fits(inp), form))
    pairs = inp.tables.get("pairs", pd.DataFrame())
    pdf.para("Pairwise exponent verdicts (pure fit; details in section 3):", style="B", size=9)
    table = with_fragile(verdict_table(pairs, form), pairs, inp.tables.get("sensitivity_summary"), form)
    if len(table):
        pdf.table(table, size=7, widths=(40, 40, 15, 60) if "fragile" not in table else (36, 38, 13, 45, 23))
    else:
        pdf.para("Only one variant with a fit: no pairwise comparison.", size=8.5)
    iso = inp.tables.get("isoflop", pd.DataFrame())
    if len(iso):
        pdf.para("Bracketing (Approach 2):", style="B", size=9)
        pdf.bullets(budget_sentences(iso), size=8.5)
    pdf.para("Tiers:", style="B", size=9)
    pdf.bullets(tier_sentences(inp.tables.get("tiers", pd.DataFrame(columns=["variant"]))) or ["(none)"], size=8.5)


def _variant_page(pdf: _PDF, inp: ReportInputs, i: int, v: str) -> None:
    pdf.add_page()
    obj = inp.curves.loc[inp.curves["variant"] == v, "objective"].iloc[0]
    pdf.h1(f"2.{i} Variant {v} (objective: {obj})")
    pdf.figure(inp.figures.get(f"isoflop_{v}"), width=125)
    iso = inp.tables.get("isoflop", pd.DataFrame())
    if len(iso) and (iso["variant"] == v).any():
        g = iso[iso["variant"] == v]
        pdf.table(pd.DataFrame({"budget": g["budget"], "compute": g["compute"], "sizes": g["sizes"],
                                "best": g["best_size"], "status": g["status"],
                                "N_opt [95% CI]": [ci(r, "N_opt") for r in g.to_dict("records")],
                                "D_opt [95% CI]": [ci(r, "D_opt") for r in g.to_dict("records")]}), size=7)
    pdf.figure(inp.figures.get(f"curves_{v}"), width=125)
    r = inp.runs[inp.runs["variant"] == v].sort_values(_present(inp.runs, ["params_nonembedding", "tokens"]))
    cols = {"size": "size", "budget": "budget", "seed": "seed", "lr": "lr", "params_nonembedding": "non-emb. params",
            "tokens": "tokens", "flops": "FLOPs", "final_loss": "final loss", "status": "status"}
    cols = {k: c for k, c in cols.items() if k in r.columns}
    base = baseline_of(inp, obj)
    if base is not None:  # each objective's no-context score beside its losses
        r = r.assign(baseline=base, gain=lambda d: (d["final_loss"] - base) if obj != "rtd" else d["final_loss"] / base)
        cols["baseline"] = BASELINE_NAME[obj]
        cols["gain"] = "minus baseline" if obj != "rtd" else "x base rate"
    if "causal_leak" in r and r["causal_leak"].notna().any():
        cols["causal_leak"] = "leak probe"
    pdf.table(r[list(cols)].rename(columns=cols), size=6.5)
    f = _fits(inp)
    f = f[f["variant"] == v]
    pdf.table(pd.DataFrame({
        "frontier": f["frontier"] if "frontier" in f else "-", "fit": f["form"], "status": f["status"],
        "alpha [95% CI]": [ci(x, "alpha") for x in f.to_dict("records")],
        "E [95% CI]": [ci(x, "E") if x["form"] != "pure" else "-" for x in f.to_dict("records")],
        "R2 log": f["r2_log"], "failed": f["n_failed"],
    }), size=7)


def _comparison(pdf: _PDF, inp: ReportInputs) -> None:
    pdf.add_page()
    pdf.h1("3 Comparison")
    pdf.figure(inp.figures.get("optimal_allocation"), width=165, title="Compute-optimal allocation (Approach 2)")
    alloc = inp.tables.get("allocation", pd.DataFrame())
    if len(alloc):
        pdf.table(pd.DataFrame({"variant": alloc["variant"], "quantity": alloc["quantity"], "status": alloc["status"],
                                "exponent [95% CI]": [ci(r, "exponent") for r in alloc.to_dict("records")],
                                "budgets": alloc["n_budgets"], "note": alloc["note"].fillna("")}), size=7)
    a3 = _fits(inp, "approach3")
    if len(a3):
        pdf.h2("Approach 3 on final points")
        pdf.table(pd.DataFrame({"variant": a3["variant"], "status": a3["status"],
                                "E": [ci(r, "E") for r in a3.to_dict("records")],
                                "alpha (N)": [ci(r, "alpha") for r in a3.to_dict("records")],
                                "beta (D)": [ci(r, "beta") for r in a3.to_dict("records")],
                                "a = beta/(alpha+beta)": [ci(r, "a") for r in a3.to_dict("records")],
                                "points": a3["n_points"]}), size=7)
    pdf.figure(inp.figures.get("exponent_forest"), width=130, title="Exponent forest plot")
    for i, stem in enumerate(sorted(k for k in inp.figures if k.startswith("delta_alpha_"))):
        pdf.figure(inp.figures[stem], width=105, title="Pairwise exponent differences" if i == 0 else None)
    pairs = inp.tables.get("pairs", pd.DataFrame())
    pdf.table(pairs[["form", "variant_a", "variant_b", "delta_alpha", "delta_lo", "delta_hi", "p_holm", "verdict"]]
              if not pairs.empty else pairs)
    pdf.h2("Crossovers and compute multipliers")
    cross = inp.tables.get("crossovers", pd.DataFrame(columns=["form"]))
    pdf.bullets(crossover_sentences(cross, "pure") or ["No pair of variants shares an objective: no crossovers to report."],
                size=8.5)
    _sensitivity(pdf, inp)


def sensitivity_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The sensitivity summary as the report prints it: one row per headline and subject."""
    def base(r):
        if r["headline"] == "alpha":
            return ci({"alpha": r["baseline_value"], "alpha_lo": r["baseline_lo"], "alpha_hi": r["baseline_hi"]}, "alpha")
        if r["headline"] == "crossover" and pd.notna(r["baseline_value"]):
            return f"{r['baseline_verdict']} at {fmt(r['baseline_value'])}"
        return str(r["baseline_verdict"])

    def spread(r):
        if r["headline"] in ("alpha", "verdict") and pd.notna(r["min"]):
            return f"{fmt(r['min'])} to {fmt(r['max'])}"
        return "-"

    rows = [{"headline": r["headline"], "subject": r["subject"], "baseline": base(r), "range (same form)": spread(r),
             "fragile": "yes" if str(r["fragile"]).lower() == "true" else "no",
             "changes under": r["differs_under"] if isinstance(r["differs_under"], str) and r["differs_under"] else "-"}
            for r in summary.to_dict("records")]
    return pd.DataFrame(rows, columns=["headline", "subject", "baseline", "range (same form)", "fragile", "changes under"])


def _sensitivity(pdf: _PDF, inp: ReportInputs) -> None:
    """Section 3's sensitivity subsection: how every headline moves under the other reasonable analysis choices."""
    summary = inp.tables.get("sensitivity_summary")
    pdf.h2("Sensitivity to analysis choices")
    if summary is None:
        pdf.para("Not computed for this report (the workflow's sensitivity rule, or python -m analysis without "
                 "--no-sensitivity, makes it).", size=8.5)
        return
    pdf.para(SENS_METHOD.format(n_boot=options_of(inp).n_boot_sensitivity) + " Range: min to max over the choices "
             "of the baseline's fit form (alpha; delta alpha for verdicts).", size=8.5)
    pdf.figure(inp.figures.get("sensitivity"), width=150)
    pdf.table(sensitivity_table(summary), size=6.5, widths=(16, 24, 40, 26, 13, 61))


def _accounting(pdf: _PDF, inp: ReportInputs, form: str) -> None:
    pdf.add_page()
    pdf.h1("4 Compute accounting")
    last = inp.curves.sort_values("tokens").groupby("run").tail(1)
    acc = last.groupby("variant").agg(params_total=("params_total", "max"), params_nonemb=("params_nonembedding", "max"),
                                      flops=("flops", "sum"), flops_6n=("flops_6n", "sum")).reset_index()
    acc["flops / 6N"] = acc["flops"] / acc["flops_6n"]
    pdf.para("Accounted FLOPs (projections, LM head, attention products over the real context) against the 6N "
             "approximation, summed over each variant's runs; a ratio above 1 means 6N under-charges the variant.")
    pdf.table(acc)
    pdf.para("Matched sizes: non-embedding parameters of each size preset, per variant (scans are matched as "
             "closely as the variants' shapes allow):")
    sizes = inp.runs.drop_duplicates(["variant", "size"])
    order = sizes.groupby("size")["params_nonembedding"].median().sort_values().index
    matched = sizes.pivot(index="size", columns="variant", values="params_nonembedding").reindex(order)
    pdf.table(matched.map(lambda n: f"{int(n):,}" if pd.notna(n) else "-").reset_index())
    if inp.alt_fits is not None and not inp.alt_fits.empty:
        alt_col = inp.alt_fits["compute"].iloc[0]
        pdf.para(f"Ranking with the other compute column ('{alt_col}'):")
        pdf.table(ranking(inp.alt_fits, form))
    ln = inp.tables.get("size_fits", pd.DataFrame())
    if not ln.empty:
        pdf.para("L(N) on each size's best final loss, with total and with non-embedding N (the parameter count changes "
                 "the exponent). The figure shares one axis across objectives for layout only: compare levels within "
                 "an objective.")
        pdf.figure(inp.figures.get("loss_vs_params"), width=120)
        pdf.table(pd.DataFrame({"variant": ln["variant"], "N": ln["n_measure"], "status": ln["status"],
                                "alpha_N [95% CI]": [ci(x, "alpha") for x in ln.to_dict("records")]}))


def _extrapolation(pdf: _PDF, inp: ReportInputs) -> None:
    pdf.add_page()
    pdf.h1("5 Extrapolation check")
    if frontier_kind(inp) == "final":
        pdf.para("Each variant's final-point frontier refitted without its largest budget predicts the best final loss "
                 "at that budget: would the smaller budgets have predicted the largest one?")
    else:
        pdf.para("Each variant refitted without its largest size predicts the largest run's frontier loss at that "
                 "run's compute: would the fit have predicted the big run?")
    pdf.figure(inp.figures.get("extrapolation"), width=130)
    ex = inp.tables.get("extrapolation", pd.DataFrame())
    pdf.table(ex[["variant", "form", "status", "held_out_size", "actual_loss", "predicted_loss", "pi_lo", "pi_hi",
                  "rel_error", "inside"]] if not ex.empty else ex)


def prediction_sentences(pred: pd.DataFrame) -> list[str]:
    """What the final-loss predictions (analysis.forecast.predict) did, in numbers from their table."""
    if pred is None or not len(pred):
        return ["No warmup-stable-decay runs: no final-loss predictions (they need stable and cooldown phases)."]
    ok = pred[pred["status"] == "ok"]
    fraction, level = float(pred["fraction"].iloc[0]), float(pred["level"].iloc[0])
    out = [f"{len(ok)} of {len(pred)} runs predicted from the first {fraction:.0%} of their stable phase."]
    if len(ok):
        inside = ok["inside"].astype(str).str.lower().eq("true")
        err = (ok["predicted"] - ok["actual"]).abs()
        out.append(f"Median absolute error {fmt(err.median())} nats ({fmt(100 * ok['rel_error'].abs().median(), 2)}% of "
                   f"the final loss; largest {fmt(err.max())} nats); the {level:.0%} intervals cover "
                   f"{int(inside.sum())} of {len(ok)} actual final losses ({inside.mean():.0%}).")
        raw = ok["note"].fillna("").astype(str).str.startswith("uncalibrated")
        if raw.any():
            out.append(f"{int(raw.sum())} interval(s) uncalibrated: too few runs of other lineages to calibrate on, "
                       "so the normal quantile of the model's error was used.")
    reason = (pred["note"].fillna("").str.replace(r" \(first \d+ tokens\)$", "", regex=True)
              .str.replace(r"^\d+ stable point\(s\)", "too few stable points", regex=True))
    for (status, note), g in pred[pred["status"] != "ok"].groupby(["status", reason]):
        shown = ", ".join(g["run"].head(4)) + (", ..." if len(g) > 4 else "")
        out.append(f"{status}: {len(g)} run(s), {note} ({shown}).")
    return out


def prediction_method() -> str:
    from analysis.forecast.predict import FORM_POINTS, MIN_DONOR_LINEAGES

    return ("Each run's own stable rows from the end of its warmup to the given share of its stable phase (the tokens "
            "before its cooldown starts) are summarised in three forms, each carried to the cooldown's start: "
            f"L = E + A S^-a fitted on log-loss (S = tokens - warmup/2, the learning-rate area; >= {FORM_POINTS['eterm']} "
            f"points), A S^-a (>= {FORM_POINTS['pure']}) and the window's level (>= {FORM_POINTS['level']}). Added to "
            "each: the mean cooldown drop (ln final - ln loss at the branch) and the mean extrapolation bias of the form "
            f"(ln branch loss - the form's value there) over runs of the same variant in other lineages (at least "
            f"{MIN_DONOR_LINEAGES}; a lineage is one stable run, shared by its budgets, so they are left out). A run "
            "uses the form that best predicts the other lineages' runs (median absolute error, each predicted the same "
            "way); the interval is the model's error (the fit's delta-method error, the spread of drop and bias) "
            "scaled by a split-conformal factor from those same cross-checked runs. No prediction uses its run's own "
            "rows after the cut.")


def prediction_by_variant(pred: pd.DataFrame) -> pd.DataFrame:
    """Per variant: runs, runs predicted, the forms used, median absolute error and interval coverage."""
    ok = pred[pred["status"] == "ok"]
    rows = []
    for v, g in pred.groupby("variant", sort=True):
        o = ok[ok["variant"] == v]
        inside = o["inside"].astype(str).str.lower().eq("true")
        rows.append({"variant": v, "runs": len(g), "predicted": len(o),
                     "forms": ", ".join(f"{f} {n}" for f, n in o["form"].value_counts().items()) or "-",
                     "median |error| (nats)": (o["predicted"] - o["actual"]).abs().median() if len(o) else np.nan,
                     "coverage": f"{int(inside.sum())}/{len(o)}" if len(o) else "-"})
    return pd.DataFrame(rows)


def _predictions(pdf: _PDF, inp: ReportInputs) -> None:
    """Predicted vs actual final loss of every run, from the start of its stable phase."""
    pred = inp.tables.get("predictions")
    pdf.h2("Final loss of every run, predicted from its beginning")
    pdf.para(prediction_method(), size=8.5)
    pdf.bullets(prediction_sentences(pred), size=8.5)
    if pred is None or not (pred["status"] == "ok").any():
        return
    pdf.figure(inp.figures.get("predictions"), width=120)
    pdf.table(prediction_by_variant(pred), size=7)
    ok = pred[pred["status"] == "ok"].sort_values(["variant", "final_tokens"])
    pdf.table(pd.DataFrame({"run": ok["run"], "points": ok["n_points"], "form": ok["form"],
                            f"predicted [{float(ok['level'].iloc[0]):.0%} interval]": [ci({**r, "predicted_lo": r["lo"], "predicted_hi": r["hi"]},
                                                            "predicted") for r in ok.to_dict("records")],
                            "actual": ok["actual"], "|error|": ok["abs_error"], "inside": ok["inside"]}), size=6.5)


def _methods_caveats_appendix(pdf: _PDF, inp: ReportInputs) -> None:
    pdf.add_page()
    pdf.h1("6 Methods")
    pdf.bullets(methods(inp), size=9)
    pdf.h1("7 Caveats")
    pdf.bullets(caveats(inp), size=9)
    pdf.add_page()
    pdf.h1("8 Appendix")
    pdf.h2("Environment")
    pdf.table(pd.DataFrame(sorted(inp.environment.items()), columns=["item", "value"]))
    pdf.h2("Runs")
    pdf.para("Per run: its global batch (sequences), peak rate, passes over the training split (epochs), and "
             "model FLOPs utilisation (accounted training FLOPs per second over the device's dense peak: a GPU's "
             "data-sheet bf16 peak, a CPU's measured fp32 matmul peak; `peak_flops_source` in the run table).", size=8.5)
    pdf.table(inp.runs[_present(inp.runs, ["run", "objective", "params_nonembedding", "final_loss", "status", "batch_size",
                                           "lr", "epochs", "mfu", "elapsed_s"])], size=6.5)
    if inp.lr_sweep is not None and not inp.lr_sweep.empty:
        pdf.h2("Learning-rate sweep")
        pdf.para(lr_sweep_sentence(inp), size=8.5)
        pdf.table(lr_sweep_table(inp.lr_sweep, inp.runs), size=6.5)
    if inp.job_runtimes is not None and not inp.job_runtimes.empty:
        pdf.h2("Snakemake job runtimes (benchmark files)")
        if "ratio" in inp.job_runtimes:
            pdf.para(job_time_sentence(inp.job_runtimes), size=8.5)
        planned = planned_bracketing_sentence(_cfg(inp).get("plan") or {}, inp.tables.get("isoflop", pd.DataFrame()))
        if planned:
            pdf.para(planned, size=8.5)
        pdf.table(inp.job_runtimes, size=6.5)


def lr_sweep_table(sweep: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per variant and lr of the sweep: final loss, the best lr marked, and the lr this study's runs used."""
    t = sweep[["variant", "size", "lr", "final_loss"]].copy()
    best = t.loc[t.groupby(["variant", "size"])["final_loss"].idxmin(), ["variant", "size", "lr"]]
    t["best"] = [("yes" if ((best["variant"] == v) & (best["size"] == s) & (best["lr"] == lr)).any() else "")
                 for v, s, lr in zip(t["variant"], t["size"], t["lr"])]
    if "lr" in runs.columns:
        used = runs.groupby("variant")["lr"].agg(lambda x: ", ".join(f"{v:g}" for v in sorted(set(x))))
        t["lr of this study"] = t["variant"].map(used).fillna("-")
    return t.sort_values(["variant", "size", "lr"]).reset_index(drop=True)


def lr_sweep_sentence(inp) -> str:
    source = (_cfg(inp).get("report") or {}).get("lr_sweep") or "the recorded sweep"
    return (f"Peak learning rate per variant from a recorded sweep ({source}): one size, the study's schedule, "
            f"the final eval loss of each rate. Transfer assumption: the best rate at that size is used at every "
            f"size of the study (the sizes differ by at most 8x in width, one schedule).")


def job_time_sentence(jobs: pd.DataFrame) -> str:
    """Predicted (`archscale plan` cost model) vs measured time of the training jobs."""
    j = jobs.dropna(subset=["ratio"])
    total = j["seconds"].sum() / j["predicted_s"].sum()
    return (f"Measured / predicted training-job time (the plan's cost model): median ratio {j['ratio'].median():.2f} "
            f"over {len(j)} jobs (middle 80%: {j['ratio'].quantile(0.1):.2f}-{j['ratio'].quantile(0.9):.2f}); "
            f"all jobs together {j['seconds'].sum() / 60:.1f} min measured vs {j['predicted_s'].sum() / 60:.1f} min "
            f"predicted (ratio {total:.2f}).")


def planned_bracketing_sentence(plan: dict, iso: pd.DataFrame) -> str:
    """Which budgets `archscale plan` expected to bracket (all but plan.expected_unbracketed) against the
    IsoFLOP table's bracketed column; empty without a plan or a table."""
    if not plan or not len(iso) or "bracketed" not in iso:
        return ""
    below = [(v, float(x)) for v, levels in (plan.get("expected_unbracketed") or {}).items() for x in levels]
    level = iso["budget"].astype(str).str.lstrip("CDT").astype(float)  # labels C<level> (3 significant digits)
    exp = np.array([not any(bv == v and abs(bl / lv - 1) < 1e-3 for bv, bl in below)
                    for v, lv in zip(iso["variant"], level)], bool)
    got = iso["bracketed"].astype(str).str.lower().eq("true").to_numpy()
    misses = [f"{v} {b}" for v, b, e, g in zip(iso["variant"], iso["budget"], exp, got) if e and not g]
    line = (f"Bracketing as planned: the plan expected {int(exp.sum())} of {len(iso)} budgets to bracket and "
            f"{int((exp & got).sum())} of them did" + (f" (not: {', '.join(misses)})" if misses else ""))
    if (~exp).any():
        line += f"; of the {int((~exp).sum())} it placed below a floor to fit the time, {int((~exp & got).sum())} bracketed"
    return line + "."


def build_report(inp: ReportInputs) -> bytes:
    pdf = _PDF(report_title(inp))
    form = "pure"
    _summary(pdf, inp, form)
    for i, v in enumerate(sorted(inp.curves["variant"].unique()), 1):
        _variant_page(pdf, inp, i, v)
    _comparison(pdf, inp)
    _accounting(pdf, inp, form)
    _extrapolation(pdf, inp)
    _predictions(pdf, inp)
    _methods_caveats_appendix(pdf, inp)
    return bytes(pdf.output())
