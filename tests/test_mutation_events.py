"""Event processing pinned where mutation testing of ``services/events.py`` found it loose (issue 13).

Every scoped query runs with two events / two chunks / two accounts present, so a dropped scope
picks the wrong row; limits (attempts, stale and grace seconds, chunk sizes, header counts and
lengths) are tested on both sides; processed events are left alone unless forced.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.db.models.signals import post_save
from django.utils import timezone

from vault_wallets import services, signals, tasks
from vault_wallets.models import Customer, NocChunk, PaymentMethodChange, SavedPaymentMethod, WebhookEvent
from vault_wallets.processors import base as p
from vault_wallets.processors import get_processor
from vault_wallets.processors.sandbox import SandboxProcessor
from vault_wallets.services import events

pytestmark = pytest.mark.django_db(transaction=True)  # on_commit runs as in production

CARDS = ("4242424242424242", "5555555555554444", "378282246310005", "6011111111111117", "4000000000000002")


def _setting(settings, **values):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, **values}


@pytest.fixture
def enqueued(monkeypatch):
    """The broker is down: nothing is processed behind the test's back; what was enqueued is listed."""
    sent = {"events": [], "chunks": []}
    monkeypatch.setattr(tasks, "enqueue_event", lambda pk: sent["events"].append(pk) or False)
    monkeypatch.setattr(tasks, "enqueue_noc_chunk", lambda pk: sent["chunks"].append(pk) or False)
    return sent


@pytest.fixture
def methods(customer, card_token):
    return [services.add_payment_method(customer, card_token(number))[0] for number in CARDS[:2]]


def _store(sandbox, kind="provider.noc", data=None, event_id="", account="default"):
    processor = get_processor(account)
    headers, body = processor.make_webhook(kind, data or {}, event_id=event_id)
    request = p.WebhookRequest(headers=headers, body=body, remote_addr="127.0.0.1")
    event_id, event_type = processor.webhook_event_id(request)
    return events.store_delivery(account, processor, request, event_id, event_type)[0]


def _noc(sandbox, *methods, event_id=""):
    return _store(sandbox, data={"payment_method_ids": [m.processor_ref.method_id for m in methods]},
                  event_id=event_id)


def _event(status=WebhookEvent.RECEIVED, attempts=0, next_attempt_at=None, event_id=None):
    return WebhookEvent.objects.create(account="default", processor="sandbox",
                                       event_id=event_id or f"evt_{random.random()}", event_type="provider.noc",
                                       body="{}", status=status, attempts=attempts, next_attempt_at=next_attempt_at)


# -- backoff ------------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt, ceiling", [(0, 10), (1, 10), (2, 20), (3, 40), (4, 80), (5, 80), (9, 80)])
def test_backoff_is_between_half_and_all_of_the_capped_exponential(settings, monkeypatch, attempt, ceiling):
    _setting(settings, WEBHOOK_RETRY_BACKOFF_SECONDS=10, WEBHOOK_RETRY_BACKOFF_MAX_SECONDS=80)
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    assert events.backoff_seconds(attempt) == ceiling / 2
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    assert events.backoff_seconds(attempt) == ceiling


# -- receiving ----------------------------------------------------------------------------------


class _Processor:
    webhook_secret_headers = ("X-Shop-Proof",)


def test_headers_lose_every_secret_and_keep_the_rest_lowercased():
    secret = {"Webhook-Signature": "s", "X-Secret": "s", "X-Token": "s", "Authorization": "s", "Cookie": "s",
              "X-Hmac": "s", "X-Api-Key": "s", "X-Apikey": "s", "x-shop-PROOF": "s"}
    kept = events.sanitize_headers({**secret, "Content-Type": "application/json", "X-Request-Id": "r1"},
                                   _Processor())
    assert kept == {"content-type": "application/json", "x-request-id": "r1"}


def test_header_values_and_count_are_bounded_on_both_sides():
    kept = events.sanitize_headers({"X-At": "a" * 500, "X-Over": "b" * 501}, _Processor())
    assert kept == {"x-at": "a" * 500, "x-over": "b" * 500}
    forty = {f"X-H{i:02d}": str(i) for i in range(40)}
    assert events.sanitize_headers(forty, _Processor()) == {k.lower(): v for k, v in forty.items()}
    kept = events.sanitize_headers({**forty, "X-H40": "40"}, _Processor())
    assert len(kept) == 40 and "x-h40" not in kept


def test_a_delivery_is_stored_whole_and_enqueued_after_commit(sandbox, enqueued, settings):
    _setting(settings, WEBHOOK_RELAY_GRACE_SECONDS=30)
    processor = get_processor("default")
    headers, body = processor.make_webhook("provider.noc", {}, event_id="evt_whole")
    request = p.WebhookRequest(headers=headers, body=body, remote_addr="")
    before = timezone.now()
    with transaction.atomic():
        event, created = events.store_delivery("default", processor, request, "evt_whole", "t" * 129)
        assert created and enqueued["events"] == []
    after = timezone.now()
    assert enqueued["events"] == [event.pk]
    event.refresh_from_db()
    assert event.event_type == "t" * 128 and event.remote_addr is None and event.body == body.decode()
    assert (event.account, event.processor, event.event_id) == ("default", "sandbox", "evt_whole")
    assert event.status == WebhookEvent.RECEIVED and event.attempts == 0
    assert before + timedelta(seconds=30) <= event.next_attempt_at <= after + timedelta(seconds=30)
    assert "webhook-signature" not in event.headers and event.headers["content-type"] == "application/json"
    request = p.WebhookRequest(headers=headers, body=body, remote_addr="10.1.2.3")
    second, created = events.store_delivery("default", processor, request, "evt_whole2", "t" * 128)
    assert created and WebhookEvent.objects.get(pk=second.pk).remote_addr == "10.1.2.3"
    assert WebhookEvent.objects.get(pk=second.pk).event_type == "t" * 128


def test_a_duplicate_answers_its_own_accounts_event(sandbox, enqueued):
    ours = _store(sandbox, event_id="evt_same", account="default")
    theirs = _store(sandbox, event_id="evt_same", account="eu")
    assert ours.pk != theirs.pk and enqueued["events"] == [ours.pk, theirs.pk]
    for account, stored in (("default", ours), ("eu", theirs)):
        processor = get_processor(account)
        headers, body = processor.make_webhook("provider.noc", {}, event_id="evt_same")
        again, created = events.store_delivery(account, processor, p.WebhookRequest(headers=headers, body=body),
                                               "evt_same", "provider.noc")
        assert not created and again.pk == stored.pk
    assert enqueued["events"] == [ours.pk, theirs.pk]


# -- processing: claims, force, failures --------------------------------------------------------


def test_processing_marks_the_event_before_handling_it(methods, sandbox, enqueued, monkeypatch):
    event = _noc(sandbox, methods[0])
    other = _noc(sandbox, methods[1])
    seen = []
    real = type(sandbox).fetch_payment_method

    def fetch(self, customer, method):
        row = WebhookEvent.objects.get(pk=event.pk)
        seen.append((row.status, row.attempts))
        return real(self, customer, method)

    monkeypatch.setattr(type(sandbox), "fetch_payment_method", fetch)
    assert events.process_event(event.pk) == WebhookEvent.PROCESSED
    assert seen == [(WebhookEvent.PROCESSING, 1)]
    other.refresh_from_db()
    assert (other.status, other.attempts) == (WebhookEvent.RECEIVED, 0)


