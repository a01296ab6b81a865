"""The example shop's Celery app.

Zero setup (``make demo``): no ``CELERY_BROKER_URL`` → tasks run eagerly, in-process, right after
the webhook's transaction commits; no broker or worker is needed, at the price of processing
inside the webhook request.  With ``CELERY_BROKER_URL=redis://127.0.0.1:6379/0`` the tasks go
to Redis and a real worker runs them:

    cd example_project
    celery -A shop worker --loglevel=info          # the worker
    celery -A shop beat --loglevel=info            # the sweeper schedule (or: worker -B)
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
