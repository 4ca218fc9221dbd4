# Two entry points: `make demo` and `make test`. Each creates .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	# Pinned CPU build of torch (a bare `torch` would pull a multi-GB CUDA build).
	$(BIN)/pip install -q torch==2.13.0
	# [dev] = [all] (data, viz, hub, gradients: every documented command, tests/test_docs_run.py) + pytest, ruff.
	$(BIN)/pip install -q -e '.[dev]'
	# Only for the brainmarks plugin smoke test: brainmarks' registry without its 24 hard dependencies (wandb,
	# pycortex, peft...); users install it with `pip install 'brainjepa[brainmarks]'` (docs/brainmarks.md).
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

clean:
	rm -rf $(VENV) build dist src/*.egg-info
