"""The example shop: SQLite and the sandbox processor by default, nothing else to run.

``DATABASE_URL`` switches to PostgreSQL.  ``VAULT_ACCOUNT_PROCESSOR`` and friends (see
docs/processors/) point the default account at another processor, e.g. one of the fakes.
"""

import json
import os
from pathlib import Path

import django

from .local_secrets import load_or_create

BASE_DIR = Path(__file__).resolve().parent.parent

# Nothing secret is committed: generated on first run into local_secrets.json (git-ignored);
# environment variables win.  See shop/local_secrets.py.
_SECRETS, _ = load_or_create()
SECRET_KEY = os.environ.get("SECRET_KEY") or _SECRETS["SECRET_KEY"]
# Off unless asked for (DEBUG=1): the technical 500 page shows settings and local variables.
DEBUG = os.environ.get("DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "vault_wallets",
    "vault_wallets.sandbox",
    "store",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "shop.csp.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]

if os.environ.get("DATABASE_URL"):
    import dj_database_url

    # Persistent connections: a new PostgreSQL connection per request costs more than most of our
    # requests (see docs/benchmarks.md).  CONN_MAX_AGE=0 restores Django's connect-per-request.
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"],
                                                  conn_max_age=int(os.environ.get("CONN_MAX_AGE", "600")),
                                                  conn_health_checks=True)}
else:
    # SQLite for concurrent web use (runserver is threaded): write-ahead logging so readers never
    # wait for a writer; BEGIN IMMEDIATE so a transaction takes the write lock when it starts and
    # waits for it (busy timeout) instead of failing with "database is locked" when a read lock
    # must be upgraded mid-transaction.  ``transaction_mode``/``init_command``: Django >= 5.1.
    _sqlite_options = {"timeout": 20}  # seconds: sqlite3's busy timeout
    if django.VERSION >= (5, 1):
        _sqlite_options.update(transaction_mode="IMMEDIATE",
                               init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL")
    # Against a processor's fake (VAULT_FAKE below) the shop keeps its own file per fake: the
    # sandbox's customer ids mean nothing to the fake, and the fake's nothing to the sandbox.
    _sqlite_name = "db-" + os.environ["VAULT_FAKE"].partition("@")[0] if os.environ.get("VAULT_FAKE") else "db"
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                             "NAME": os.environ.get("SQLITE_PATH", BASE_DIR / f"{_sqlite_name}.sqlite3"),
                             "OPTIONS": _sqlite_options}}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/checkout/"
LOGOUT_REDIRECT_URL = "/"

# Newest first.  In production these come from your secret store, never from the repo.
FERNET_KEYS = [os.environ.get("FERNET_KEY") or _SECRETS["FERNET_KEY"]]

_processor = os.environ.get("VAULT_ACCOUNT_PROCESSOR", "vault_wallets.processors.sandbox.SandboxProcessor")
_options = json.loads(os.environ.get("VAULT_ACCOUNT_OPTIONS", "{}")) or {
    "WEBHOOK_SECRETS": [os.environ.get("VAULT_WEBHOOK_SECRET") or _SECRETS["WEBHOOK_SECRET"]],
}
_account = {"PROCESSOR": _processor, "OPTIONS": _options}
if os.environ.get("VAULT_FAKE"):
    # VAULT_FAKE=caselle@http://127.0.0.1:8101 — the default account talks to that running fake
    # (python -m vault_wallets.testing.fakes.caselle --port 8101 prints the exact line).
    import importlib

    _fake_name, _, _fake_url = os.environ["VAULT_FAKE"].partition("@")
    _fake_module = importlib.import_module(f"vault_wallets.testing.fakes.{_fake_name}")
    # VAULT_FAKE_OPTIONS='{"VERIFY_TOKENS": true}' adds account options (JSON).
    _fake_options = json.loads(os.environ.get("VAULT_FAKE_OPTIONS") or "{}")
    _account = _fake_module.FAKE.at(_fake_url).account_settings(**_fake_options)
VAULT_WALLETS = {
    "DEFAULT_ACCOUNT": "default",
    "ACCOUNTS": {"default": _account},
    "CUSTOMER_TOKEN_TTL": 900,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"vault_wallets": {"handlers": ["console"], "level": "INFO"}},
}

# Celery: eager without a broker (zero setup); the production settings with one.
from vault_wallets.beat import BEAT_SCHEDULE  # noqa: E402

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "max_retries": 1}
CELERY_BEAT_SCHEDULE = BEAT_SCHEDULE
