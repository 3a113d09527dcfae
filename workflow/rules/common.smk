# Named helpers the rules use (no logic in lambdas), and the study's run table.
import os
import sys
from pathlib import Path

from analysis.table_list import STAGE_TABLES
from archscale.code import code_hash
from study import plan
from study.config import flops_per_token

RESULTS = config["results_dir"]
DATA = f"{RESULTS}/data"
WSD = config["training"]["schedule"] == "wsd"
RUNS = {r["run_id"]: r for r in STUDY["runs"]}  # final runs: one per (lineage, budget)
STABLES = {s["lineage"]: s for s in STUDY["stables"]}  # wsd: one stable run per lineage
VARIANTS = list(STUDY["variants"])
# the code a training job runs besides its model (the model's own files are in the study's source_hash):
# whole package folders, so that no module can be forgotten in a hand-kept list. The study package (config
# resolution, `archscale plan`) designs the study and reaches a job through its params; training/ never
# imports it (tests/study/test_plan.py checks), so editing it retrains nothing
TRAIN_CODE = ("training", "archscale/workflow.py", "workflow/scripts/train.py")
# a lineage is (variant, size, seed, lr); each of its budgets is a run in a folder of its own
LINEAGE_DIR = f"{RESULTS}/runs/{{variant}}/{{size}}/seed{{seed}}_lr{{lr}}"
RUN_DIR = f"{LINEAGE_DIR}/{{budget}}"
STABLE_DIR = f"{LINEAGE_DIR}/stable"


wildcard_constraints:
    variant="[a-z0-9_]+",
    size="[A-Za-z0-9_]+",
    seed="[0-9]+",
    lr="[0-9.e+-]+",
    budget="[CDT][0-9.e]+",
    compute="flops|flops_6n",


def source_hash(*paths):
    """Hash of the source files a job runs (archscale.code.code_hash): Snakemake tracks params, not script
    contents. Paths are relative to the workflow's folder; a folder stands for its .py files.
    """
    return code_hash(Path(workflow.basedir, p) for p in paths)


def tokenizer_params():
    """The tokenizer settings the tokenizer stage uses (not the shards' size or the encoding workers)."""
    t = config["tokenizer"]
    if t["file"] or t["pretrained"]:
        return {k: t[k] for k in ("file", "pretrained", "vocab_size")}
    return {k: t[k] for k in ("vocab_size", "train_bytes")}


def tokenizer_corpus_params():
    """The corpus settings a trained tokenizer's sample depends on (none for a given tokenizer; not the
    held-out cap, which only moves documents that the sample never reads)."""
    t = config["tokenizer"]
    if t["file"] or t["pretrained"]:
        return {}
    return {k: v for k, v in config["corpus"].items() if k != "val_tokens"}


def given_tokenizer_files(wildcards=None):
    """A given tokenizer's local file or folder, an input of the tokenizer stage (a change reruns it)."""
    t = config["tokenizer"]
    local = t["file"] or (
        t["pretrained"] if t["pretrained"] and Path(t["pretrained"]).exists() else None
    )
    return [local] if local else []


def prepare_threads():
    """Encoding processes of the tokens stage: tokenizer.workers, or every core of this machine (Snakemake
    lowers a job's threads to the cores it was given: --cores, or --local-cores beside a cluster).
    """
    return config["tokenizer"]["workers"] or os.cpu_count()


# analysis code each stage runs: the whole analysis package (and the glue the scripts share)
STATS_CODE = ("analysis", "archscale/workflow.py")
FIGURES_CODE = STATS_CODE
REPORT_CODE = STATS_CODE + ("workflow/scripts/report.py", "study/plan.py")


def lineage_of(wildcards):
    return f"{wildcards.variant}/{wildcards.size}/seed{wildcards.seed}_lr{wildcards.lr}"


