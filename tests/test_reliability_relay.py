"""The relay's batches and the batch task (issue #11: webhook ingest without one broker message
per event), and the event row's hand-compiled INSERT.

* Events handed to the relay together are published in one call; a publisher that fails is
  logged, counts nothing as published, and does not stop the relay.
* ``process_webhook_events`` processes every event it names: one to retry gets its own delayed
  message, one that fails unexpectedly does not stop the others.
* ``store_delivery`` stores what ``save()`` would: every default, the digest, the time, the
  body and headers encrypted.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from vault_wallets import services, tasks
from vault_wallets.models import WebhookEvent
from vault_wallets.processors import base as p
from vault_wallets.relay import Relay
from vault_wallets.services import events


@pytest.fixture
def linger(settings):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "RELAY_BATCH_SECONDS": 0.3}


def test_hand_offs_waiting_together_are_published_in_one_call(linger):
    relay, calls, lock = Relay(), [], threading.Lock()

    def publish_many(items):
        with lock:
            calls.append(("many", list(items)))

    def other_many(items):
        calls.append(("other", list(items)))

    for pk in range(5):
        assert relay.submit_batched(publish_many, pk, f"event {pk}")
    assert relay.submit_batched(other_many, 99, "other")
    assert relay.submit(lambda: calls.append(("single", None)), "single")
    assert relay.wait_idle(10)
    assert sorted(calls, key=str) == [("many", [0, 1, 2, 3, 4]), ("other", [99]), ("single", None)]
    assert relay.published == 7


def test_a_failing_batch_is_logged_and_the_relay_goes_on(linger, caplog):
    relay, published = Relay(), []

    def broken(items):
        raise ConnectionError("broker down")

    for pk in range(3):
        relay.submit_batched(broken, pk, f"event {pk}")
    with caplog.at_level(logging.WARNING, logger="vault_wallets.relay"):
        assert relay.wait_idle(10)
    assert "3 hand-offs" in caplog.text and "ConnectionError" in caplog.text
    assert relay.published == 0
    relay.submit_batched(published.extend, 7, "event 7")
    assert relay.wait_idle(10)
    assert published == [7] and relay.published == 1


def test_a_batch_of_one_or_many_events_is_one_message(monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.process_webhook_event, "apply_async", lambda **kw: sent.append(("one", kw["args"])))
    monkeypatch.setattr(tasks.process_webhook_events, "apply_async", lambda **kw: sent.append(("many", kw["args"])))
    tasks._publish_events([4])
    tasks._publish_events([5, 6, 7])
    assert sent == [("one", (4,)), ("many", ([5, 6, 7],))]


def _stored(sandbox, data):
    headers, body = sandbox.make_webhook("provider.noc", data)
    request = p.WebhookRequest(headers=headers, body=body, remote_addr="203.0.113.9")
    return events.store_delivery("default", sandbox, request, *sandbox.webhook_event_id(request))[0]


@pytest.mark.django_db
def test_the_batch_task_processes_each_event_and_retries_only_the_one_that_must(customer, card_token, sandbox,
                                                                                 monkeypatch, caplog):
    monkeypatch.setattr(tasks, "enqueue_event", lambda pk: False)
    method, _ = services.add_payment_method(customer, card_token())
    ids = {"payment_method_ids": [method.processor_ref.method_id]}
    first, retried, broken, last = (_stored(sandbox, ids) for _ in range(4))
    real = events.process_event
    retries = []

    def process(pk, **kwargs):
        if pk == retried.pk:
            raise events.RetryLater(30, "processor down")
        if pk == broken.pk:
            raise RuntimeError("database hiccup")
        return real(pk, **kwargs)

    monkeypatch.setattr(events, "process_event", process)
    monkeypatch.setattr(tasks, "_publish", lambda task, args, countdown=None: retries.append((task.name, args,
                                                                                              countdown)))
    with caplog.at_level(logging.ERROR, logger="vault_wallets.tasks"):
        assert tasks.process_webhook_events.run([first.pk, retried.pk, broken.pk, last.pk]) == 2
    assert retries == [("vault_wallets.tasks.process_webhook_event", (retried.pk,), 30)]
    assert f"webhook event {broken.pk} failed" in caplog.text
    statuses = dict(WebhookEvent.objects.values_list("pk", "status"))
    assert statuses[first.pk] == statuses[last.pk] == WebhookEvent.PROCESSED
    assert statuses[broken.pk] == WebhookEvent.RECEIVED  # still due for the sweeper


@pytest.mark.django_db
def test_the_stored_row_is_what_save_would_store(sandbox, monkeypatch):
    monkeypatch.setattr(tasks, "enqueue_event", lambda pk: False)
    before = timezone.now()
    event = _stored(sandbox, {"payment_method_ids": ["sbxpm_x"]})
    row = WebhookEvent.objects.get(pk=event.pk)
    assert row.uid == event.uid and row.uid.startswith("evt_")
    assert row.event_id_hash == WebhookEvent.hash_event_id(row.event_id) and row.event_id == event.event_id
    assert before <= row.received_at <= timezone.now()
    assert row.next_attempt_at > row.received_at + timedelta(seconds=5)
    assert (row.status, row.attempts, row.notes, row.last_error, row.processed_at) == ("received", 0, [], "", None)
    assert row.remote_addr == "203.0.113.9" and row.processor == "sandbox" and row.event_type == "provider.noc"
    assert "sbxpm_x" in row.body
    assert "webhook-id" in row.headers and not any("signature" in name for name in row.headers)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT body, headers FROM {WebhookEvent._meta.db_table} WHERE id = %s",  # noqa: S608
                       [event.pk])
        raw_body, raw_headers = (bytes(v) if not isinstance(v, str) else v.encode() for v in cursor.fetchone())
    assert b"sbxpm_x" not in raw_body and raw_body.startswith(b"gAAAAA")  # a Fernet token
    assert raw_headers.startswith(b"gAAAAA")
    assert not event._state.adding
    # A duplicate is stored once and answers the first row.
    request = p.WebhookRequest(headers={}, body=row.body.encode())
    again, created = events.store_delivery("default", sandbox, request, row.event_id, row.event_type)
    assert (again.pk, created) == (event.pk, False)