def test_an_unknown_event_is_busy():
    assert events.process_event(987654) == "busy"


def test_an_ignored_event_is_processed_again_only_when_forced(sandbox, enqueued):
    event = _store(sandbox, kind="something.else")
    assert events.process_event(event.pk) == WebhookEvent.IGNORED
    assert events.process_event(event.pk) == WebhookEvent.IGNORED
    event.refresh_from_db()
    assert event.attempts == 1
    assert events.process_event(event.pk, force=True) == WebhookEvent.IGNORED
    event.refresh_from_db()
    assert event.attempts == 2
    assert event.notes == ["something.else: not a type vault_wallets acts on"]


def test_a_failed_event_is_processed_again_and_its_error_cleared(methods, sandbox, enqueued, settings):
    _setting(settings, WEBHOOK_MAX_ATTEMPTS=3)
    sandbox = get_processor("default")
    event = _noc(sandbox, methods[0])
    sandbox.faults.fail_next(1)
    with pytest.raises(events.RetryLater):
        events.process_event(event.pk)
    event.refresh_from_db()
    assert event.status == WebhookEvent.RECEIVED and event.last_error and event.last_traceback
    event.status = WebhookEvent.FAILED
    event.save()
    assert events.process_event(event.pk) == WebhookEvent.PROCESSED
    event.refresh_from_db()
    assert (event.attempts, event.last_error, event.last_traceback, event.next_attempt_at) == (2, "", "", None)
    assert event.processed_at is not None and event.notes == []


def test_transient_failures_retry_until_the_last_attempt(methods, sandbox, enqueued, settings, monkeypatch):
    _setting(settings, WEBHOOK_MAX_ATTEMPTS=2, WEBHOOK_STALE_SECONDS=100, WEBHOOK_RETRY_BACKOFF_SECONDS=10,
             WEBHOOK_RETRY_BACKOFF_MAX_SECONDS=10)
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    failed = []
    receiver = lambda sender, webhook_event, error, **kw: failed.append((webhook_event.pk, error))  # noqa: E731
    signals.webhook_processing_failed.connect(receiver, sender=WebhookEvent)
    try:
        sandbox = get_processor("default")
        event = _noc(sandbox, methods[0])
        other = _noc(sandbox, methods[1])
        sandbox.faults.fail_next(2)
        before = timezone.now()
        with pytest.raises(events.RetryLater) as caught:
            events.process_event(event.pk)
        assert caught.value.countdown == 10 and failed == []
        assert str(caught.value) == WebhookEvent.objects.get(pk=event.pk).last_error.split(": ", 1)[1]
        event.refresh_from_db()
        assert (event.status, event.attempts) == (WebhookEvent.RECEIVED, 1)
        assert event.last_error.startswith("ProcessorUnavailable: ")
        assert event.last_traceback.startswith("Traceback (most recent call last):\n  File ")
        assert before + timedelta(seconds=110) <= event.next_attempt_at <= timezone.now() + timedelta(seconds=110)
        assert events.process_event(event.pk) == WebhookEvent.FAILED  # the last attempt: no retry
        event.refresh_from_db()
        assert (event.status, event.attempts, event.next_attempt_at) == (WebhookEvent.FAILED, 2, None)
        assert failed == [(event.pk, event.last_error)]
        other.refresh_from_db()
        assert (other.status, other.attempts) == (WebhookEvent.RECEIVED, 0)
    finally:
        signals.webhook_processing_failed.disconnect(receiver)


def test_a_bug_fails_the_event_at_once_with_a_bounded_error(methods, sandbox, enqueued, settings, monkeypatch,
                                                            caplog):
    _setting(settings, WEBHOOK_MAX_ATTEMPTS=5, WEBHOOK_STALE_SECONDS=100, WEBHOOK_RETRY_BACKOFF_SECONDS=10,
             WEBHOOK_RETRY_BACKOFF_MAX_SECONDS=10)
    monkeypatch.setattr(random, "uniform", lambda low, high: high)

    def boom(*args, **kwargs):
        raise RuntimeError("x" * 12000)

    monkeypatch.setattr(events, "refresh_payment_method", boom)
    failed = []
    receiver = lambda sender, webhook_event, error, **kw: failed.append(webhook_event.pk)  # noqa: E731
    signals.webhook_processing_failed.connect(receiver)
    try:
        event = _noc(sandbox, methods[0])
        before = timezone.now()
        assert events.process_event(event.pk) == WebhookEvent.FAILED  # no RetryLater: the sweeper retries
    finally:
        signals.webhook_processing_failed.disconnect(receiver)
    event.refresh_from_db()
    assert event.status == WebhookEvent.FAILED and failed == [event.pk]
    assert event.last_error == ("RuntimeError: " + "x" * 12000)[:2000]
    assert len(event.last_traceback) == 10000 and event.last_traceback.endswith("x" * 9000 + "\n")
    assert before + timedelta(seconds=110) <= event.next_attempt_at <= timezone.now() + timedelta(seconds=110)
    warnings = [r.getMessage() for r in caplog.records if r.name == "vault_wallets.events"]
    assert warnings == [f"webhook event {event.uid} (provider.noc) attempt 1 failed: {event.last_error}"]


def test_an_error_with_a_message_is_recorded_by_its_message(methods, sandbox, enqueued, monkeypatch):
    from django.core.exceptions import ValidationError

    def invalid(*args, **kwargs):
        raise ValidationError("bad expiry")  # str() of it is "['bad expiry']"

    monkeypatch.setattr(events, "refresh_payment_method", invalid)
    event = _noc(sandbox, methods[0])
    assert events.process_event(event.pk) == WebhookEvent.FAILED
    assert WebhookEvent.objects.get(pk=event.pk).last_error == "ValidationError: bad expiry"


def test_an_unauthenticated_event_is_ignored_with_the_reason(sandbox, enqueued, monkeypatch):
    event = _store(sandbox)

    def refuse(self, request):
        raise p.WebhookVerificationError("unknown to the processor")

    monkeypatch.setattr(type(sandbox), "parse_webhook", refuse)
    assert events.process_event(event.pk) == WebhookEvent.IGNORED
    event.refresh_from_db()
    assert event.notes == ["not authenticated: unknown to the processor"]


def test_a_charge_event_without_a_local_charge_is_noted_and_signalled(sandbox, enqueued):
    received = []
    receiver = lambda sender, event, **kw: received.append(event)  # noqa: E731
    signals.vault_event.connect(receiver)
    try:
        event = _store(sandbox, kind="charge.succeeded", data={"charge_id": "ch_nowhere"})
        assert events.process_event(event.pk) == WebhookEvent.PROCESSED
    finally:
        signals.vault_event.disconnect(receiver)
    event.refresh_from_db()
    assert event.notes == [f"{p.EVENT_CHARGE_SUCCEEDED}: no local charge for this processor reference"]
    assert len(received) == 1 and received[0].type == p.EVENT_CHARGE_SUCCEEDED and received[0].charge is None
    assert received[0].webhook_event.pk == event.pk and received[0].account == "default"


