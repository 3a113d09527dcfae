"""archscale: how transformer architecture variants scale (a Snakemake study pipeline and its library).

The library is four packages beside this one: `models` (variants, sizes, parameter and FLOP
accounting), `training` (corpus, tokenizer, the training loop, checkpoints), `study` (a config's
resolution into runs, and planning) and `analysis` (frontiers, fits, comparisons, figures and the
report, on the learning-curve table alone).
This package holds the command line (`archscale ...`), the glue the workflow scripts share, and the
standard-library pieces every package shares: the one code hash (`archscale.code`) and the one atomic
file write (`archscale.files`).
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("archscale")
except PackageNotFoundError:  # a checkout used without `pip install -e .`
    __version__ = "0+unknown"
