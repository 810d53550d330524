# The single entry point: CI (.ci/run) and humans call these targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
STAMP  := $(VENV)/.installed

.PHONY: install run test lint format typecheck check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml sdk/pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./sdk
	@touch $(STAMP)

install: $(STAMP)

# Data in ./.exosphere/ (kept across restarts, same API key); RUN_ARGS=--memory for a throwaway store.
run: install
	$(BIN)/python -m state_manager --host $(HOST) --port $(PORT) --dev $(RUN_ARGS)

# Two processes for the suite, then the tests that measure time (marked serial) alone; a run
# that selects none of them (PYTEST_ARGS naming other tests) is fine (pytest's exit code 5).
test: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not serial" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

# BENCH_ARGS: e.g. --quick, --workloads A,D, --sdks ours, --stores nx, --mongo-uri URI (see --help).
bench: install
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
