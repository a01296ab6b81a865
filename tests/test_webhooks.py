"""Receiving, storing and processing webhooks (eager Celery: the broker is irrelevant here)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from vault_wallets import services, signals
from vault_wallets.models import PaymentMethodChange, SavedPaymentMethod, WebhookEvent
from vault_wallets.processors import get_processor
from vault_wallets.services import events

pytestmark = pytest.mark.django_db(transaction=True)  # on_commit must run, as in production

URL = "/wallet/webhooks/default/"


def post(body: bytes, headers: dict, url=URL):
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "content-type"}
    return APIClient().generic("POST", url, body, content_type="application/json", **extra)


@pytest.fixture
def method(customer, card_token):
    saved, _ = services.add_payment_method(customer, card_token())
    return saved


def noc(method, sandbox, closed=False, exp=(11, 2031), last4=None, event_id=""):
    sandbox.network_update(method.processor_ref.method_id, exp_month=exp[0], exp_year=exp[1], last4=last4,
                           closed=closed)
    return sandbox.make_webhook("provider.noc", {"payment_method_ids": [method.processor_ref.method_id]},
                                event_id=event_id)


# -- receiving ----------------------------------------------------------------------------------


def test_noc_updates_the_card(method, sandbox):
    headers, body = noc(method, sandbox, last4="4444")
    response = post(body, headers)
    assert response.status_code == 200 and response.json()["duplicate"] is False
    method.refresh_from_db()
    assert (method.exp_month, method.exp_year, method.last4) == (11, 2031, "4444")
    event = WebhookEvent.objects.get()
    assert event.status == "processed" and event.attempts == 1 and event.processor == "sandbox"
    change = PaymentMethodChange.objects.get()
    assert change.before["exp_year"] == 2034 and change.after["exp_year"] == 2031
    assert change.source_event == event and change.source == "payment_method.updated"


def test_payload_card_data_is_never_trusted(method, sandbox):
    """The event's body claims another expiry; the re-fetch decides."""
    headers, body = sandbox.make_webhook("provider.noc", {
        "payment_method_ids": [method.processor_ref.method_id], "exp_month": 1, "exp_year": 2099, "last4": "0000"})
    assert post(body, headers).status_code == 200
    method.refresh_from_db()
    assert (method.exp_month, method.exp_year, method.last4) == (12, 2034, "4242")
    assert PaymentMethodChange.objects.count() == 0


def test_closed_account_is_closed_and_loses_default(customer, method, sandbox, card_token):
    other, _ = services.add_payment_method(customer, card_token("5555555555554444"))
    headers, body = noc(method, sandbox, closed=True)
    assert post(body, headers).status_code == 200
    method.refresh_from_db()
    other.refresh_from_db()
    assert method.status == "closed" and not method.is_default and other.is_default
    from vault_wallets.exceptions import PaymentMethodNotChargeable

    with pytest.raises(PaymentMethodNotChargeable):
        services.charge(customer, 100, "USD", method, idempotency_key="closed-1")


def test_expired_by_update_is_expired(method, sandbox):
    headers, body = noc(method, sandbox, exp=(1, 2020))
    post(body, headers)
    method.refresh_from_db()
    assert method.status == "expired" and not method.is_default


def test_verification_events(customer, card_token, sandbox):
    pending, _ = services.add_payment_method(customer, card_token("4000000000000101"))
    assert pending.verification_status == "pending"
    sandbox.complete_verification(pending.processor_ref.method_id, succeed=True)
    headers, body = sandbox.make_webhook("payment_method.verification_succeeded",
                                         {"payment_method_id": pending.processor_ref.method_id})
    assert post(body, headers).status_code == 200
    pending.refresh_from_db()
    assert pending.verification_status == "success"
    assert services.charge(customer, 100, "USD", pending, idempotency_key="v").status == "captured"


