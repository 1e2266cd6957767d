# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= 2

.PHONY: demo demo-clean test test-slow lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

## demo: set up, then run the main job: a small ParaGRU language model on the
## built-in corpus (rerunning resumes; `make demo-clean` starts over).
demo: $(VENV)/.installed
	$(BIN)/seqjax train --config configs/demo.py --workdir runs/demo

demo-clean:
	rm -rf runs/demo

## test: set up with the test extra, then run the tests (what CI runs).
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q --durations=15

## test-slow: the heavier tests left out of `make test`.
test-slow: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q -m slow

lint: $(VENV)/.installed-test
	$(BIN)/ruff check seqjax tests experiments configs
	$(BIN)/ruff format --check seqjax tests experiments configs

format: $(VENV)/.installed-test
	$(BIN)/ruff format seqjax tests experiments configs
	$(BIN)/ruff check --fix seqjax tests experiments configs

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
