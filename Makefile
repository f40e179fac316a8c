# pim — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: help install run test lint bench docs-check clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install pim with its pinned dependencies (idempotent)

run: install ## Start the whole service (embedded PostgreSQL/Redis unless PIM_*_URL are set)
	$(BIN)/pim serve

test: install ## Run the test suite on real PostgreSQL and Redis (embedded unless URLs are set)
	$(BIN)/pytest

lint: install ## ruff + mypy --strict
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src

docs-check: install ## Render the API reference in headless Chromium (installs it with apt if missing)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null \
		|| (apt-get install -y -q chromium >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null))
	PIM_REQUIRE_BROWSER=1 $(BIN)/pytest -q tests/test_docs_page.py

bench: install ## Benchmark a running service against raw baselines -> bench/results.json
	$(BIN)/python -m bench.run

clean: ## Remove the virtualenv and local data
	rm -rf $(VENV) .pim .pytest_cache .mypy_cache .ruff_cache