def test_the_event_signal_is_sent_by_webhook_event(sandbox, enqueued):
    """A receiver connected for ``sender=WebhookEvent`` (as the signals docs show) hears the
    event (``_after_commit`` 3)."""
    received = []
    receiver = lambda sender, event, **kw: received.append(sender)  # noqa: E731
    signals.vault_event.connect(receiver, sender=WebhookEvent)
    try:
        event = _store(sandbox, kind="other.kind")
        assert events.process_event(event.pk) == WebhookEvent.IGNORED
    finally:
        signals.vault_event.disconnect(receiver, sender=WebhookEvent)
    assert received == [WebhookEvent]


def test_an_expiry_with_only_a_year_or_only_a_month_is_not_taken_as_expired():
    """A processor answering half an expiry (a year without a month) says nothing about
    expiry: the method stays active (``_status_from`` 2)."""
    assert events._status_from(p.VaultedMethod(token="t", exp_year=2001)) == p.METHOD_ACTIVE
    assert events._status_from(p.VaultedMethod(token="t", exp_month=1)) == p.METHOD_ACTIVE
    assert events._status_from(p.VaultedMethod(token="t", exp_year=2001, exp_month=1)) == p.METHOD_EXPIRED


class RenamedSandbox(SandboxProcessor):
    """Another processor (by name) for a second account: events are parsed by their own account's."""

    name = "renamed_sandbox"


def test_an_event_is_handled_by_its_own_accounts_processor(sandbox, enqueued, settings):
    """Each account's deliveries are parsed and reported by that account's processor, not the
    default account's (``_handle`` 2)."""
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "ACCOUNTS": {
        **settings.VAULT_WALLETS["ACCOUNTS"],
        "renamed": {"PROCESSOR": "tests.test_mutation_events.RenamedSandbox",
                    "OPTIONS": {"WEBHOOK_SECRETS": ["whsec_cmVuYW1lZC1hY2NvdW50LXNlY3JldA=="]}}}}
    received = []
    receiver = lambda sender, event, **kw: received.append(event)  # noqa: E731
    signals.vault_event.connect(receiver)
    try:
        event = _store(sandbox, kind="other.kind", account="renamed")
        assert events.process_event(event.pk) == WebhookEvent.IGNORED
    finally:
        signals.vault_event.disconnect(receiver)
    assert [(v.account, v.processor) for v in received] == [("renamed", "renamed_sandbox")]


def test_an_unknown_event_is_signalled_and_ignored(sandbox, enqueued):
    received = []
    receiver = lambda sender, event, **kw: received.append(event)  # noqa: E731
    signals.vault_event.connect(receiver)
    try:
        event = _store(sandbox, kind="other.kind")
        assert events.process_event(event.pk) == WebhookEvent.IGNORED
    finally:
        signals.vault_event.disconnect(receiver)
    assert [(v.type, v.processor, v.payment_methods, v.charge) for v in received] == [
        (p.EVENT_UNKNOWN, "sandbox", (), None)]


# -- what is due, what is waiting, the sweeper --------------------------------------------------


def test_due_and_waiting_events_at_their_limits(settings):
    _setting(settings, WEBHOOK_MAX_ATTEMPTS=3)
    now = timezone.now()
    micro = timedelta(microseconds=1)
    due = {
        "received_at_due_time": _event(next_attempt_at=now),
        "processing_past": _event(WebhookEvent.PROCESSING, next_attempt_at=now - micro),
        "received_never_scheduled": _event(),
        "failed_below_limit": _event(WebhookEvent.FAILED, attempts=2, next_attempt_at=now),
    }
    waiting_not_due = {
        "received_later": _event(next_attempt_at=now + micro),
        "failed_below_limit_later": _event(WebhookEvent.FAILED, attempts=2, next_attempt_at=now + micro),
    }
    neither = {
        "failed_at_limit": _event(WebhookEvent.FAILED, attempts=3, next_attempt_at=now),
        "processed": _event(WebhookEvent.PROCESSED, next_attempt_at=now),
        "ignored": _event(WebhookEvent.IGNORED),
    }
    chunked = _event(WebhookEvent.PROCESSING, next_attempt_at=now - micro)
    NocChunk.objects.create(event=chunked, index=0, method_pks=[])
    assert set(events.due_events(now)) == set(due.values())
    assert set(events.waiting_events()) == set(due.values()) | set(waiting_not_due.values())
    assert neither and chunked not in set(events.waiting_events())
    later = timezone.now() + timedelta(hours=1)
    assert set(events.due_events()) <= set(events.due_events(later))
    assert set(events.due_events(later)) == set(due.values()) | set(waiting_not_due.values())


def test_due_chunks_at_their_limits():
    event = _event(WebhookEvent.PROCESSING)
    now = timezone.now()
    micro = timedelta(microseconds=1)
    at_time = NocChunk.objects.create(event=event, index=0, next_attempt_at=now)
    unscheduled = NocChunk.objects.create(event=event, index=1)
    NocChunk.objects.create(event=event, index=2, next_attempt_at=now + micro)
    NocChunk.objects.create(event=event, index=3, status=NocChunk.DONE, next_attempt_at=now)
    NocChunk.objects.create(event=event, index=4, status=NocChunk.FAILED)
    assert set(events.due_chunks(now)) == {at_time, unscheduled}
    assert set(events.due_chunks(now + micro)) == {at_time, unscheduled, NocChunk.objects.get(index=2)}


def test_the_sweeper_leases_what_it_enqueues_up_to_its_limit(settings, enqueued):
    _setting(settings, WEBHOOK_STALE_SECONDS=120)
    now = timezone.now()
    first, second, third = (_event(next_attempt_at=now) for _ in range(3))
    not_due = _event(next_attempt_at=now + timedelta(seconds=5))
    holder = _event(WebhookEvent.PROCESSING)
    chunks = [NocChunk.objects.create(event=holder, index=i, next_attempt_at=now) for i in range(3)]
    done = NocChunk.objects.create(event=holder, index=3, status=NocChunk.DONE, next_attempt_at=now)
    assert events.sweep(now=now, limit=2) == [first.pk, second.pk]
    assert enqueued == {"events": [first.pk, second.pk], "chunks": [chunks[0].pk, chunks[1].pk]}
    lease = now + timedelta(seconds=120)
    assert [WebhookEvent.objects.get(pk=e.pk).next_attempt_at for e in (first, second, third, not_due)] == [
        lease, lease, now, not_due.next_attempt_at]
    assert [NocChunk.objects.get(pk=c.pk).next_attempt_at for c in (*chunks, done)] == [lease, lease, now, now]
    # Leased: not again until the lease runs out; then the rest, and the leased ones again.
    assert events.sweep(now=now, limit=2) == [third.pk]
    assert enqueued["chunks"][2:] == [chunks[2].pk]
    assert events.sweep(now=lease, limit=10) == [first.pk, second.pk, third.pk, not_due.pk]


