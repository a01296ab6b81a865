"""Money and events on a bad day, at the service level, with the sandbox's after-call faults.

"Apply, then drop the answer" (``faults.drop_next``) lets the sandbox charge — committed, as a
real processor's would be — and then raises as if the connection dropped; "apply, then answer
late" (``faults.late_next``) answers after the caller gave up.  Each test says which protection
it guards; removing that protection makes it fail (docs/reliability.md lists the removals tried).
"""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone

from vault_wallets import services, tasks
from vault_wallets.exceptions import ChargeOutcomeUnknown, InvalidChargeState, ProcessorUnavailable
from vault_wallets.models import Charge, Customer, NocChunk, Refund, SavedPaymentMethod, WebhookEvent
from vault_wallets.processors import base as p
from vault_wallets.sandbox.models import SandboxCharge
from vault_wallets.services import charges, events

pytestmark = pytest.mark.django_db


@pytest.fixture
def method(customer, card_token):
    method, _ = services.add_payment_method(customer, card_token())
    return method


def _lookup_down(monkeypatch, sandbox, times=1):
    """The processor is unreachable for the next ``times`` look-ups (find_charge/fetch_charge)."""
    left = {"n": times}
    real_find, real_fetch = type(sandbox).find_charge, type(sandbox).fetch_charge

    def gate(real):
        def call(self, *args, **kwargs):
            if left["n"] > 0:
                left["n"] -= 1
                raise p.ProcessorUnavailable("down", code="connection_error", processor="sandbox")
            return real(self, *args, **kwargs)
        return call

    monkeypatch.setattr(type(sandbox), "find_charge", gate(real_find))
    monkeypatch.setattr(type(sandbox), "fetch_charge", gate(real_fetch))


# -- charges ------------------------------------------------------------------------------------


def test_lost_answer_is_found_and_the_same_key_never_charges_twice(customer, method, sandbox, caplog):
    sandbox.faults.drop_next(only="charge")
    record = services.charge(customer, 1500, "USD", idempotency_key="order-1", reference="ord_1")
    assert "answer was lost" in caplog.text  # the fault fired: the sandbox charged, the answer never came
    # Protection: the immediate look-up by idempotency key found what the processor did.
    assert record.status == "captured" and record.processor_reference
    assert SandboxCharge.objects.count() == 1
    again = services.charge(customer, 1500, "USD", idempotency_key="order-1", reference="ord_1")
    assert again.pk == record.pk and SandboxCharge.objects.count() == 1 and Charge.objects.count() == 1


def test_answer_late_is_found_too(customer, method, sandbox):
    sandbox.faults.late_next(0.2, only="charge")
    record = services.charge(customer, 700, "USD", idempotency_key="late-1")
    assert record.status == "captured" and SandboxCharge.objects.count() == 1


def test_unknown_until_the_task_looks_it_up_and_a_retry_answers_from_the_first(customer, method, sandbox,
                                                                               monkeypatch):
    sandbox.faults.drop_next(only="charge")
    _lookup_down(monkeypatch, sandbox, times=2)
    with pytest.raises(ChargeOutcomeUnknown) as caught:
        services.charge(customer, 1500, "USD", idempotency_key="order-2")
    assert isinstance(caught.value, ProcessorUnavailable)  # a checkout that knows only that error stays safe
    record = caught.value.charge
    assert record.status == "unknown" and record.next_check_at is not None
    # A second click on the same order while the processor is still unreachable: same row, no new charge.
    with pytest.raises(ChargeOutcomeUnknown):
        services.charge(customer, 1500, "USD", idempotency_key="order-2")
    assert SandboxCharge.objects.count() == 1 and Charge.objects.count() == 1
    # The Celery task settles it.
    assert tasks.resolve_charge(record.pk) == "captured"
    record.refresh_from_db()
    assert record.status == "captured" and record.amount_captured == 1500 and record.processor_reference
    assert services.charge(customer, 1500, "USD", idempotency_key="order-2").pk == record.pk
    assert SandboxCharge.objects.count() == 1


