"""The test suite's Celery app (eager unless CELERY_BROKER_URL is set for the worker tests)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("vault_wallets_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["vault_wallets"])
