# bibliodesk — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# PostgreSQL tier of the test suite: used when a server answers here (CI always has one).
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: run test venv protos check-protos lint typecheck buf-lint proto-baseline bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip==26.3"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/bibliodesk up --demo

test: $(STAMP)
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect('$(PG_TEST_URL:postgresql+psycopg://%=postgresql://%)', connect_timeout=3).close()" 2>/dev/null; then \
		echo "PostgreSQL tier: on ($(PG_TEST_URL))"; export BIBLIODESK_TEST_PG_URL="$(PG_TEST_URL)"; \
	else echo "PostgreSQL tier: off (no server at $(PG_TEST_URL)); SQLite only"; fi; \
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

protos: $(STAMP)
	$(BIN)/python tools/gen_protos.py

check-protos: $(STAMP)
	$(BIN)/python tools/gen_protos.py --check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy bibliodesk services

BUF := npx --yes @bufbuild/buf@1.75.0

# Lint the contracts and refuse wire-breaking changes against the published v1 (protos/v1-baseline.binpb).
buf-lint:
	$(BUF) lint protos
	$(BUF) breaking protos --against protos/v1-baseline.binpb

# Only when a change to the published contracts is intended (and versioned): refresh the baseline.
proto-baseline:
	$(BUF) build protos -o protos/v1-baseline.binpb

# Benchmarks print numbers (bench/README.md); e.g. make bench BENCH_ARGS="--quick"
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .bibliodesk