def run_of(wildcards):
    """The job's run record: a budget's run, or (no budget wildcard) the lineage's stable run."""
    if "budget" in wildcards.keys():
        return RUNS[f"{lineage_of(wildcards)}/{wildcards.budget}"]
    return STABLES[lineage_of(wildcards)]


def lineage_dir(r):
    return LINEAGE_DIR.format(
        variant=r["variant"], size=r["size"], seed=r["seed"], lr=r["lr_label"]
    )


def run_dirs():
    return [f"{lineage_dir(r)}/{r['budget']}" for r in STUDY["runs"]]


def all_curves(wildcards=None):
    return [f"{d}/curve.csv" for d in run_dirs()]


def all_run_infos(wildcards=None):
    return [f"{d}/run.json" for d in run_dirs()]


def lost_runs():
    """The curve.csv and run.json files of final runs that are gone while the curve table built from them
    is still there. Snakemake alone would rebuild neither (an up-to-date downstream file hides a missing intermediate one,
    as with temp files) and the analysis would keep the lost run's rows."""
    if not Path(f"{RESULTS}/analysis/curves.csv").exists():
        return []
    return [
        f"{d}/{name}"
        for d in run_dirs()
        for name in ("curve.csv", "run.json")
        if not Path(d, name).exists()
    ]


def lost_run_targets():
    """The lost runs (lost_runs) as targets of `all`, saying so: a target's job runs, and every job after it
    reruns with it (its input updated by another job), so the curve table and the analysis are rebuilt.
    Only the main process says it (not a cluster job's own snakemake)."""
    lost = lost_runs()
    runs = sorted({path.rsplit("/", 1)[0] for path in lost})
    if runs and workflow.is_main_process:
        sys.stderr.write(
            f"archscale: {len(runs)} finished run(s) lost their curve.csv or run.json "
            f"({runs[0]}{', ...' if len(runs) > 1 else ''}): they retrain and the analysis is rebuilt\n"
        )
    return lost


def stable_info(wildcards):
    """A cooldown branches from its lineage's stable run. The stable run's parameters leave out where
    it ends (its last budget's branch, read when it runs): adding a budget beyond that end does not
    rerun it (the new budget's cooldown trains on from the stable run's last checkpoint), so it never
    reruns the cooldowns of the other budgets; any change of its trajectory reruns them all.
    """
    return f"{STABLE_DIR}/run.json".format(**dict(wildcards.items()))


def train_size_config(wildcards):
    return run_of(wildcards)["size_config"]


def train_config(wildcards):
    """The run's resolved TrainConfig fields (budget, seed and lr included); a stable run's also carry the
    early-stop rule's settings when it is enabled (only then: a study without it keeps its params).
    """
    es = config["training"]["early_stop"]
    if es["enabled"] and "budget" not in wildcards.keys():
        return {**run_of(wildcards)["train_config"], "early_stop": es}
    return run_of(wildcards)["train_config"]


def early_stop_reference(wildcards):
    """The early-stop rule's reference table (an input of the stable runs), when the rule is enabled."""
    es = config["training"]["early_stop"]
    return [es["reference"]] if es["enabled"] else []


def train_source_hash(wildcards):
    """The model's and the training code's hash; a stable run under the early-stop rule also runs the analysis
    package (its predictions), so with the rule enabled, and only then, that code reruns them too.
    """
    h = f"{run_of(wildcards)['source_hash']}-{source_hash(*TRAIN_CODE)}"
    if config["training"]["early_stop"]["enabled"] and "budget" not in wildcards.keys():
        h += f"-{source_hash('analysis')}"
    return h


def train_gpus(wildcards):
    """GPUs of the job's run: its size's variants.<v>.gpus entry, else training.gpus."""
    return run_of(wildcards)["gpus"]


# One cost model (study/plan.py) sizes every training job: the plan, the report's predicted times and
# these resources. Its prior where no plan was written is rough; only the order of the priorities is used.
COST = plan.config_cost_model(config)
FPT = flops_per_token(STUDY)