def test_the_sweeper_takes_500_events_and_500_chunks_at_a_time(enqueued):
    now = timezone.now()
    rows = [WebhookEvent(account="default", processor="sandbox", event_id=f"evt_bulk_{i}", body="{}",
                         event_id_hash=WebhookEvent.hash_event_id(f"evt_bulk_{i}"), next_attempt_at=now)
            for i in range(501)]
    WebhookEvent.objects.bulk_create(rows)
    holder = _event(WebhookEvent.PROCESSING)
    NocChunk.objects.bulk_create(NocChunk(event=holder, index=i, next_attempt_at=now) for i in range(501))
    pks = sorted(WebhookEvent.objects.filter(event_id__startswith="evt_bulk_").values_list("pk", flat=True))
    assert events.sweep(now=now) == pks[:500]
    assert enqueued["chunks"] == sorted(NocChunk.objects.values_list("pk", flat=True))[:500]


def test_the_sweeper_with_nothing_due_changes_nothing(enqueued):
    later = timezone.now() + timedelta(hours=1)
    event = _event(next_attempt_at=later)
    assert events.sweep() == [] and enqueued == {"events": [], "chunks": []}
    assert WebhookEvent.objects.get(pk=event.pk).next_attempt_at == later


# -- large notifications: chunks ---------------------------------------------------------------


def _many(customer, card_token, sandbox, n, exp_year=2039):
    made = [services.add_payment_method(customer, card_token(number))[0] for number in CARDS[:n]]
    for m in made:
        sandbox.network_update(m.processor_ref.method_id, exp_month=3, exp_year=exp_year)
    return made


def test_exactly_a_chunk_is_refreshed_at_once_and_one_more_is_chunked(customer, card_token, sandbox, settings,
                                                                      enqueued):
    _setting(settings, NOC_CHUNK_SIZE=3, WEBHOOK_RELAY_GRACE_SECONDS=20)
    made = _many(customer, card_token, sandbox, 4)
    at_size = _noc(sandbox, *made[:3])
    assert events.process_event(at_size.pk) == WebhookEvent.PROCESSED
    assert not NocChunk.objects.exists() and SavedPaymentMethod.objects.filter(exp_year=2039).count() == 3
    over = _noc(sandbox, *made)
    before = timezone.now()
    assert events.process_event(over.pk) == WebhookEvent.PROCESSING
    chunks = list(NocChunk.objects.filter(event=over).order_by("index"))
    pks = sorted(m.pk for m in made)
    assert [(c.index, len(c.method_pks), c.status) for c in chunks] == [(0, 3, NocChunk.PENDING),
                                                                        (1, 1, NocChunk.PENDING)]
    assert sorted(chunks[0].method_pks + chunks[1].method_pks) == pks
    assert all(before + timedelta(seconds=20) <= c.next_attempt_at <= timezone.now() + timedelta(seconds=20)
               for c in chunks)
    assert enqueued["chunks"] == [c.pk for c in chunks]
    over.refresh_from_db()
    assert over.notes == ["4 payment methods refreshed in 2 chunked task(s)"] and over.processed_at is None
    # Its work is in its chunks: processing it again does nothing, unless forced (chunks made anew).
    assert events.process_event(over.pk) == WebhookEvent.PROCESSING
    assert list(NocChunk.objects.filter(event=over)) == chunks and WebhookEvent.objects.get(pk=over.pk).attempts == 1
    assert events.process_event(over.pk, force=True) == WebhookEvent.PROCESSING
    again = list(NocChunk.objects.filter(event=over))
    assert len(again) == 2 and not {c.pk for c in again} & {c.pk for c in chunks}
    assert WebhookEvent.objects.get(pk=over.pk).attempts == 2
    assert NocChunk.objects.filter(event=at_size).count() == 0


def test_chunks_finish_their_own_event_only(customer, card_token, sandbox, settings, enqueued):
    _setting(settings, NOC_CHUNK_SIZE=1)
    made = _many(customer, card_token, sandbox, 4)
    first, second = _noc(sandbox, *made[:2]), _noc(sandbox, *made[2:])
    for event in (first, second):
        assert events.process_event(event.pk) == WebhookEvent.PROCESSING
    a, b = NocChunk.objects.filter(event=first).order_by("index")
    c, d = NocChunk.objects.filter(event=second).order_by("index")
    assert events.process_chunk(a.pk) == NocChunk.DONE
    assert events.process_chunk(c.pk) == NocChunk.DONE
    assert events.process_chunk(d.pk) == NocChunk.DONE  # second's last chunk
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.processed_at) == (WebhookEvent.PROCESSING, None)
    assert second.status == WebhookEvent.PROCESSED and second.processed_at is not None
    a.refresh_from_db()
    assert (a.attempts, a.status, a.next_attempt_at, a.last_error) == (1, NocChunk.DONE, None, "")
    assert a.finished_at is not None and a.changed == 1
    assert events.process_chunk(b.pk) == NocChunk.DONE
    first.refresh_from_db()
    assert first.status == WebhookEvent.PROCESSED
    assert SavedPaymentMethod.objects.filter(exp_year=2039).count() == 4
    changes = PaymentMethodChange.objects.filter(source_event=first)
    assert sorted(changes.values_list("payment_method_id", flat=True)) == sorted(m.pk for m in made[:2])
    assert set(changes.values_list("source", flat=True)) == {"provider.noc"}  # the chunk's event's type


def test_a_chunk_retries_then_fails_its_event_at_the_attempt_limit(customer, card_token, sandbox, settings,
                                                                   enqueued, monkeypatch):
    _setting(settings, NOC_CHUNK_SIZE=1, WEBHOOK_MAX_ATTEMPTS=2, WEBHOOK_STALE_SECONDS=100,
             WEBHOOK_RETRY_BACKOFF_SECONDS=10, WEBHOOK_RETRY_BACKOFF_MAX_SECONDS=10)
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    sandbox = get_processor("default")
    made = _many(customer, card_token, sandbox, 2)
    event = _noc(sandbox, *made)
    assert events.process_event(event.pk) == WebhookEvent.PROCESSING
    ok, bad = NocChunk.objects.filter(event=event).order_by("index")
    assert events.process_chunk(ok.pk) == NocChunk.DONE
    def down(self, customer, method):
        raise p.ProcessorUnavailable("y" * 3000, processor="sandbox")

    monkeypatch.setattr(type(sandbox), "fetch_payment_method", down)
    before = timezone.now()
    with pytest.raises(events.RetryLater) as caught:
        events.process_chunk(bad.pk)
    assert caught.value.countdown == 10 and str(caught.value) == "y" * 3000
    bad.refresh_from_db()
    assert (bad.status, bad.attempts) == (NocChunk.PENDING, 1)
    assert bad.last_error == ("ProcessorUnavailable: " + "y" * 3000)[:2000]
    assert before + timedelta(seconds=110) <= bad.next_attempt_at <= timezone.now() + timedelta(seconds=110)
    assert WebhookEvent.objects.get(pk=event.pk).status == WebhookEvent.PROCESSING
    assert events.process_chunk(bad.pk) == NocChunk.FAILED  # the last attempt: no retry
    bad.refresh_from_db()
    assert (bad.status, bad.attempts, bad.next_attempt_at) == (NocChunk.FAILED, 2, None)
    event.refresh_from_db()
    assert event.status == WebhookEvent.FAILED and event.last_error == "1 chunk(s) of this event could not be refreshed"
    assert event.processed_at is None
    assert events.process_chunk(bad.pk) == NocChunk.FAILED and NocChunk.objects.get(pk=bad.pk).attempts == 2


