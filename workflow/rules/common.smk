# Named helpers the rules use (no logic in lambdas), and the study's run table.
import hashlib
from pathlib import Path

RESULTS = config["results_dir"]
DATA = f"{RESULTS}/data"
RUNS = {r["run_id"]: r for r in STUDY["runs"]}
VARIANTS = list(STUDY["variants"])
RUN_DIR = RESULTS + "/runs/{variant}/{size}/seed{seed}_lr{lr}"


wildcard_constraints:
    variant="[a-z0-9_]+",
    size="[A-Za-z0-9_]+",
    seed="[0-9]+",
    lr="[0-9.e+-]+",


def source_hash(*paths):
    """sha256 of the source files a job runs: Snakemake tracks params, not script contents."""
    h = hashlib.sha256()
    for path in paths:
        for f in sorted(Path(workflow.basedir, path).glob("**/*.py")) if Path(workflow.basedir, path).is_dir() else [Path(workflow.basedir, path)]:
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


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
    return run_of(wildcards)["source_hash"] + source_hash("training")


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


def fit_variant_curves(wildcards):
    return f"{RESULTS}/analysis/curves.csv"


def analysis_params():
    return dict(config["analysis"])
