# Two entry points: `make demo` and `make test`. Each creates .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean min-deps

# torch==2.13.0 comes from wherever pip looks by default. PyPI's Linux wheel is the CUDA build whatever the pin
# (multi-GB nvidia-* libraries); its macOS and Windows wheels are CPU builds. A Linux machine that wants CPU only
# names PyTorch's CPU wheel index:  make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
# If that index cannot be reached, make says so in one line and falls back to plain pip. Empty (the default): plain
# pip, which is what works offline or behind a PyPI-only mirror, and on macOS / Windows.
TORCH_INDEX ?=

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
ifeq ($(strip $(TORCH_INDEX)),)
	$(BIN)/pip install -q torch==2.13.0
else
	$(BIN)/pip install -q --timeout 30 --retries 1 --index-url $(TORCH_INDEX) torch==2.13.0 \
	  || { echo "make: torch==2.13.0 not installable from $(TORCH_INDEX); falling back to plain pip" >&2; \
	       $(BIN)/pip install -q torch==2.13.0; }
endif
	# [dev] = [all] (data, viz, hub: every documented command, tests/test_docs_run.py) + pytest, ruff and
	# brainspace (the reference tests/test_gradients.py compares the numpy/scipy gradients with).
	$(BIN)/pip install -q -e '.[dev]'
	# Only for the brainmarks plugin smoke test: brainmarks' registry without its 24 hard dependencies (wandb,
	# pycortex, peft...). brainmarks 0.1.1 pins setuptools<67 and torch 2.13 needs setuptools>=77.0.3, so it can
	# only ever go in with --no-deps; users: pip install 'brainjepa[brainmarks]' (its other dependencies), then
	# pip install --no-deps brainmarks==0.1.1 (README, docs/brainmarks.md).
	$(BIN)/pip install -q --no-deps brainmarks==0.1.1 templateflow==25.1.2 acres==0.5.0 platformdirs==4.14.8
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

demo: $(STAMP)
	$(BIN)/brainjepa quickstart

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_model.py

# The declared minimum versions (constraints/min-deps.txt) in their own venv, then the tests. Not in .ci/run, which
# it would slow by far more than a minute: a second full install (torch 2.4.0: PyPI's Linux wheel is the CUDA build;
# TORCH_INDEX picks the CPU one) and a second test run. Run it by hand when a lower bound in pyproject.toml changes.
MIN_VENV := .venv-min
min-deps:
	$(PY) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/pip install -q $(if $(strip $(TORCH_INDEX)),--index-url $(TORCH_INDEX)) -c constraints/min-deps.txt torch
	$(MIN_VENV)/bin/pip install -q -c constraints/min-deps.txt -e '.[all]' pytest
	$(MIN_VENV)/bin/python -m pytest -q tests

clean:
	rm -rf $(VENV) $(MIN_VENV) build dist src/*.egg-info