def test_an_unknown_chunk_is_busy():
    assert events.process_chunk(987654) == "busy"


def test_refresh_chunk_refreshes_only_its_methods_under_its_event(customer, card_token, sandbox, settings):
    made = _many(customer, card_token, sandbox, 3)
    event = _event()
    event.event_type = "custom.type"
    event.save()
    assert events.refresh_chunk(event.pk, [made[0].pk, made[2].pk]) == 2
    assert sorted(SavedPaymentMethod.objects.filter(exp_year=2039).values_list("pk", flat=True)) == sorted(
        [made[0].pk, made[2].pk])
    assert set(PaymentMethodChange.objects.values_list("source", "source_event")) == {("custom.type", event.pk)}
    assert events.refresh_chunk(None, [made[1].pk]) == 1
    change = PaymentMethodChange.objects.get(payment_method=made[1])
    assert (change.source, change.source_event) == ("manual refresh", None)


# -- method events: which methods, in which account --------------------------------------------


def _listen(signal):
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    signal.connect(receiver, weak=False)
    return received, lambda: signal.disconnect(receiver)


def test_a_customer_level_event_refreshes_that_customers_visible_methods_in_its_account(
        customer, card_token, sandbox, make_user, enqueued):
    ours = _many(customer, card_token, sandbox, 3)
    services.remove_payment_method(customer, ours[2].uid)
    neighbour = services.get_or_create_customer(make_user("neighbour"))
    theirs = services.add_payment_method(neighbour, card_token(CARDS[3]))[0]
    sandbox.network_update(theirs.processor_ref.method_id, exp_month=3, exp_year=2039)
    eu_processor = get_processor("eu")
    abroad = services.get_or_create_customer(make_user("abroad"), account="eu")
    eu_method = services.add_payment_method(abroad, eu_processor.tokenize_card(CARDS[4], 12, 2034))[0]
    Customer.objects.filter(pk=abroad.pk).update(processor_customer_id=customer.processor_customer_id)
    received, disconnect = _listen(signals.vault_event)
    try:
        event = _store(sandbox, data={"customer_id": customer.processor_customer_id})
        assert events.process_event(event.pk) == WebhookEvent.PROCESSED
    finally:
        disconnect()
    assert sorted(m.pk for m in received[0]["event"].payment_methods) == sorted(m.pk for m in ours[:2])
    assert sorted(SavedPaymentMethod.objects.filter(exp_year=2039).values_list("pk", flat=True)) == sorted(
        m.pk for m in ours[:2])
    eu_method.refresh_from_db()
    assert eu_method.status == p.METHOD_ACTIVE and eu_method.exp_year == 2034
    assert WebhookEvent.objects.get(pk=event.pk).notes == []


def test_unknown_method_ids_are_counted_and_known_ones_refreshed(customer, card_token, sandbox, enqueued):
    made = _many(customer, card_token, sandbox, 2)
    received, disconnect = _listen(signals.vault_event)
    try:
        event = _store(sandbox, data={"payment_method_ids": [made[0].processor_ref.method_id, "pm_gone_1",
                                                             "pm_gone_2"]})
        assert events.process_event(event.pk) == WebhookEvent.PROCESSED
    finally:
        disconnect()
    assert WebhookEvent.objects.get(pk=event.pk).notes == ["2 payment method id(s) unknown here"]
    assert [m.pk for m in received[0]["event"].payment_methods] == [made[0].pk]
    assert list(SavedPaymentMethod.objects.filter(exp_year=2039).values_list("pk", flat=True)) == [made[0].pk]


# -- applying what the processor answered: one method, or a batch ---------------------------------


def _apply_one(method, fetched, **kwargs):
    change = events.apply_fetched(method, fetched, **kwargs)
    return 0 if change is None else 1


def _apply_batch(method, fetched, **kwargs):
    return events.apply_fetched_batch([(method, fetched)], **kwargs)


APPLIERS = pytest.mark.parametrize("apply", [_apply_one, _apply_batch], ids=["one", "batch"])


def _answer(method, **changes):
    values = {"token": "tok", "brand": method.brand, "last4": method.last4, "exp_month": method.exp_month,
              "exp_year": method.exp_year, "verification_status": p.VERIFICATION_UNKNOWN, "status": p.METHOD_ACTIVE}
    return p.VaultedMethod(**{**values, **changes})


@APPLIERS
def test_display_fields_are_taken_bounded_and_kept_when_missing(apply, methods):
    method, other = methods
    event = _event()
    updated, signal_off = _listen(signals.payment_method_updated)
    try:
        assert apply(method, _answer(method, brand="b" * 40, last4="123456", exp_month=7, exp_year=2040,
                                     verification_status=p.VERIFICATION_SUCCESS),
                     source_event=event, source="s" * 70) == 1
    finally:
        signal_off()
    method.refresh_from_db()
    assert (method.brand, method.last4, method.exp_month, method.exp_year, method.verification_status) == (
        "b" * 32, "3456", 7, 2040, p.VERIFICATION_SUCCESS)
    change = PaymentMethodChange.objects.get()
    assert (change.payment_method_id, change.source_event_id, change.source) == (method.pk, event.pk, "s" * 64)
    assert change.before["exp_year"] == 2034 and change.after == {
        "brand": "b" * 32, "last4": "3456", "exp_month": 7, "exp_year": 2040, "status": p.METHOD_ACTIVE,
        "verification_status": p.VERIFICATION_SUCCESS, "is_default": True}
    assert [(u["payment_method"].pk, u["changes"].pk, u["promoted"]) for u in updated] == [
        (method.pk, change.pk, None)]
    # Nothing given: nothing lost; an unknown or unrecognised verification status is not taken.
    for status in (p.VERIFICATION_UNKNOWN, "bogus"):
        assert apply(method, p.VaultedMethod(token="tok", verification_status=status)) == 0
    method.refresh_from_db()
    assert (method.brand, method.last4, method.exp_month, method.exp_year, method.verification_status) == (
        "b" * 32, "3456", 7, 2040, p.VERIFICATION_SUCCESS)
    assert PaymentMethodChange.objects.count() == 1
    other.refresh_from_db()
    assert (other.exp_year, other.last4) == (2034, "4444")


