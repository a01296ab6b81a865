"""Event processing and webhook reception pinned where mutation testing found them loose (issue 13).

Two events present when one is processed (a lost ``pk=`` picks the other), processed events
left alone unless forced, a closed card never chargeable, and the body limit on both sides.
"""

from __future__ import annotations

import io

import pytest
from django.test import Client
from rest_framework.test import APIClient

from vault_wallets import services, signals
from vault_wallets.exceptions import PaymentMethodNotChargeable
from vault_wallets.models import PaymentMethodChange, SavedPaymentMethod, WebhookEvent
from vault_wallets.processors import base as p
from vault_wallets.services import events

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/wallet/webhooks/default/"


def post(body: bytes, headers: dict, url=URL, **extra):
    meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "content-type"}
    return APIClient().generic("POST", url, body, content_type="application/json", **meta, **extra)


@pytest.fixture
def method(customer, card_token):
    saved, _ = services.add_payment_method(customer, card_token())
    return saved


def _stored(sandbox, method, event_id, settings):
    """Store a NOC delivery without processing it (the broker is 'down': nothing is enqueued)."""
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [method.processor_ref.method_id]},
                                         event_id=event_id)
    request = p.WebhookRequest(headers=headers, body=body, remote_addr="127.0.0.1", received_at=None)
    processor = sandbox
    event_id, event_type = processor.webhook_event_id(request)
    event, created = events.store_delivery("default", processor, request, event_id, event_type)
    assert created
    return event


def test_processing_one_event_leaves_the_other_alone(method, sandbox, settings, monkeypatch):
    monkeypatch.setattr("vault_wallets.tasks.enqueue_event", lambda pk: False)
    older = _stored(sandbox, method, "evt_older", settings)
    newer = _stored(sandbox, method, "evt_newer", settings)
    assert events.process_event(older.pk) == WebhookEvent.PROCESSED
    older.refresh_from_db()
    newer.refresh_from_db()
    assert older.status == WebhookEvent.PROCESSED and older.attempts == 1
    assert newer.status == WebhookEvent.RECEIVED and newer.attempts == 0
    assert events.process_event(newer.pk) == WebhookEvent.PROCESSED


def test_a_processed_event_is_processed_again_only_when_forced(method, sandbox, settings, monkeypatch):
    monkeypatch.setattr("vault_wallets.tasks.enqueue_event", lambda pk: False)
    event = _stored(sandbox, method, "evt_once", settings)
    received = []

    def listener(sender, event, **kwargs):
        received.append(event)

    signals.vault_event.connect(listener)
    try:
        assert events.process_event(event.pk) == WebhookEvent.PROCESSED
        assert len(received) == 1
        assert events.process_event(event.pk) == WebhookEvent.PROCESSED
        event.refresh_from_db()
        assert event.attempts == 1 and len(received) == 1  # not again
        assert events.process_event(event.pk, force=True) == WebhookEvent.PROCESSED
        event.refresh_from_db()
        assert event.attempts == 2 and len(received) == 2
    finally:
        signals.vault_event.disconnect(listener)


def test_a_closed_card_is_never_chargeable_again(customer, method, card_token, sandbox):
    other, _ = services.add_payment_method(customer, card_token("5555555555554444"))
    sandbox.network_update(method.processor_ref.method_id, closed=True)
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [method.processor_ref.method_id]})
    assert post(body, headers).status_code == 200
    method.refresh_from_db()
    other.refresh_from_db()
    assert method.status == p.METHOD_CLOSED and not method.is_default and not method.is_chargeable
    assert other.is_default  # the next chargeable method was promoted
    with pytest.raises(PaymentMethodNotChargeable):
        services.charge(customer, 100, "USD", method.uid, idempotency_key="after-close")
    with pytest.raises(PaymentMethodNotChargeable):
        services.set_default_payment_method(customer, method.uid)
    assert PaymentMethodChange.objects.filter(payment_method=method, after__status="closed").exists()
    assert SavedPaymentMethod.objects.filter(customer=customer, is_default=True).count() == 1


def _send(body: bytes, headers: dict, chunked: bool):
    meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "content-type"}
    if chunked:  # what gunicorn hands over for a chunked request: the de-chunked stream, no CONTENT_LENGTH
        meta.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked",
                     "wsgi.input_terminated": True})
        return Client().generic("POST", URL, b"", content_type="application/json", **meta)
    return Client().generic("POST", URL, body, content_type="application/json", **meta)