def test_sweeper_settles_due_unknown_charges(customer, method, sandbox, monkeypatch):
    sandbox.faults.drop_next(only="charge")
    _lookup_down(monkeypatch, sandbox, times=1)
    with pytest.raises(ChargeOutcomeUnknown):
        services.charge(customer, 900, "USD", idempotency_key="sweep-1")
    assert charges.sweep_money(now=timezone.now()) == 0  # not due yet
    assert charges.sweep_money(now=timezone.now() + timedelta(minutes=5)) == 1
    assert Charge.objects.get().status == "captured"


def test_nothing_charged_is_recorded_not_processed_and_the_key_charges_again(customer, method, sandbox):
    sandbox.faults.fail_next(1, kind="timeout")  # fails before the call: the sandbox did nothing
    with pytest.raises(ProcessorUnavailable):
        services.charge(customer, 500, "USD", idempotency_key="np-1")
    record = Charge.objects.get()
    assert (record.status, record.failure_code) == ("failed", "not_processed")
    assert services.charge(customer, 500, "USD", idempotency_key="np-1").status == "captured"
    assert SandboxCharge.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_pending_row_is_committed_before_the_processor_call(customer, method, sandbox, monkeypatch):
    seen = {}
    real = type(sandbox).charge

    def spy(self, request):
        def look():  # another connection: sees only committed rows
            try:
                seen["rows"] = list(Charge.objects.filter(idempotency_key=request.idempotency_key)
                                    .values_list("status", "amount", "reference"))
            finally:
                connections.close_all()
        thread = threading.Thread(target=look)
        thread.start()
        thread.join(10)
        return real(self, request)

    monkeypatch.setattr(type(sandbox), "charge", spy)
    services.charge(customer, 1234, "USD", idempotency_key="commit-1", reference="ord_c")
    assert seen["rows"] == [("pending", 1234, "ord_c")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_customer_row_is_not_locked_during_the_processor_call(customer, method, sandbox, monkeypatch):
    seen = {}
    real = type(sandbox).charge

    def spy(self, request):
        def lock_it():
            from django.db import transaction
            try:
                with transaction.atomic():
                    Customer.objects.select_for_update(nowait=True).get(pk=customer.pk)
                    seen["locked"] = True
            except Exception as exc:  # noqa: BLE001 - the assertion below names it
                seen["error"] = type(exc).__name__
            finally:
                connections.close_all()
        thread = threading.Thread(target=lock_it)
        thread.start()
        thread.join(10)
        return real(self, request)

    monkeypatch.setattr(type(sandbox), "charge", spy)
    services.charge(customer, 100, "USD", idempotency_key="lock-1")
    assert seen == {"locked": True}


# -- capture / void -------------------------------------------------------------------------------


def test_capture_and_void_lost_answers_are_read_back(customer, method, sandbox):
    auth = services.charge(customer, 800, "USD", idempotency_key="auth-1", capture=False)
    sandbox.faults.drop_next(only="capture")
    assert services.capture(auth).status == "captured"
    other = services.charge(customer, 300, "USD", idempotency_key="auth-2", capture=False)
    sandbox.faults.drop_next(only="void")
    assert services.void(other).status == "voided"
    assert sorted(SandboxCharge.objects.values_list("status", flat=True)) == ["captured", "voided"]


# -- refunds --------------------------------------------------------------------------------------


def test_refund_rows_and_default_keys(customer, method, sandbox):
    record = services.charge(customer, 1000, "USD", idempotency_key="r-1")
    services.refund(record, 300)
    services.refund(record, 200)
    rows = list(Refund.objects.values_list("sequence", "amount", "status", "idempotency_key"))
    assert rows == [(1, 300, "succeeded", f"refund-{record.uid}-1"), (2, 200, "succeeded", f"refund-{record.uid}-2")]
    record.refresh_from_db()
    assert record.amount_refunded == 500 and SandboxCharge.objects.get().amount_refunded == 500


def test_refund_lost_answer_is_read_back(customer, method, sandbox):
    record = services.charge(customer, 1000, "USD", idempotency_key="r-2")
    sandbox.faults.drop_next(only="refund")
    record = services.refund(record, 400)
    assert record.amount_refunded == 400 and Refund.objects.get().status == "succeeded"
    assert SandboxCharge.objects.get().amount_refunded == 400


def test_refund_retried_without_a_key_refunds_once(customer, method, sandbox, monkeypatch):
    record = services.charge(customer, 1000, "USD", idempotency_key="r-3")
    sandbox.faults.drop_next(only="refund")
    _lookup_down(monkeypatch, sandbox, times=1)
    with pytest.raises(ChargeOutcomeUnknown) as caught:
        services.refund(record, 300)
    assert caught.value.refund.status == "unknown"
    # The shop retries the same refund, without a key: the unsettled refund is settled, not repeated.
    record = services.refund(record, 300)
    assert SandboxCharge.objects.get().amount_refunded == 300
    assert record.amount_refunded == 300
    assert list(Refund.objects.values_list("sequence", "status")) == [(1, "succeeded")]
    # A different amount while a refund is unsettled is refused, not guessed at.
    sandbox.faults.drop_next(only="refund")
    _lookup_down(monkeypatch, sandbox, times=1)
    with pytest.raises(ChargeOutcomeUnknown):
        services.refund(record, 100)
    _lookup_down(monkeypatch, sandbox, times=1)
    with pytest.raises(InvalidChargeState):
        services.refund(record, 50)


def test_explicit_refund_key_is_idempotent(customer, method, sandbox):
    record = services.charge(customer, 1000, "USD", idempotency_key="r-4")
    services.refund(record, 100, idempotency_key="rf-a")
    services.refund(record, 100, idempotency_key="rf-a")
    assert SandboxCharge.objects.get().amount_refunded == 100 and Refund.objects.count() == 1


# -- the processor's charge webhook settles a charge whose answer was lost ------------------------------


def test_charge_webhook_links_and_settles_the_unknown_charge(customer, method, sandbox, monkeypatch, settings,
                                                             django_capture_on_commit_callbacks):
    from rest_framework.test import APIClient

    sandbox.faults.drop_next(only="charge")
    _lookup_down(monkeypatch, sandbox, times=1)
    with pytest.raises(ChargeOutcomeUnknown):
        services.charge(customer, 2500, "USD", idempotency_key="wh-1")
    sbx = SandboxCharge.objects.get()
    headers, body = sandbox.make_webhook("charge.succeeded", {"charge_id": sbx.sid})
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "content-type"}
    with django_capture_on_commit_callbacks(execute=True):
        response = APIClient().generic("POST", "/wallet/webhooks/default/", body, content_type="application/json",
                                       **extra)
    assert response.status_code == 200
    record = Charge.objects.get()
    assert (record.status, record.processor_reference) == ("captured", sbx.sid)
    event = WebhookEvent.objects.get()
    assert event.status == "processed" and not any("no local charge" in n for n in event.notes)