@APPLIERS
@pytest.mark.parametrize("answer, status", [
    (lambda m, today: None, p.METHOD_CLOSED),
    (lambda m, today: _answer(m, status=p.METHOD_CLOSED), p.METHOD_CLOSED),
    (lambda m, today: _answer(m, status=p.METHOD_REMOVED), p.METHOD_CLOSED),
    (lambda m, today: _answer(m, exp_year=today.year, exp_month=today.month), p.METHOD_ACTIVE),
    (lambda m, today: _answer(m, exp_year=today.year - (today.month == 1), exp_month=(today.month - 2) % 12 + 1),
     p.METHOD_EXPIRED),
    (lambda m, today: _answer(m, exp_year=today.year - 1, exp_month=12 if today.month == 12 else today.month + 1),
     p.METHOD_EXPIRED),
], ids=["not-found", "closed", "removed", "this-month", "last-month", "last-year"])
def test_status_from_the_answer_at_the_expiry_boundary(apply, answer, status, methods):
    from datetime import date

    method, other = methods
    assert apply(method, answer(method, date.today())) == 1
    method.refresh_from_db()
    assert method.status == status and method.is_default == (status == p.METHOD_ACTIVE)
    other.refresh_from_db()
    assert other.status == p.METHOD_ACTIVE and other.is_default == (status != p.METHOD_ACTIVE)


@APPLIERS
def test_a_closed_default_is_replaced_by_the_newest_chargeable_method(apply, customer, card_token, make_user):
    default, older, newer = (services.add_payment_method(customer, card_token(n))[0] for n in CARDS[:3])
    SavedPaymentMethod.objects.filter(pk=newer.pk).update(verification_status=p.VERIFICATION_FAILED)
    neighbour = services.get_or_create_customer(make_user("neighbour"))
    theirs = services.add_payment_method(neighbour, card_token(CARDS[3]))[0]
    updated, signal_off = _listen(signals.payment_method_updated)
    try:
        assert apply(default, None) == 1
    finally:
        signal_off()
    assert [(u["payment_method"].pk, u["promoted"].pk) for u in updated] == [(default.pk, older.pk)]
    assert list(SavedPaymentMethod.objects.filter(is_default=True).values_list("pk", flat=True).order_by("pk")) == [
        older.pk, theirs.pk]
    default.refresh_from_db()
    assert (default.status, default.is_default) == (p.METHOD_CLOSED, False)
    change = PaymentMethodChange.objects.get()
    assert change.before["is_default"] and not change.after["is_default"] and change.after["status"] == "closed"
    # A closed method that was not the default promotes nothing.
    assert apply(older, _answer(older, exp_year=2041)) == 1
    assert SavedPaymentMethod.objects.get(pk=older.pk).is_default


@APPLIERS
def test_a_removed_method_is_left_alone(apply, customer, methods):
    method, other = methods
    services.remove_payment_method(customer, other.uid)
    assert apply(SavedPaymentMethod.objects.get(pk=other.pk), _answer(other, exp_year=2041)) == 0
    assert SavedPaymentMethod.objects.get(pk=other.pk).status == p.METHOD_REMOVED
    assert not PaymentMethodChange.objects.exists()


def test_the_returned_change_and_the_callers_copy_are_up_to_date(methods):
    method, other = methods
    change = events.apply_fetched(method, _answer(method, exp_year=2041, last4="9999"))
    assert change is not None and change.after["exp_year"] == 2041
    assert (method.exp_year, method.last4) == (2041, "9999")  # the caller's instance too
    assert events.apply_fetched(method, _answer(method, exp_year=2041, last4="9999")) is None


def test_a_batch_for_two_customers_promotes_per_customer(customer, card_token, make_user):
    ours_default, ours_next = (services.add_payment_method(customer, card_token(n))[0] for n in CARDS[:2])
    neighbour = services.get_or_create_customer(make_user("neighbour"))
    theirs_default, theirs_next = (services.add_payment_method(neighbour, card_token(n))[0] for n in CARDS[2:4])
    updated, signal_off = _listen(signals.payment_method_updated)
    try:
        with transaction.atomic():
            changed = events.apply_fetched_batch([
                (ours_default, None), (theirs_next, _answer(theirs_next, exp_year=2041)),
                (ours_next, _answer(ours_next)), (theirs_default, None)], source="batch")
        assert changed == 3
    finally:
        signal_off()
    promoted = {u["payment_method"].pk: u["promoted"] and u["promoted"].pk for u in updated}
    assert promoted == {ours_default.pk: ours_next.pk, theirs_next.pk: None, theirs_default.pk: theirs_next.pk}
    rows = {m.pk: m for m in SavedPaymentMethod.objects.all()}
    assert (rows[ours_default.pk].status, rows[ours_default.pk].is_default) == (p.METHOD_CLOSED, False)
    assert rows[ours_next.pk].is_default and rows[theirs_next.pk].is_default
    assert rows[theirs_next.pk].exp_year == 2041 and rows[ours_next.pk].exp_year == 2034
    assert rows[theirs_next.pk].updated_at >= rows[ours_next.pk].updated_at
    assert sorted(PaymentMethodChange.objects.values_list("payment_method_id", flat=True)) == sorted(
        [ours_default.pk, theirs_next.pk, theirs_default.pk])
    assert set(PaymentMethodChange.objects.values_list("source", flat=True)) == {"batch"}
    assert events.apply_fetched_batch([]) == 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a row-lock race: needs PostgreSQL (set DATABASE_URL)")
def test_a_refresh_closing_the_default_and_a_change_of_default_take_turns(customer, card_token, sandbox):
    """A refresh finds the default closed and promotes the next method while the shopper picks
    another default. The refresh holds the customer's lock until it commits, so the shopper's
    change waits for it and then wins: exactly one default, the shopper's, here and at the
    processor. (Without the customer's lock the two interleave: the shopper's change clears the
    defaults it saw before the promotion, and its own default then collides with the promoted
    one — one default per customer — and the request fails.)"""
    # the refresh promotes the newest method; the shopper picks the other one
    closed, chosen, promoted = (services.add_payment_method(customer, card_token(n))[0] for n in CARDS[:3])
    paused, release = threading.Event(), threading.Event()

    def hold_the_refresh_open(sender, instance, created, **kwargs):  # inside its transaction, after promoting
        if created and instance.payment_method_id == closed.pk:
            paused.set()
            release.wait(30)

    def refresh():
        try:
            return events.apply_fetched(SavedPaymentMethod.objects.get(pk=closed.pk), None)
        finally:
            connections.close_all()

    def choose(pid):
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid.append(cursor.fetchone()[0])
            return services.set_default_payment_method(Customer.objects.get(pk=customer.pk), chosen.uid)
        finally:
            connections.close_all()

    updated, signal_off = _listen(signals.payment_method_updated)
    post_save.connect(hold_the_refresh_open, sender=PaymentMethodChange, weak=False)
    try:
        with ThreadPoolExecutor(2) as pool:
            refreshed = pool.submit(refresh)
            assert paused.wait(30), "the refresh never reached its change record"
            pid: list[int] = []
            chose = pool.submit(choose, pid)
            waiting, deadline = None, time.monotonic() + 30
            while waiting != "Lock" and time.monotonic() < deadline and not chose.done():
                time.sleep(0.02)
                with connection.cursor() as cursor:
                    cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", pid or [0])
                    row = cursor.fetchone()
                waiting = row[0] if row else None
            release.set()
            assert waiting == "Lock", "the shopper's change did not wait for a row lock"
            change = refreshed.result(30)
            method = chose.result(30)
    finally:
        release.set()
        post_save.disconnect(hold_the_refresh_open, sender=PaymentMethodChange)
        signal_off()
    assert change.before["is_default"] and change.after["status"] == p.METHOD_CLOSED
    assert [u["promoted"].pk for u in updated] == [promoted.pk]  # promoted by the refresh, then replaced
    assert method.pk == chosen.pk
    assert list(SavedPaymentMethod.objects.filter(customer=customer, is_default=True).values_list("pk", flat=True)) \
        == [chosen.pk]
    assert [m.token for m in sandbox.list_payment_methods(customer.processor_ref) if m.is_default] == [
        chosen.processor_token]
    assert SavedPaymentMethod.objects.get(pk=closed.pk).status == p.METHOD_CLOSED