def test_duplicate_delivery_is_stored_and_processed_once(method, sandbox):
    headers, body = noc(method, sandbox)
    first, again = post(body, headers), post(body, headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == {**first.json(), "duplicate": True}
    assert WebhookEvent.objects.count() == 1 and WebhookEvent.objects.get().attempts == 1
    assert PaymentMethodChange.objects.count() == 1


@pytest.mark.parametrize("mutate, reason", [
    (lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}, "missing"),
    (lambda h: {**h, "webhook-signature": "v1,Zm9vYmFy"}, "signature"),
    (lambda h: {**h, "webhook-signature": "nonsense"}, ""),
    (lambda h: {**h, "webhook-timestamp": str(int(time.time()) - 360)}, "old"),
    (lambda h: {**h, "webhook-timestamp": str(int(time.time()) + 360)}, "new"),
])
def test_verification_failures_are_400_and_store_nothing(method, sandbox, mutate, reason):
    headers, body = noc(method, sandbox)
    response = post(body, mutate(headers))
    assert response.status_code == 400
    assert reason in response.json()["error"]["message"]
    assert WebhookEvent.objects.count() == 0
    method.refresh_from_db()
    assert method.exp_year == 2034


def test_unknown_account_is_400(method, sandbox):
    headers, body = noc(method, sandbox)
    assert post(body, headers, url="/wallet/webhooks/nope/").status_code == 400


def test_another_accounts_secret_is_400(method, sandbox):
    headers, body = noc(method, sandbox)
    assert post(body, headers, url="/wallet/webhooks/eu/").status_code == 400


def test_malformed_json_is_400(sandbox):
    body = b"{not json"
    headers = sandbox.sign_webhook("evt_x", body)
    response = post(body, headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_payload"
    assert WebhookEvent.objects.count() == 0


def test_too_large_is_413(sandbox):
    from vault_wallets import conf

    body = b'{"id":"evt_big","pad":"' + b"x" * conf.get_setting("WEBHOOK_MAX_BODY_BYTES") + b'"}'
    response = post(body, sandbox.sign_webhook("evt_big", body))
    assert response.status_code == 413
    assert WebhookEvent.objects.count() == 0


def test_an_account_updater_batch_of_20000_ids_is_accepted(sandbox):
    """A NOC naming 20,000 methods (ids as long as Caselle's) is about 480 KB: stored, not 413."""
    ids = [f"spm_{i:016x}" for i in range(20000)]
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": ids}, event_id="evt_batch")
    assert len(body) > 256 * 1024
    response = post(body, headers)
    assert response.status_code == 200, response.content
    assert WebhookEvent.objects.get().event_id == "evt_batch"


def test_get_is_405():
    assert APIClient().get(URL).status_code == 405


def test_stored_headers_have_no_signature(method, sandbox):
    headers, body = noc(method, sandbox)
    post(body, {**headers, "authorization": "Bearer secret-thing", "x-api-key": "k"})
    stored = WebhookEvent.objects.get().headers
    assert "webhook-signature" not in stored and "authorization" not in stored and "x-api-key" not in stored
    assert stored["webhook-id"] == headers["webhook-id"]


# -- processing ---------------------------------------------------------------------------------


def test_unknown_ids_are_noted_not_fatal(method, sandbox):
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": ["sbxpm_unknown",
                                                                                method.processor_ref.method_id]})
    sandbox.network_update(method.processor_ref.method_id, exp_month=3, exp_year=2033)
    post(body, headers)
    event = WebhookEvent.objects.get()
    assert event.status == "processed" and "1 payment method id(s) unknown here" in event.notes
    method.refresh_from_db()
    assert method.exp_year == 2033


def test_unknown_event_type_is_ignored(sandbox):
    headers, body = sandbox.make_webhook("something.else", {})
    assert post(body, headers).status_code == 200
    assert WebhookEvent.objects.get().status == "ignored"


def test_transient_failure_retries_then_fails_and_signals(method, sandbox, settings):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "WEBHOOK_MAX_ATTEMPTS": 3}
    failures = []

    def on_failed(sender, webhook_event, error, **kwargs):
        failures.append((webhook_event.uid, error))

    signals.webhook_processing_failed.connect(on_failed)
    try:
        sandbox = get_processor("default")  # the settings change rebuilt the processor instance
        headers, body = noc(method, sandbox)
        sandbox.faults.fail_next(10)
        assert post(body, headers).status_code == 200  # eager: retried synchronously
    finally:
        signals.webhook_processing_failed.disconnect(on_failed)
    event = WebhookEvent.objects.get()
    assert event.status == "failed" and event.attempts == 3
    assert "ProcessorUnavailable" in event.last_error and event.last_traceback
    assert len(failures) == 1 and failures[0][0] == event.uid
    sandbox.faults.reset()
    call_command("vault_process_events", "--failed")
    event.refresh_from_db()
    assert event.status == "processed"
    method.refresh_from_db()
    assert method.exp_year == 2031


