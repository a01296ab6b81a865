# vault_wallets — developer tasks.  Quick start: `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test test-postgres lint docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the example shop on SQLite with the sandbox processor (no servers needed).
## Secrets are generated on first run into example_project/local_secrets.json (untracked); DEBUG=1 to debug.
demo: $(STAMP)
	cd example_project && ../$(BIN)/python -m shop.local_secrets
	cd example_project && ../$(BIN)/python manage.py migrate --noinput
	cd example_project && ../$(BIN)/python manage.py create_demo_data
	@echo "Shop: http://$(HOST):$(PORT)/  shopper / shopper-demo-pass  (admin: staff / staff-demo-pass)"
	cd example_project && ../$(BIN)/python manage.py runserver $(HOST):$(PORT)

## The whole test suite (SQLite unless DATABASE_URL is set).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check vault_wallets tests example_project bench

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) site .pytest_cache example_project/db.sqlite3 example_project/local_secrets.json
