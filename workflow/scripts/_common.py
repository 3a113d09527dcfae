"""Shared by every workflow script: put the project on sys.path, send logging to the rule's log,
and turn the project's input errors into one line on the console (and in the log)."""
import logging
import sys
from pathlib import Path

# Errors whose message already names the problem and the fix: print that line, no traceback.
ONE_LINE_ERRORS = ("InputError", "StudyError", "CurveTableError", "ConfigError", "FitError")


def setup(snakemake):
    root = str(Path(snakemake.scriptdir).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    console = sys.stderr
    if snakemake.log:
        Path(snakemake.log[0]).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(snakemake.log[0], "w", buffering=1)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def excepthook(kind, value, tb):
        if kind.__name__ in ONE_LINE_ERRORS or issubclass(kind, OSError):
            line = f"archscale error in rule {snakemake.rule}: {value}"
            print(line, file=sys.stderr)
            if console is not sys.stderr:
                print(line, file=console)
            sys.exit(1)
        sys.__excepthook__(kind, value, tb)
        if console is not sys.stderr:
            print(f"archscale: rule {snakemake.rule} failed with {kind.__name__}: {value} (traceback in {snakemake.log[0]})",
                  file=console)

    sys.excepthook = excepthook
    return logging.getLogger("archscale")