# -- durable NOC chunks -----------------------------------------------------------------------------


CARDS = ("4242424242424242", "5555555555554444", "378282246310005", "6011111111111117", "4000000000000002")


def _distinct_methods(customer, card_token, n):
    return [services.add_payment_method(customer, card_token(number))[0] for number in CARDS[:n]]


def test_chunked_noc_is_processed_only_when_its_chunks_are(customer, card_token, sandbox, settings, monkeypatch):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "NOC_CHUNK_SIZE": 2}
    methods = _distinct_methods(customer, card_token, 5)
    assert SavedPaymentMethod.objects.count() == 5
    for m in methods:
        sandbox.network_update(m.processor_ref.method_id, exp_month=3, exp_year=2039)
    published = []
    monkeypatch.setattr(tasks, "enqueue_noc_chunk", lambda pk: published.append(pk) or False)  # broker down
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [m.processor_ref.method_id
                                                                                 for m in methods]})
    from vault_wallets.processors.base import WebhookRequest
    request = WebhookRequest(headers=headers, body=body)
    event, _ = events.store_delivery("default", sandbox, request, *sandbox.webhook_event_id(request))
    assert events.process_event(event.pk) == "processing"
    event.refresh_from_db()
    assert event.status == "processing" and event.processed_at is None
    assert list(NocChunk.objects.values_list("index", "status")) == [(0, "pending"), (1, "pending"), (2, "pending")]
    # Nothing refreshed yet; the event does not claim otherwise.
    assert not SavedPaymentMethod.objects.filter(exp_year=2039).exists()
    # The sweeper finds the chunks (not the event: its work is in them).
    monkeypatch.setattr(tasks, "enqueue_noc_chunk", lambda pk: published.append(pk) or True)
    published.clear()
    assert events.sweep(now=timezone.now() + timedelta(hours=1)) == []
    assert sorted(published) == sorted(NocChunk.objects.values_list("pk", flat=True))
    for pk in published[:2]:
        assert events.process_chunk(pk) == "done"
    event.refresh_from_db()
    assert event.status == "processing"  # one chunk still pending
    assert events.process_chunk(published[2]) == "done"
    event.refresh_from_db()
    assert event.status == "processed" and event.processed_at
    assert SavedPaymentMethod.objects.filter(exp_year=2039).count() == 5
    assert events.process_chunk(published[0]) == "done"  # a duplicate message: nothing twice