@pytest.mark.parametrize("chunked", [False, True])
def test_the_body_limit_admits_exactly_the_limit(method, sandbox, settings, chunked):
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [method.processor_ref.method_id]},
                                        event_id=f"evt_limit_{chunked}")
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "WEBHOOK_MAX_BODY_BYTES": len(body)}
    at_limit = _send(body, headers, chunked)
    assert at_limit.status_code == 200, at_limit.content
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "WEBHOOK_MAX_BODY_BYTES": len(body) - 1}
    over = _send(body, headers, chunked)
    assert over.status_code == 413 and over.json()["error"]["code"] == "payload_too_large"


class _Stream(io.BytesIO):
    """A de-chunked request body as the server hands it to Django, counting the bytes taken from it."""

    taken = 0

    def read(self, size=-1, /):
        data = super().read(size)
        self.taken += len(data)
        return data


def test_a_chunked_body_over_the_limit_is_refused_after_reading_the_limit(method, sandbox, settings):
    """A chunked delivery has no Content-Length to refuse it by: a sender streaming far more than the
    limit gets 413 once limit + 1 bytes were read (not after the server buffered all of it), and a
    correctly signed delivery over the limit is not stored."""
    ids = [method.processor_ref.method_id] * 40
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": ids}, event_id="evt_chunked_over")
    limit = 256
    assert len(body) > 4 * limit
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "WEBHOOK_MAX_BODY_BYTES": limit}
    stream = _Stream(body)
    meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "content-type"}
    meta.update({"wsgi.input": stream, "CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked",
                 "wsgi.input_terminated": True})
    response = Client().generic("POST", URL, b"", content_type="application/json", **meta)
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert stream.taken <= limit + 1
    assert not WebhookEvent.objects.exists()


def test_a_body_declared_over_the_limit_is_refused_unread(method, sandbox, settings):
    """A Content-Length over the limit is refused from the header alone: nothing of the body is read."""
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [method.processor_ref.method_id]},
                                        event_id="evt_declared_over")
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "WEBHOOK_MAX_BODY_BYTES": len(body) - 1}
    stream = _Stream(body)
    meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "content-type"}
    meta.update({"wsgi.input": stream, "CONTENT_LENGTH": str(len(body))})
    response = Client().generic("POST", URL, b"", content_type="application/json", **meta)
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert stream.taken == 0
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("content_length", [None, "twelve"])
def test_a_body_of_unknown_length_is_read_as_empty_and_refused_as_a_bad_delivery(method, sandbox, content_length):
    """No Content-Length and no Transfer-Encoding means no body (HTTP/1.1); an unreadable Content-Length
    leaves Django nothing to read either.  Either way the delivery is an empty body whose signature does
    not match: a 400, not "send a Content-Length" (411) and never a 500."""
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [method.processor_ref.method_id]},
                                        event_id="evt_no_length")
    meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "content-type"}
    if content_length is None:
        response = Client().generic("POST", URL, b"", content_type="application/json", **meta)
    else:
        response = Client().generic("POST", URL, body, content_type="application/json", CONTENT_LENGTH=content_length,
                                    **meta)
    assert response.status_code == 400 and response.json()["error"]["code"] == "verification_failed"
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("event_id, stored", [
    ("evt_ctl\x01", False), ("evt_ctl\x1f", False), ("evt_line\nbreak", False), ("evt with a space", True),
    ("evt_del\x7f", False), ("evt_c1\x80", False), ("evt_c1\x9f", False), ("evt_nbsp\xa0é~", True),
])
def test_an_event_id_is_stored_only_without_control_characters(method, sandbox, event_id, stored):
    """A correctly signed delivery whose event id holds a control character (C0 under U+0020, DEL,
    C1 U+0080–U+009F) is refused with the reason; printable ids, spaces included, are stored."""
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [method.processor_ref.method_id]},
                                        event_id=event_id)
    response = post(body, headers)
    if stored:
        assert response.status_code == 200, response.content
        assert WebhookEvent.objects.filter(event_id=event_id).exists()
    else:
        assert response.status_code == 400
        assert response.json()["error"] == {
            "code": "malformed_payload",
            "message": "the event id or type holds control characters or lone surrogates"}
        assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("claimed", [("evt_typed", ["provider.noc"]), (12345, "provider.noc"),
                                     ("evt_typed", "provider.noc\ttab")])
def test_an_event_id_or_type_that_is_not_clean_text_is_refused(method, sandbox, monkeypatch, claimed):
    """Whatever a processor module hands back as the id and type of a signed delivery, only clean text
    is stored: anything else is a 400 that says which part is at fault."""
    monkeypatch.setattr(type(sandbox), "webhook_event_id", lambda self, request: claimed)
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [method.processor_ref.method_id]})
    response = post(body, headers)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "malformed_payload", "message": "the event id or type holds control characters or lone surrogates"}
    assert not WebhookEvent.objects.exists()
