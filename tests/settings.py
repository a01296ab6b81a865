"""Settings for the test suite.  SQLite by default; ``DATABASE_URL`` switches (PostgreSQL in CI)."""

import os

import dj_database_url

# Random, for this test suite only (the vault_wallets.W002 check refuses published example keys).
SECRET_KEY = "tests-only-nNH6sMakzmzUoLD2w3cy1eUq3I37_0XrAz5d7xW8V4uDTGuiFuwVSA"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]

_db_url = os.environ.get("DATABASE_URL")
if _db_url:
    DATABASES = {"default": dj_database_url.parse(_db_url, conn_max_age=0)}
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ.get("TEST_DATABASE_NAME", "test_vault_wallets")
    if os.environ.get("VAULT_WORKER_DATABASE_NAME"):  # a Celery worker started by tests/test_worker.py
        DATABASES["default"]["NAME"] = os.environ["VAULT_WORKER_DATABASE_NAME"]
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_URL = "/static/"

FERNET_KEYS = ["test-fernet-key-newest", "test-fernet-key-older"]

VAULT_WALLETS = {
    "DEFAULT_ACCOUNT": "default",
    "ACCOUNTS": {
        "default": {
            "PROCESSOR": "vault_wallets.processors.sandbox.SandboxProcessor",
            "OPTIONS": {"WEBHOOK_SECRETS": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]},
        },
        "stalling": {
            "PROCESSOR": "tests.slow_processor.StallingSandboxProcessor",
            "OPTIONS": {"WEBHOOK_SECRETS": ["whsec_c3RhbGxpbmctYWNjb3VudC1zZWNyZXQ="]},
        },
        "eu": {
            "PROCESSOR": "vault_wallets.processors.sandbox.SandboxProcessor",
            "OPTIONS": {"WEBHOOK_SECRETS": ["whsec_c2Vjb25kLWFjY291bnQtc2VjcmV0"]},
        },
    },
    "CUSTOMER_TOKEN_TTL": 900,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"vault_wallets": {"level": "DEBUG"}},
}

# Celery: eager for unit tests; the worker tests set CELERY_BROKER_URL (a real Redis).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://")
CELERY_TASK_ALWAYS_EAGER = os.environ.get("VAULT_CELERY_EAGER", "1") == "1"
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 5, "max_retries": 1}
