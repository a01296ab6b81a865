"""Durable NOC chunks with a real Celery worker on a real (private) Redis and PostgreSQL.

The broker frozen (SIGSTOP) and refused, a burst, a duplicate storm, a worker SIGKILL and cut
database connections are in the fault suite (tests/test_fault_suite.py, ``make faults``).
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from tests.test_worker import (  # noqa: F401  (fixtures)
    _reset_producers,
    celery_live,
    noc_delivery,
    post,
    processed,
    redis_server,
    vaulted,
    wait_for,
)
from vault_wallets import services
from vault_wallets.models import NocChunk, SavedPaymentMethod, WebhookEvent
from vault_wallets.relay import relay
from vault_wallets.services import events

pytestmark = [
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (set DATABASE_URL)"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    pytest.mark.timeout(240),
]

@pytest.fixture(scope="module", autouse=True)
def _relay_settled():
    """After the module (and its private Redis) is gone: let the relay thread finish what it was
    publishing, then forget the producers it may have built for that Redis."""
    yield
    from kombu import pools

    from tests.celery_app import app

    relay.wait_idle(30)
    _reset_producers(app)
    pools.reset()  # kombu's global pools: the eager tests after this module must not meet a closed one


BOUND = 0.5  # seconds: the most a webhook request may take, whatever the broker does


def _deliveries(user, n):
    processor, method = vaulted(user)
    out = []
    for i in range(n):
        out.append(noc_delivery(processor, method, exp=(1 + i % 12, 2040 + i)))
    return out


def _all_processed(n):
    def check():
        statuses = list(WebhookEvent.objects.values_list("status", flat=True))
        _all_processed.last = statuses
        return statuses.count(WebhookEvent.PROCESSED) == n
    return check


def test_worker_killed_mid_chunk_chunk_recovered(celery_live, user, settings):  # noqa: F811
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "NOC_CHUNK_SIZE": 1}
    customer = services.get_or_create_customer(user, "stalling")
    from vault_wallets.processors import get_processor

    processor = get_processor("stalling")
    methods = [services.add_payment_method(customer, processor.tokenize_card(n, 12, 2034))[0]
               for n in ("4242424242424242", "5555555555554444")]
    ids = [m.processor_ref.method_id for m in methods]
    for mid in ids:
        processor.network_update(mid, exp_month=5, exp_year=2037)
    headers, body = processor.make_webhook("provider.noc", {"payment_method_ids": ids})
    # The worker's settings do not see this test's NOC_CHUNK_SIZE: process the event here, chunks there.
    from vault_wallets import tasks

    real = tasks.enqueue_event
    tasks.enqueue_event = lambda pk: False
    try:
        assert post("stalling", headers, body).status_code == 200
    finally:
        tasks.enqueue_event = real
    event = WebhookEvent.objects.get()
    celery_live.stall_file.write_text("stall")
    assert events.process_event(event.pk) == "processing"
    assert NocChunk.objects.count() == 2
    started = Path(str(celery_live.stall_file) + ".started")
    wait_for(started.exists, 30, what="the worker to start a chunk")
    celery_live.kill()
    celery_live.stall_file.unlink()
    relay.wait_idle(10)
    event.refresh_from_db()
    assert event.status == "processing"  # not "processed" with work undone
    celery_live.start()
    events.sweep(now=timezone.now() + timedelta(seconds=11))
    wait_for(_all_processed(1), 60, what="the event processed once its chunks are")
    assert SavedPaymentMethod.objects.filter(exp_year=2037).count() == 2
    assert set(NocChunk.objects.values_list("status", flat=True)) == {"done"}
