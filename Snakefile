# archscale: how transformer architecture variants scale.
# Thin on purpose: config + validation, the rule files, and the target.
import sys

from study.config import StudyError, epoch_warnings, load_study

# The default study, unless a study is given with --configfile: then that file (plus schema
# defaults) is the whole study, not merged into the default one.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


try:
    STUDY = load_study(
        config,
        f"{workflow.basedir}/workflow/schemas/config.schema.yaml",
        cache_dir=".snakemake/archscale",
    )
except StudyError as e:
    sys.stderr.write(f"archscale: {e}\n")
    sys.exit(1)

config = STUDY["config"]
for line in epoch_warnings(STUDY, f"{config['results_dir']}/data/tokens/meta.json"):
    sys.stderr.write(f"archscale {line}\n")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/frontier.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/report.smk"


# Only training goes to a cluster; everything else is cheap and runs where Snakemake runs.
localrules:
    all,
    tokenizer,
    tokens,
    curves,
    frontier,
    fit,
    compare,
    sensitivity,
    predict,
    figures,
    report,


rule all:
    default_target: True
    input:
        f"{RESULTS}/report/report.pdf",
        lost_run_targets(),
