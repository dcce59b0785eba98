# DHO Interop — the two commands a new machine needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
export INTEROP_SHARED_DIR ?= $(abspath ../shared)
# KITH schemas for the demo: the official XSDs beside the checkout, unless configured
KITH_CATALOG := $(wildcard $(INTEROP_SHARED_DIR)/standards/kith/catalog.xml)
ifneq ($(KITH_CATALOG),)
export INTEROP_KITH_SCHEMA_DIR ?= $(patsubst %/,%,$(dir $(KITH_CATALOG)))
endif

.PHONY: install run test test-sqlite lint format bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

## run: migrate the embedded SQLite database, load the demo data set, serve the API and run
## the delivery worker beside it
# a local run logs plain text for a person reading the terminal (services keep JSON lines)
run: export INTEROP_LOG_JSON ?= false
run: install
	$(BIN)/interop migrate
	$(BIN)/interop demo
	@echo ""
	@echo "  DHO Interop is starting on http://$(HOST):$(PORT)"
	@echo "    start here:      http://$(HOST):$(PORT)/  (worklists, indicators, docs)"
	@echo "    FHIR API:        http://$(HOST):$(PORT)/fhir/metadata"
	@echo "    API docs:        http://$(HOST):$(PORT)/docs"
	@echo "    messages:        http://$(HOST):$(PORT)/api/v1/messages"
	@echo "    admin key:       $${INTEROP_ADMIN_KEY:-dev-admin-key}  (Authorization: Bearer …)"
	@echo "    KITH schemas:    $${INTEROP_KITH_SCHEMA_DIR:-not set (GP messages are dead-lettered)}"
	@echo "    GP file drops:   /tmp/dho-interop/*/out/"
	@echo ""
	@$(BIN)/interop worker & worker=$$!; \
	  trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	  $(BIN)/interop serve --host $(HOST) --port $(PORT)

## test: the whole suite on SQLite and on a real PostgreSQL (started here when not given)
test: install
	@scripts/ensure-chromium.sh
	@url=$$(scripts/test-postgres.sh) && \
	  INTEROP_TEST_PG_URL="$$url" $(BIN)/python -m pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS)

test-sqlite: install
	INTEROP_TEST_BACKENDS=sqlite $(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: throughput/latency figures on SQLite and PostgreSQL; writes bench-report.md
bench: install
	@url=$$(scripts/test-postgres.sh) && \
	  INTEROP_BENCH_PG_URL="$${url%/interop_test}/interop_bench" $(BIN)/python -m interop.bench $(BENCH_ARGS)

clean:
	rm -rf var/interop.db* .pytest_cache .mypy_cache .ruff_cache
