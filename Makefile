# vault_wallets — developer tasks.  Quick start: `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test test-postgres faults lint docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the example shop on SQLite with the sandbox processor (no servers needed).
demo: $(STAMP)
	cd example_project && ../$(BIN)/python manage.py migrate --noinput
	cd example_project && ../$(BIN)/python manage.py create_demo_data
	@echo "Shop: http://$(HOST):$(PORT)/  shopper / shopper-demo-pass  (admin: staff / staff-demo-pass)"
	cd example_project && ../$(BIN)/python manage.py runserver $(HOST):$(PORT)

## The whole test suite (SQLite unless DATABASE_URL is set).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## The fault suite (docs/reliability.md): PostgreSQL, a private redis-server and a real Celery worker.
## Writes the figures table to $(FAULT_FIGURES).  About two minutes.
FAULT_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
FAULT_FIGURES ?= fault-figures.md
faults: $(STAMP)
	DATABASE_URL="$${DATABASE_URL:-$(FAULT_DATABASE_URL)}" TEST_DATABASE_NAME="$${TEST_DATABASE_NAME:-test_vault_wallets_faults}" \
	  VAULT_FAULT_SUITE=1 VAULT_FAULT_FIGURES="$(FAULT_FIGURES)" \
	  $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_fault_suite.py
	@cat $(FAULT_FIGURES)

lint: $(STAMP)
	$(BIN)/ruff check vault_wallets tests example_project bench

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) site .pytest_cache example_project/db.sqlite3
