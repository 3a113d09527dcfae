# Two entry points: `make run` (set up, then the default study) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: setup run test smoke lint clean-results clean-checkpoints

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-build-isolation --no-deps -e .
	touch $@

run: setup
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete

test: setup
	$(BIN)/python -m pytest

smoke: setup
	$(BIN)/snakemake --cores $(CORES) --configfile tests/smoke/config.yaml --config results_dir=results/smoke --rerun-incomplete

# the gates CI runs before the tests: ruff (lint), snakefmt (format of the Snakemake files), snakemake --lint
lint: setup
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile workflow/
	$(BIN)/snakemake --lint

# Checkpoints kept for cooldown branches (wsd stable runs) and left by failed runs; a later budget
# inside a stable run's range then retrains its stable phase from scratch instead of branching.
clean-checkpoints:
	find results -type d -name checkpoints -prune -exec du -sh {} + 2>/dev/null | sort -h | tail -5 || true
	find results -type d -name checkpoints -prune -exec rm -rf {} +