# -- the stored delivery, first thing after a worker starts; the staff view; reprocessing ---------


def test_the_first_delivery_after_a_start_is_stored_whole_and_encrypted(sandbox, enqueued, monkeypatch):
    """The event INSERT is compiled on a process's first delivery (then reused): start from an
    empty cache, as a fresh worker does, so that it is this test's delivery that compiles it."""
    from django.db import connection

    monkeypatch.setattr(events, "_INSERT_PLANS", {})
    processor = get_processor("default")
    body_text = '{"data": {"note": "Zoë secret_marker_41"}}'
    request = p.WebhookRequest(headers={"Content-Type": "application/json", "X-Request-Id": "r-1"},
                               body=body_text.encode(), remote_addr="10.9.8.7")
    before = timezone.now()
    first, created = events.store_delivery("default", processor, request, "evt_first", "provider.noc")
    assert created and not first._state.adding
    second, created = events.store_delivery("default", processor, request, "evt_second", "provider.noc")
    assert created and second.pk != first.pk
    stored = WebhookEvent.objects.get(event_id="evt_first")
    assert stored.pk == first.pk and enqueued["events"] == [first.pk, second.pk]
    assert (stored.account, stored.processor, stored.event_type, stored.remote_addr) == (
        "default", "sandbox", "provider.noc", "10.9.8.7")
    assert stored.body == body_text and stored.headers == {"content-type": "application/json", "x-request-id": "r-1"}
    assert stored.event_id_hash == WebhookEvent.hash_event_id("evt_first") and stored.uid == first.uid
    assert (stored.status, stored.attempts, stored.notes, stored.last_error) == (WebhookEvent.RECEIVED, 0, [], "")
    assert before <= stored.received_at <= timezone.now() and stored.next_attempt_at >= before
    assert WebhookEvent.objects.get(event_id="evt_second").pk == second.pk
    with connection.cursor() as cursor:  # the body and headers are ciphertext in the table
        cursor.execute(f"SELECT body, headers FROM {WebhookEvent._meta.db_table} WHERE id = %s",  # noqa: S608
                       [first.pk])
        raw = " ".join(bytes(v).decode("latin-1") if not isinstance(v, str) else v for v in cursor.fetchone())
    assert "secret_marker_41" not in raw and "x-request-id" not in raw
    # A re-delivery is told apart from a new one by the stored id, after the plan was compiled.
    again, created = events.store_delivery("default", processor, request, "evt_first", "provider.noc")
    assert not created and again.pk == first.pk


def test_the_event_insert_stores_each_value_as_the_orm_would(sandbox, enqueued, monkeypatch):
    """Values that are not plain text, numbers or booleans (the delivery's datetimes) go through
    their field's ``get_db_prep_save``: the row holds them exactly as an ORM write would (on SQLite
    a datetime is text, and the driver's own rendering differs from Django's) — ``_insert_event``
    20, 22, 24."""
    from django.db import connection

    monkeypatch.setattr(events, "_INSERT_PLANS", {})
    request = p.WebhookRequest(headers={"Content-Type": "application/json"}, body=b"{}", remote_addr="10.9.8.7")
    event, _ = events.store_delivery("default", get_processor("default"), request, "evt_raw", "provider.noc")
    twin = WebhookEvent.objects.create(account="default", processor="sandbox", event_id="evt_orm",
                                       event_id_hash=WebhookEvent.hash_event_id("evt_orm"), body="{}")
    WebhookEvent.objects.filter(pk=twin.pk).update(received_at=event.received_at, next_attempt_at=event.next_attempt_at,
                                                   remote_addr="10.9.8.7", event_type="provider.noc")
    table = WebhookEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT received_at, next_attempt_at, remote_addr, event_type, status, attempts "  # noqa: S608
                       f"FROM {table} WHERE id IN (%s, %s) ORDER BY id", [event.pk, twin.pk])
        stored, written = cursor.fetchall()
    assert stored == written


def test_staff_see_a_delivery_redacted_sorted_indented_and_unescaped():
    event = WebhookEvent(account="default", processor="sandbox", event_id="evt_v",
                         body='{"z": "Zoë", "a": {"card_token": "tk_live_secret", "n": 1}}')
    assert events.redacted_body(event) == (
        '{\n  "a": {\n    "card_token": "[redacted]",\n    "n": 1\n  },\n  "z": "Zoë"\n}')
    assert events.redacted_body(WebhookEvent(account="default", body="Zoë=tk_1")) == (
        "(9 bytes, not JSON: not shown)")


def test_staff_see_nothing_of_a_delivery_for_an_account_no_longer_configured():
    event = WebhookEvent(account="removed_account", processor="sandbox", event_id="evt_r",
                         body='{"payment_method_id": "sbxpm_1"}')
    assert events.redacted_body(event) == "(32 bytes from an account no longer configured: not shown)"


def test_staff_reprocessing_makes_the_event_due_now_and_forgets_only_its_chunks(enqueued):
    later = timezone.now() + timedelta(hours=1)
    event = _event(WebhookEvent.FAILED, attempts=2, next_attempt_at=later)
    other = _event(WebhookEvent.FAILED, attempts=2, next_attempt_at=later)
    NocChunk.objects.create(event=event, index=0, method_pks=[1], status=NocChunk.FAILED)
    kept = NocChunk.objects.create(event=other, index=0, method_pks=[2], status=NocChunk.FAILED)
    assert set(events.due_events()) == set()
    assert events.mark_for_reprocessing(event.pk) is True
    event.refresh_from_db()
    assert (event.status, event.next_attempt_at) == (WebhookEvent.RECEIVED, None)
    assert list(events.due_events()) == [event] and not event.chunks.exists()
    other.refresh_from_db()
    assert (other.status, other.next_attempt_at) == (WebhookEvent.FAILED, later)
    assert list(NocChunk.objects.all()) == [kept]
    assert events.mark_for_reprocessing(987654) is False