def test_transient_failure_then_success(method, sandbox):
    headers, body = noc(method, sandbox)
    sandbox.faults.fail_next(1)
    post(body, headers)
    event = WebhookEvent.objects.get()
    assert event.status == "processed" and event.attempts == 2


def test_permanent_error_is_failed_with_traceback(method, sandbox, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("a bug in a signal receiver")

    monkeypatch.setattr(events, "refresh_payment_method", boom)
    headers, body = noc(method, sandbox)
    assert post(body, headers).status_code == 200
    event = WebhookEvent.objects.get()
    assert event.status == "failed" and event.attempts == 1 and "RuntimeError" in event.last_traceback
    assert event.next_attempt_at is not None  # below the attempt limit: the sweeper retries it


def test_vault_event_signal(method, sandbox):
    received = []

    def on_event(sender, event, **kwargs):
        received.append(event)

    signals.vault_event.connect(on_event)
    try:
        headers, body = noc(method, sandbox)
        post(body, headers)
    finally:
        signals.vault_event.disconnect(on_event)
    assert len(received) == 1
    vault = received[0]
    assert vault.type == "payment_method.updated" and vault.account == "default" and vault.processor == "sandbox"
    assert [m.pk for m in vault.payment_methods] == [method.pk] and vault.event.raw["type"] == "provider.noc"


def test_large_events_are_split_into_chunks(customer, card_token, sandbox, settings):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "NOC_CHUNK_SIZE": 2}
    numbers = ["4242424242424242", "5555555555554444", "378282246310005", "6011111111111117",
               "4000000000000002"]
    methods = [services.add_payment_method(customer, card_token(n))[0] for n in numbers]
    for m in methods:
        sandbox.network_update(m.processor_ref.method_id, exp_month=6, exp_year=2032)
    headers, body = sandbox.make_webhook("provider.noc",
                                         {"payment_method_ids": [m.processor_ref.method_id for m in methods]})
    post(body, headers)
    event = WebhookEvent.objects.get()
    assert "5 payment methods refreshed in 3 chunked task(s)" in event.notes
    assert set(SavedPaymentMethod.objects.values_list("exp_year", flat=True)) == {2032}
    assert PaymentMethodChange.objects.filter(source_event=event).count() == 5


# -- nothing lost ---------------------------------------------------------------------------------


def test_sweeper_picks_up_events_never_enqueued(method, sandbox, monkeypatch):
    from vault_wallets import tasks

    monkeypatch.setattr(tasks, "enqueue_event", lambda pk: False)  # the broker was down at receipt
    headers, body = noc(method, sandbox)
    assert post(body, headers).status_code == 200
    event = WebhookEvent.objects.get()
    assert event.status == "received"
    monkeypatch.undo()
    assert events.sweep() == []  # not due yet
    assert events.sweep(now=timezone.now() + timedelta(minutes=11)) == [event.pk]
    event.refresh_from_db()
    assert event.status == "processed"


def test_process_events_command(method, sandbox, monkeypatch):
    from vault_wallets import tasks

    monkeypatch.setattr(tasks, "enqueue_event", lambda pk: False)
    headers, body = noc(method, sandbox)
    post(body, headers)
    event = WebhookEvent.objects.get()
    call_command("vault_process_events", "--ids", event.uid)
    event.refresh_from_db()
    assert event.status == "processed"
    # Reprocessing by id is idempotent: nothing changes twice.
    call_command("vault_process_events", "--ids", event.event_id)
    assert PaymentMethodChange.objects.count() == 1


