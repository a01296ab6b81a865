# vault_wallets — developer tasks.  Quick start: `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test test-postgres faults lint docs bench bench-smoke bench-tools mutation clean typecheck matrix test-install dist

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
	$(BIN)/ruff check vault_wallets tests example_project bench noxfile.py

typecheck: $(STAMP)
	$(BIN)/mypy

## Every supported Python × Django pair (noxfile.py; pyenv's Pythons).
matrix: $(STAMP)
	$(BIN)/nox -s tests $(NOX_ARGS)

## Build the sdist and wheel, check their contents, follow the README's install section in a new project.
test-install: $(STAMP)
	VAULT_INSTALL_TESTS=1 $(BIN)/python -m pytest -p no:cacheprovider tests/test_readme_install.py $(PYTEST_ARGS)

dist: $(STAMP)
	rm -rf dist && $(BIN)/python -m build --outdir dist .

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

## Mutation testing of the security- and money-critical modules (docs/testing.md).
## MUTATION_ARGS="--sample 30" runs a deterministic sample, as CI does.
mutation: $(STAMP)
	$(BIN)/python tests/mutation/run.py $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) site .pytest_cache .nox dist build mutants example_project/db.sqlite3 example_project/local_secrets.json
