"""The Python × Django matrix.  ``nox -l`` lists the sessions; ``nox -s tests`` runs them all.

Supported pairs are those Django itself supports: 5.2 LTS on Python 3.10–3.13, 6.0 and 6.1 on
Python 3.12–3.13.  Every pair runs on SQLite:

* the newest pair (Python 3.13 × Django 6.1) runs the **whole** suite, the Chromium tests included
  (CI's only SQLite pass of the whole suite), except the install test (``make test-install``);
  the real-worker tests skip on SQLite (they run in ``.ci/run``'s PostgreSQL + Redis step);
* every other pair runs ``SUBSET``: the Django-facing layers (system checks, shopper API,
  customer tokens, webhooks, admin, services, sandbox, checkout tags, security checks).
  Processor wire formats do not depend on Django and run once, on the newest pair.

``nox -s tests_postgres`` runs the whole suite on PostgreSQL with a real Celery worker on Redis
on the newest pair (needs ``DATABASE_URL``; ``.ci/run`` runs the same on Python 3.11 × Django 5.2).
Arguments after ``--`` replace the test selection: ``nox -s "tests-3.12(django='6.0')" -- tests/test_api.py``.
"""

from __future__ import annotations

import glob
import os

import nox

# Prefer pyenv's interpreters when they are there (CI and the development machines have them).
for _bin in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[0-9]*/bin")), reverse=True):
    if _bin not in os.environ.get("PATH", ""):
        os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

DJANGO_PYTHONS = {
    "5.2": ["3.10", "3.11", "3.12", "3.13"],
    "6.0": ["3.12", "3.13"],
    "6.1": ["3.12", "3.13"],
}
MATRIX = [(python, django) for django, pythons in DJANGO_PYTHONS.items() for python in pythons]
NEWEST = ("3.13", "6.1")
SUBSET = [
    "tests/test_checks.py",
    "tests/test_api.py",
    "tests/test_tokens.py",
    "tests/test_webhooks.py",
    "tests/test_admin.py",
    "tests/test_services.py",
    "tests/test_sandbox.py",
    "tests/test_sandbox_webhooks.py",
    "tests/test_commands.py",
    "tests/test_checkout.py",  # the checkout tags and their API (templates, sessions): ~15 s
    "tests/test_security_checks.py",  # the security system checks (runs `check`): ~2 s
]
WHOLE = ["tests", "--ignore=tests/test_readme_install.py"]


def _install(session: nox.Session, django: str) -> None:
    session.install("-e", ".[test]", f"Django=={django}.*")
    session.run("python", "-c", "import django; print('Django', django.get_version())")


@nox.session
@nox.parametrize("python,django", MATRIX, ids=[f"{py}-django{dj}" for py, dj in MATRIX])
def tests(session: nox.Session, django: str) -> None:
    """SQLite: the whole suite on the newest pair, ``SUBSET`` on the others."""
    _install(session, django)
    selection = session.posargs or (WHOLE if (session.python, django) == NEWEST else SUBSET)
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection,
                env={"DATABASE_URL": "", "VAULT_DEPRECATIONS_AS_ERRORS": "1"})


@nox.session(python=NEWEST[0])
def tests_postgres(session: nox.Session) -> None:
    """PostgreSQL + Redis + a real Celery worker, on the newest pair (needs DATABASE_URL)."""
    if not os.environ.get("DATABASE_URL"):
        session.error("set DATABASE_URL=postgres://… (and TEST_DATABASE_NAME) for this session")
    _install(session, NEWEST[1])
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *(session.posargs or WHOLE))