def test_admin_reprocess_action_is_registered(admin_client, method, sandbox):
    headers, body = noc(method, sandbox)
    post(body, headers)
    event = WebhookEvent.objects.get()
    response = admin_client.get("/admin/vault_wallets/webhookevent/")
    assert response.status_code == 200 and b"reprocess" in response.content
    response = admin_client.post("/admin/vault_wallets/webhookevent/",
                                 {"action": "reprocess", "_selected_action": [event.pk]}, follow=True)
    assert response.status_code == 200
    event.refresh_from_db()
    assert event.status == "processed" and event.attempts == 2
    page = admin_client.get(f"/admin/vault_wallets/webhookevent/{event.pk}/change/").content.decode()
    assert headers["webhook-signature"].split(",", 1)[1] not in page


def test_sandbox_command_delivers_over_http(method, live_server):
    from io import StringIO

    out = StringIO()
    call_command("vault_sandbox", "noc", method.uid, "--exp-month", "9", "--exp-year", "2030",
                 "--url", f"{live_server.url}{URL}", stdout=out)
    assert "delivered provider.noc" in out.getvalue()
    method.refresh_from_db()
    assert (method.exp_month, method.exp_year) == (9, 2030)
    assert get_processor("default")  # the command used the configured account


def test_store_delivery_in_autocommit_and_inside_a_transaction(sandbox, monkeypatch):
    """The view stores in autocommit (one INSERT, enqueued at once); a caller's transaction keeps
    working after a duplicate (a savepoint), and its event is enqueued only when it commits."""
    from django.db import transaction

    from vault_wallets import tasks
    from vault_wallets.processors import base as p

    enqueued = []
    monkeypatch.setattr(tasks, "enqueue_event", lambda pk: enqueued.append(pk) or True)
    processor = get_processor("default")

    def store(event_id):
        headers, body = sandbox.make_webhook("something.else", {}, event_id=event_id)
        return events.store_delivery("default", processor, p.WebhookRequest(headers=headers, body=body),
                                     event_id, "something.else")

    first, created = store("evt_auto")
    assert created and enqueued == [first.pk]
    assert store("evt_auto") == (first, False) and enqueued == [first.pk]

    with transaction.atomic():
        second, created = store("evt_tx")
        again, created_again = store("evt_tx")
        assert created and not created_again and again.pk == second.pk
        assert WebhookEvent.objects.count() == 2  # still usable after the duplicate's IntegrityError
        assert enqueued == [first.pk]  # not before the commit
    assert enqueued == [first.pk, second.pk]


def test_admin_reprocess_of_a_chunked_event_processes_it_again(admin_client, customer, card_token, sandbox,
                                                                settings):
    """A large NOC's work lives in its chunks: reprocessing it must redo the chunks, not leave the
    event "received" with its old chunks (the sweeper skips chunked events, so it would stay so)."""
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "NOC_CHUNK_SIZE": 1}
    methods = [services.add_payment_method(customer, card_token(n))[0]
               for n in ("4242424242424242", "5555555555554444")]
    for m in methods:
        sandbox.network_update(m.processor_ref.method_id, exp_month=6, exp_year=2032)
    headers, body = sandbox.make_webhook("provider.noc",
                                         {"payment_method_ids": [m.processor_ref.method_id for m in methods]})
    post(body, headers)
    event = WebhookEvent.objects.get()
    assert event.status == "processed" and event.chunks.count() == 2
    # The processor's data changes again; staff reprocess the stored event.
    SavedPaymentMethod.objects.update(exp_year=2030)
    response = admin_client.post("/admin/vault_wallets/webhookevent/",
                                 {"action": "reprocess", "_selected_action": [event.pk]}, follow=True)
    assert response.status_code == 200
    event.refresh_from_db()
    assert event.status == "processed" and event.attempts == 2
    assert set(SavedPaymentMethod.objects.values_list("exp_year", flat=True)) == {2032}
    assert event.chunks.count() == 2 and set(event.chunks.values_list("status", flat=True)) == {"done"}
    page = admin_client.get(f"/admin/vault_wallets/webhookevent/{event.pk}/change/").content.decode()
    assert "Noc chunks" in page or "noc chunks" in page.lower()
    for chunk in event.chunks.all():  # the chunk's own size, never the methods' database ids
        assert f"[{methods[0].pk}" not in page and str(chunk.method_pks) not in page

