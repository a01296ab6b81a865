# vault_wallets — developer tasks.  Quick start: `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test test-postgres lint docs bench bench-smoke bench-tools clean

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

lint: $(STAMP)
	$(BIN)/ruff check vault_wallets tests example_project bench

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

## Benchmarks on the real stack (gunicorn, PostgreSQL, Redis, Celery, wrk): see docs/benchmarks.md.
bench: $(STAMP) bench-tools
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## The same, seconds long (CI): every scenario once, no targets enforced, nothing written.
bench-smoke: $(STAMP) bench-tools
	$(BIN)/python bench/run.py --smoke $(BENCH_ARGS)

bench-tools:
	@command -v wrk >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk redis-server >/dev/null)

clean:
	rm -rf $(VENV) site .pytest_cache example_project/db.sqlite3
