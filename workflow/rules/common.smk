# Named helpers the rules use (no logic in lambdas), and the study's run table.
import hashlib
from pathlib import Path

RESULTS = config["results_dir"]
DATA = f"{RESULTS}/data"
RUNS = {r["run_id"]: r for r in STUDY["runs"]}
VARIANTS = list(STUDY["variants"])
# the files a training job runs besides its model (the model's own files are in the study's source_hash)
TRAIN_CODE = ("training/loop.py", "training/data.py", "training/device.py", "training/checkpoint.py",
              "training/tokenizer.py", "training/atomic.py", "workflow/scripts/train.py")
RUN_DIR = f"{RESULTS}/runs/{{variant}}/{{size}}/seed{{seed}}_lr{{lr}}"


wildcard_constraints:
    variant="[a-z0-9_]+",
    size="[A-Za-z0-9_]+",
    seed="[0-9]+",
    lr="[0-9.e+-]+",
    compute="flops|flops_6n",


def source_hash(*paths):
    """sha256 of the source files a job runs: Snakemake tracks params, not script contents."""
    h = hashlib.sha256()
    for path in paths:
        for f in sorted(Path(workflow.basedir, path).glob("**/*.py")) if Path(workflow.basedir, path).is_dir() else [Path(workflow.basedir, path)]:
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


# analysis code each stage runs: the statistics (frontier, fit, compare), figures, the report
STATS_CODE = tuple(
    f"analysis/{m}.py" for m in ("__init__", "bootstrap", "compare", "fits", "frontier", "io", "options", "stages", "table")
)
FIGURES_CODE = STATS_CODE + ("analysis/plots.py",)
REPORT_CODE = ("analysis/report.py", "analysis/compare.py", "analysis/options.py", "analysis/io.py")


def run_of(wildcards):
    return RUNS[f"{wildcards.variant}/{wildcards.size}/seed{wildcards.seed}_lr{wildcards.lr}"]


def run_dirs():
    return [RUN_DIR.format(variant=r["variant"], size=r["size"], seed=r["seed"], lr=r["lr_label"]) for r in STUDY["runs"]]


def all_curves(wildcards=None):
    return [f"{d}/curve.csv" for d in run_dirs()]


def all_run_infos(wildcards=None):
    return [f"{d}/run.json" for d in run_dirs()]


def train_size_overrides(wildcards):
    return run_of(wildcards)["size_config"]


def train_seed(wildcards):
    return run_of(wildcards)["seed"]


def train_lr(wildcards):
    return run_of(wildcards)["lr"]


def train_source_hash(wildcards):
    return f"{run_of(wildcards)['source_hash']}-{source_hash(*TRAIN_CODE)}"


def train_mem_mb(wildcards, attempt):
    """Memory scales with parameters (weights + AdamW state) and activations (batch x seq x width)."""
    run = run_of(wildcards)
    t = config["training"]
    activations = 40 * t["batch_size"] * t["seq_len"] * run["size_config"]["d_model"] * run["size_config"]["n_layer"] * 4
    return int(1500 + (16 * run["params_nonembedding"] + activations) / 2**20 * attempt)


def train_runtime(wildcards, attempt):
    """Minutes: accounted FLOPs at a pessimistic 2 GFLOP/s per CPU thread (10 TFLOP/s on a GPU), x2 margin."""
    run = run_of(wildcards)
    t = config["training"]
    rate = 1e13 if t["gpus"] else 2e9 * t["threads"]
    return int(10 + 2 * run["train_flops"] / rate / 60 * attempt)


def analysis_params():
    return dict(config["analysis"])


def fit_analysis_params(wildcards):
    return {**config["analysis"], "compute": wildcards.compute}


def fit_tables(compute):
    """{table kind: [one file per variant]} of the fits made with `compute`."""
    return {
        kind: expand(f"{RESULTS}/analysis/fit/{{variant}}/{compute}/{kind}.csv", variant=VARIANTS)
        for kind in ("fits", "bootstrap", "ln_fits")
    }


def figure_stems():
    """Figures of the study: one learning-curve figure per variant, one frontier overlay per
    objective, the exponent forest, the delta-alpha matrices (two or more variants), extrapolation."""
    objectives = sorted({v["objective"] for v in STUDY["variants"].values()})
    stems = [f"curves_{v}" for v in VARIANTS] + [f"frontiers_{o}" for o in objectives] + ["exponent_forest"]
    if len(VARIANTS) > 1:
        stems += ["delta_alpha_pure", "delta_alpha_eterm"]
    return stems + ["extrapolation", "loss_vs_params"]


def figure_caption(stem):
    return f"../report/{stem.rsplit('_', 1)[0] if stem.startswith(('curves_', 'frontiers_')) else stem}.rst"


def figure_outputs():
    return {
        stem: report(f"{RESULTS}/report/figures/{stem}.png", caption=figure_caption(stem), category="figures")
        for stem in figure_stems()
    }


def alt_compute():
    return "flops_6n" if config["analysis"]["compute"] == "flops" else "flops"


def train_benchmarks(wildcards=None):
    return [f"{RESULTS}/benchmarks/train/{r['variant']}/{r['size']}/seed{r['seed']}_lr{r['lr_label']}.tsv" for r in STUDY["runs"]]


def primary_fit_tables(wildcards=None):
    return fit_tables(config["analysis"]["compute"])


def analysis_tables(wildcards=None):
    return {
        **primary_fit_tables(),
        **{name: path for name, path in FRONTIER_TABLES.items()},
        **{name: path for name, path in COMPARE_TABLES.items()},
        "curves": f"{RESULTS}/analysis/curves.csv",
    }


ENV = "../../environment.yml"
FRONTIER_TABLES = {
    name: f"{RESULTS}/analysis/frontier/{name}.csv"
    for name in ("frontier_points", "frontier_grid", "frontier_owners", "frontier_summary", "runs")
}
COMPARE_TABLES = {name: f"{RESULTS}/analysis/compare/{name}.csv" for name in ("pairs", "crossovers", "tiers", "extrapolation", "lr_choice")}