def test_the_processor_re_reads_the_delivery_as_it_was_received(sandbox, enqueued, monkeypatch):
    """A processor module may check a stored delivery's headers, sender or arrival time again when it
    parses it (a signed timestamp against the arrival, not against when a worker got to it)."""
    seen = []
    real = type(sandbox).parse_webhook

    def parse(self, request):
        seen.append(request)
        return real(self, request)

    monkeypatch.setattr(type(sandbox), "parse_webhook", parse)
    headers, body = sandbox.make_webhook("other.kind", {}, event_id="evt_as_received")
    request = p.WebhookRequest(headers=headers, body=body, remote_addr="10.1.2.3")
    stored, _ = events.store_delivery("default", sandbox, request, "evt_as_received", "other.kind")
    anonymous = _store(sandbox, kind="other.kind", event_id="evt_anonymous")
    WebhookEvent.objects.filter(pk=anonymous.pk).update(remote_addr=None)
    for event in (stored, anonymous):
        events.process_event(event.pk)
    stored.refresh_from_db()
    assert [(r.remote_addr, r.received_at, r.body) for r in seen] == [
        ("10.1.2.3", stored.received_at, body), ("", WebhookEvent.objects.get(pk=anonymous.pk).received_at,
                                                 anonymous.body.encode())]
    assert seen[0].headers == stored.headers and seen[0].header("content-type") == "application/json"


def test_the_signals_name_the_event_its_methods_and_its_charge(methods, customer, sandbox, enqueued):
    charge = services.charge(customer, 1100, "USD", idempotency_key="k-signal")
    received = []
    receiver = lambda sender, event, **kw: received.append(event)  # noqa: E731
    signals.vault_event.connect(receiver)
    try:
        noc = _noc(sandbox, methods[0])
        paid = _store(sandbox, kind="charge.succeeded", data={"charge_id": charge.processor_reference})
        assert events.process_event(noc.pk) == events.process_event(paid.pk) == WebhookEvent.PROCESSED
    finally:
        signals.vault_event.disconnect(receiver)
    assert [(v.type, v.account, v.processor, v.webhook_event.pk, tuple(m.pk for m in v.payment_methods),
             v.charge and v.charge.pk) for v in received] == [
        (p.EVENT_PAYMENT_METHOD_UPDATED, "default", "sandbox", noc.pk, (methods[0].pk,), None),
        (p.EVENT_CHARGE_SUCCEEDED, "default", "sandbox", paid.pk, (), charge.pk)]
    assert received[1].payment_methods == () and WebhookEvent.objects.get(pk=paid.pk).notes == []


def test_a_processors_own_signature_header_is_not_stored(sandbox, enqueued, monkeypatch):
    """A processor may sign with a header whose name says nothing of a signature (configurable on
    some): the header it names is dropped like any signature, the rest is kept."""
    monkeypatch.setattr(sandbox, "webhook_secret_headers", ("X-Shop-Proof",), raising=False)
    headers, body = sandbox.make_webhook("provider.noc", {}, event_id="evt_proof")
    request = p.WebhookRequest(headers={**headers, "X-Shop-Proof": "proof-value"}, body=body)
    event, _ = events.store_delivery("default", sandbox, request, "evt_proof", "provider.noc")
    stored = WebhookEvent.objects.get(pk=event.pk).headers
    assert "x-shop-proof" not in stored and "proof-value" not in stored.values()
    assert stored["content-type"] == "application/json"


@APPLIERS
def test_receivers_of_saved_methods_hear_about_a_change(apply, methods):
    """``payment_method_updated`` is sent by the ``SavedPaymentMethod`` model, as documented (a
    receiver connected for that sender only hears it), with the change as it was stored."""
    method, _ = methods
    heard = []

    def receiver(sender, payment_method, changes, **kwargs):
        heard.append((sender, payment_method.pk))
        stored = PaymentMethodChange.objects.get(payment_method=payment_method)
        assert (changes.pk, changes.created_at, changes.after) == (stored.pk, stored.created_at, stored.after)

    signals.payment_method_updated.connect(receiver, sender=SavedPaymentMethod, weak=False)
    try:
        assert apply(method, _answer(method, exp_year=2041)) == 1
    finally:
        signals.payment_method_updated.disconnect(receiver, sender=SavedPaymentMethod)
    assert heard == [(SavedPaymentMethod, method.pk)]


def test_a_batch_goes_on_past_a_removed_method(customer, methods):
    method, other = methods
    services.remove_payment_method(customer, method.uid)
    removed = SavedPaymentMethod.objects.get(pk=method.pk)
    assert events.apply_fetched_batch([(removed, _answer(removed, exp_year=2041)),
                                       (other, _answer(other, exp_year=2042))]) == 1
    assert SavedPaymentMethod.objects.get(pk=other.pk).exp_year == 2042
    assert SavedPaymentMethod.objects.get(pk=method.pk).status == p.METHOD_REMOVED
    assert list(PaymentMethodChange.objects.values_list("payment_method_id", flat=True)) == [other.pk]


def test_a_refresh_nobody_named_is_recorded_as_a_manual_refresh(methods, sandbox):
    """What the method's history shows staff when a refresh came from no event (the admin's refresh)."""
    first, second = methods
    sandbox.network_update(first.processor_ref.method_id, exp_month=4, exp_year=2041)
    assert events.refresh_payment_method(first) is not None
    assert events.apply_fetched(second, _answer(second, exp_year=2042)) is not None
    assert events.apply_fetched_batch([(second, _answer(second, exp_year=2043))]) == 1
    assert list(PaymentMethodChange.objects.order_by("pk").values_list("source", "source_event")) == [
        ("manual refresh", None)] * 3


def test_an_event_of_no_named_type_is_noted_as_an_event(sandbox, enqueued, monkeypatch):
    event = _store(sandbox, kind="other.kind")
    monkeypatch.setattr(type(sandbox), "parse_webhook",
                        lambda self, request: [p.NormalizedEvent(type=p.EVENT_UNKNOWN, event_id="evt_nameless")])
    received = []
    receiver = lambda sender, event, **kw: received.append(event)  # noqa: E731
    signals.vault_event.connect(receiver)
    try:
        assert events.process_event(event.pk) == WebhookEvent.IGNORED
    finally:
        signals.vault_event.disconnect(receiver)
    assert WebhookEvent.objects.get(pk=event.pk).notes == ["event: not a type vault_wallets acts on"]
    # Still signalled, with the stored event (a shop may act on types vault_wallets does not).
    assert [(v.type, v.account, v.processor, v.webhook_event.pk, v.payment_methods, v.charge)
            for v in received] == [(p.EVENT_UNKNOWN, "default", "sandbox", event.pk, (), None)]


def test_an_event_naming_methods_and_their_customer_refreshes_only_those_methods(methods, customer, sandbox,
                                                                                  enqueued):
    named, other = methods
    for m in methods:
        sandbox.network_update(m.processor_ref.method_id, exp_month=5, exp_year=2040)
    event = _store(sandbox, data={"payment_method_ids": [named.processor_ref.method_id],
                                  "customer_id": customer.processor_customer_id})
    assert events.process_event(event.pk) == WebhookEvent.PROCESSED
    assert SavedPaymentMethod.objects.get(pk=named.pk).exp_year == 2040
    assert SavedPaymentMethod.objects.get(pk=other.pk).exp_year == 2034  # not named: not refreshed