def expected_seconds(wildcards):
    """Predicted seconds of a training job (a stable run or a budget's run)."""
    return plan.job_cost(run_of(wildcards), config, FPT, COST)["seconds"]


def train_mem_mb(wildcards, attempt):
    """Host memory: weights + AdamW state, and on a CPU the activations (study/plan.py host_memory_mb)."""
    return plan.host_memory_mb(run_of(wildcards), config, attempt)


def train_runtime(wildcards, attempt):
    """Minutes: a margin over the job's predicted time (study/plan.py runtime_minutes)."""
    return plan.runtime_minutes(expected_seconds(wildcards), attempt)


def train_priority(wildcards):
    """Snakemake priority of a training job: its expected seconds, so that the longest jobs start
    first and a study does not end on one long run with the other cores idle (at least 1: the
    rules without a priority have 0)."""
    return max(1, int(round(expected_seconds(wildcards))))


def analysis_params():
    return dict(config["analysis"])


def fit_analysis_params(wildcards):
    return {**config["analysis"], "compute": wildcards.compute}


FIT_KINDS = STAGE_TABLES["fit"]


def fit_tables(compute):
    """{table kind: [one file per variant]} of the fits made with `compute`."""
    return {
        kind: expand(
            f"{RESULTS}/analysis/fit/{{variant}}/{compute}/{kind}.csv", variant=VARIANTS
        )
        for kind in FIT_KINDS
    }


def figure_outputs():
    """The study's figures, from the library's one list (analysis/report/figure_list.py), marked for --report."""
    from analysis.report.figure_list import caption_of, figure_stems

    objectives = sorted({v["objective"] for v in STUDY["variants"].values()})
    return {
        stem: report(
            f"{RESULTS}/report/figures/{stem}.png",
            caption=f"../report/{caption_of(stem, VARIANTS, objectives)}.rst",
            category="figures",
        )
        for stem in figure_stems(VARIANTS, objectives)
    }


def alt_compute():
    return "flops_6n" if config["analysis"]["compute"] == "flops" else "flops"


def train_benchmarks(wildcards=None):
    """Benchmark files of every training job (stable runs and cooldowns, or cosine runs)."""
    bench = (
        lambda r, leaf: f"{RESULTS}/benchmarks/train/{r['variant']}/{r['size']}/seed{r['seed']}_lr{r['lr_label']}/{leaf}.tsv"
    )
    return [bench(r, r["budget"]) for r in STUDY["runs"]] + [
        bench(s, "stable") for s in STUDY["stables"]
    ]


def lr_sweep_table(wildcards=None):
    """The recorded lr sweep the report's appendix shows (config report.lr_sweep), or nothing."""
    path = config["report"].get("lr_sweep")
    return {"lr_sweep": path} if path else {}


def primary_fit_tables(wildcards=None):
    return fit_tables(config["analysis"]["compute"])


def analysis_tables(wildcards=None):
    return {
        **primary_fit_tables(),
        **{name: path for name, path in FRONTIER_TABLES.items()},
        **{name: path for name, path in COMPARE_TABLES.items()},
        **{name: path for name, path in SENSITIVITY_TABLES.items()},
        "predictions": PREDICTION_TABLE,
        "curves": f"{RESULTS}/analysis/curves.csv",
    }


ENV = "../../environment.yml"
FRONTIER_TABLES = {
    name: f"{RESULTS}/analysis/frontier/{name}.csv" for name in STAGE_TABLES["frontier"]
}
COMPARE_TABLES = {
    name: f"{RESULTS}/analysis/compare/{name}.csv" for name in STAGE_TABLES["compare"]
}
SENSITIVITY_TABLES = {
    name: f"{RESULTS}/analysis/sensitivity/{name}.csv"
    for name in STAGE_TABLES["sensitivity"]
}
PREDICTION_TABLE = f"{RESULTS}/analysis/predict/predictions.csv"
