# Parley — the two commands the README promises: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup setup-test run test lint typecheck bench clean

# Idempotent: the stamp files make a second run a no-op unless pyproject.toml changed.
setup: $(VENV)/.setup-stamp

$(VENV)/.setup-stamp: pyproject.toml scripts/system-deps.sh
	bash scripts/system-deps.sh runtime
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e .
	touch $@

setup-test: $(VENV)/.setup-test-stamp

$(VENV)/.setup-test-stamp: $(VENV)/.setup-stamp pyproject.toml scripts/system-deps.sh
	bash scripts/system-deps.sh test
	@echo "installing the test dependencies (llama-cpp-python compiles once, about 8 minutes on 2 cores)"
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install -q -e '.[test]'
	touch $@

run: setup
	$(BIN)/parley serve --host $(HOST) --port $(PORT)

lint: setup-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: setup-test lint
	PARLEY_REQUIRE_POSTGRES=1 $(BIN)/pytest -q -ra

bench: setup-test
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