# -- recovery timing and the command ----------------------------------------------------------------


def test_sweeper_recovers_within_seconds_not_ten_minutes(customer, method, sandbox, monkeypatch):
    monkeypatch.setattr(tasks, "enqueue_event", lambda pk: False)  # the broker refused at receipt
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [method.processor_ref.method_id]})
    from vault_wallets.processors.base import WebhookRequest
    request = WebhookRequest(headers=headers, body=body)
    event, _ = events.store_delivery("default", sandbox, request, *sandbox.webhook_event_id(request))
    monkeypatch.undo()
    grace = timedelta(seconds=11)  # WEBHOOK_RELAY_GRACE_SECONDS (10) later, not WEBHOOK_STALE_SECONDS or 600 s
    assert events.sweep(now=timezone.now() + grace) == [event.pk]
    event.refresh_from_db()
    assert event.status == "processed"


def test_process_events_plain_form_processes_what_is_waiting(customer, method, sandbox, monkeypatch):
    monkeypatch.setattr(tasks, "enqueue_event", lambda pk: False)
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [method.processor_ref.method_id]})
    from vault_wallets.processors.base import WebhookRequest
    request = WebhookRequest(headers=headers, body=body)
    event, _ = events.store_delivery("default", sandbox, request, *sandbox.webhook_event_id(request))
    monkeypatch.undo()
    assert event.next_attempt_at > timezone.now()  # just received: not "due" yet
    out = io.StringIO()
    call_command("vault_process_events", stdout=out)
    event.refresh_from_db()
    assert event.status == "processed", out.getvalue()
    assert "1 event(s)" in out.getvalue()


# -- one processing per event: the claim (row lock) and the status check -------------------------------


def _stored_noc(sandbox, method):
    from vault_wallets.processors.base import WebhookRequest

    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [method.processor_ref.method_id]})
    request = WebhookRequest(headers=headers, body=body)
    return events.store_delivery("default", sandbox, request, *sandbox.webhook_event_id(request))[0]


def test_a_processed_event_is_not_processed_again(customer, method, sandbox, monkeypatch):
    monkeypatch.setattr(tasks, "enqueue_event", lambda pk: False)
    event = _stored_noc(sandbox, method)
    fetches = []
    real = type(sandbox).fetch_payment_method
    monkeypatch.setattr(type(sandbox), "fetch_payment_method",
                        lambda self, c, m: fetches.append(1) or real(self, c, m))
    assert events.process_event(event.pk) == "processed"
    assert events.process_event(event.pk) == "processed"
    assert len(fetches) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_a_second_worker_skips_an_event_being_processed(customer, method, sandbox, monkeypatch):
    monkeypatch.setattr(tasks, "enqueue_event", lambda pk: False)
    event = _stored_noc(sandbox, method)
    started, release, fetches = threading.Event(), threading.Event(), []
    real = type(sandbox).fetch_payment_method

    def slow_first(self, c, m):
        fetches.append(1)
        if len(fetches) == 1:
            started.set()
            release.wait(10)
        return real(self, c, m)

    monkeypatch.setattr(type(sandbox), "fetch_payment_method", slow_first)
    results = {}

    def first():
        try:
            results["first"] = events.process_event(event.pk)
        finally:
            connections.close_all()

    thread = threading.Thread(target=first)
    thread.start()
    assert started.wait(10)
    results["second"] = events.process_event(event.pk)  # while the first holds the claim
    release.set()
    thread.join(10)
    assert results == {"first": "processed", "second": "busy"}
    assert len(fetches) == 1
    assert WebhookEvent.objects.get().attempts == 1
