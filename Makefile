# Two entry points that work on a fresh clone with only Python 3.11+:
#   make demo   the whole loop on embedded defaults (SQLite, local files, in-process engine)
#   make test   lint (ruff), types (mypy on src/) and the test suite (pytest)
#   make bench  every benchmark, one markdown report (BENCH_ARGS="--quick --only engine,ui"); not part of test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS := dev,postgres,redis,serve,evals,monitor,security,tracing,kubernetes,ray,dashboard

.PHONY: install demo test test-fast lint typecheck format clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned to the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python scripts/demo.py

lint: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: install
	$(BIN)/mypy src

test: lint typecheck
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow"

bench: install
	PYTHONPATH=src:. $(BIN)/python bench/run_all.py $(BENCH_ARGS)

format: install
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

clean:
	rm -rf $(VENV) .llmops .mypy_cache .ruff_cache .pytest_cache
