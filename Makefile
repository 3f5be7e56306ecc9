# Two entry points for a fresh machine: `make demo` and `make test`.
# Each builds its own virtualenv; torch==2.13.0 goes in first so the package's
# `torch>=2.3` range is already satisfied by the local CPU build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: venv test test-fast demo lint bench bench-quick bench-detection clean system-deps

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

# Prometheus (server + promtool) for the integration tests; Debian's package, installed when we are root.
system-deps:
	@command -v prometheus >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >/dev/null; \
	  else echo "note: 'prometheus' is not installed and we are not root; Prometheus tests will be skipped"; fi; }

test: $(VENV)/.installed system-deps
	$(VENV)/bin/ruff check spex_monitor tests benchmarks scripts
	$(PY) -m pytest -q -n 2 --dist loadfile

# Unit tests only (no servers, no slow ground-truth checks): under a minute on 2 cores.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 -m "unit and not slow" --timeout 120

demo: $(VENV)/.installed
	$(PY) -m spex_monitor.demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check spex_monitor tests benchmarks scripts

bench: $(VENV)/.bench-installed
	$(PY) benchmarks/attribution.py

bench-quick: $(VENV)/.bench-installed
	$(PY) benchmarks/attribution.py --quick

# Detection power of interaction shift vs drift monitors (see benchmarks/detection/README.md).
bench-detection: $(VENV)/.bench-installed
	$(PY) benchmarks/detection/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
