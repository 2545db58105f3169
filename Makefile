# reefd: `make demo` and `make test` set up everything themselves on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# Without a GPU, the CPU build of torch first (seconds); with one, keep a CUDA torch.
	if ! command -v nvidia-smi >/dev/null 2>&1; then \
		$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0; \
	fi
	# The NVRTC wheels compile the kernel library without a GPU or driver.
	$(PIP) install -q -e ".[dev,nvrtc]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/reef demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m reefd.kernels check --arch sm_90
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
