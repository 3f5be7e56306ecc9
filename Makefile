# Two entry points for a fresh machine: `make demo` and `make test`.
# Each builds its own virtualenv; torch==2.13.0 goes in first so the package's
# `torch>=2.3` range is already satisfied by the local CPU build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: venv test demo lint bench bench-quick clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PIP) install -q -e ".[dev,bench]"
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	$(VENV)/bin/ruff check spex_monitor tests benchmarks scripts
	$(PY) -m pytest -q -n 2

demo: $(VENV)/.installed
	$(PY) -m spex_monitor.demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check spex_monitor tests benchmarks scripts

bench: $(VENV)/.bench-installed
	$(PY) benchmarks/attribution.py

bench-quick: $(VENV)/.bench-installed
	$(PY) benchmarks/attribution.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
