"""Two chunks of one NOC are claimed at once (PostgreSQL row locks).

``NocChunk`` is ordered through its event; a ``SELECT … FOR UPDATE SKIP LOCKED`` of one chunk then
joined and locked the event row too, so while one worker refreshed chunk 1 every other chunk of
the same event answered "busy" and waited for the sweeper (found by ``make bench-smoke``: 100 of
300 methods refreshed, the other chunks "busy").
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from django.db import connection, connections, transaction

from vault_wallets.models import NocChunk, WebhookEvent
from vault_wallets.services import events

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (set DATABASE_URL)"),
]


@contextmanager
def chunk_held_elsewhere(pk: int):
    """Chunk ``pk``'s row lock held by another connection (another worker) while the block runs."""
    held, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                events._lock(NocChunk.objects.filter(pk=pk)).first()
                held.set()
                release.wait(10)
        finally:
            connections.close_all()

    worker = threading.Thread(target=hold)
    worker.start()
    try:
        assert held.wait(10)
        yield
    finally:
        release.set()
        worker.join(10)


def test_a_chunk_is_claimed_while_another_chunk_of_the_same_event_is_held():
    event = WebhookEvent.objects.create(account="default", processor="sandbox", event_id="evt_chunks",
                                        event_type="payment_method.updated", body="{}",
                                        status=WebhookEvent.PROCESSING)
    first = NocChunk.objects.create(event=event, index=0, method_pks=[])
    second = NocChunk.objects.create(event=event, index=1, method_pks=[])
    with chunk_held_elsewhere(first.pk):
        assert events.process_chunk(second.pk) == NocChunk.DONE
        assert events.process_chunk(first.pk) == "busy"  # the held one is skipped, not waited for
    assert events.process_chunk(first.pk) == NocChunk.DONE
    event.refresh_from_db()
    assert event.status == WebhookEvent.PROCESSED
