# Set-up and everyday commands (CONTRACT §1). GNU make.
#   make demo   venv + install, then the sandbox, the gateway and a sample feed
#   make test   venv + install + PostgreSQL/Redis binaries, then the whole suite
# PYTEST_ADDOPTS and PYTEST_ARGS pass options to pytest, e.g. PYTEST_ARGS='-k intake -x'.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test services lint bench clean

# The stamp, not the venv directory, is the target: a venv whose install failed half-way has no
# stamp, so the next make finishes the job. Editing pyproject.toml reinstalls.
$(VENV)/.installed: pyproject.toml
	bash scripts/ensure-services.sh --python-venv "$(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/gateway demo

# pytest reads PYTEST_ADDOPTS from the environment itself. The cache plugin is off so that a
# run leaves nothing behind in the tree (and nothing that changes the next run's order).
test: $(VENV)/.installed services
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

services:
	bash scripts/ensure-services.sh

lint: $(VENV)/.installed
	$(BIN)/ruff check .

bench: $(VENV)/.installed
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/mapping.py

# Build output, caches and the virtual environment. var/ holds the demo database: left alone.
clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .hypothesis bench/results $(VENV)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
