"""The webhook endpoint's cheaper path (issue #11) keeps the ORM's results: headers as Django
reads them, the body parsed once, the event row and instance as ``save()`` would make them."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from vault_wallets import safejson
from vault_wallets.models import WebhookEvent
from vault_wallets.webhooks import _headers

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def enqueued(monkeypatch):
    """The ids handed over for processing (the tests' eager Celery would process them inline)."""
    from vault_wallets import tasks

    handed = []
    monkeypatch.setattr(tasks, "enqueue_event", handed.append)
    return handed


def post(body: bytes, headers: dict):
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "content-type"}
    return APIClient().generic("POST", "/wallet/webhooks/default/", body, content_type="application/json", **extra)


def test_headers_are_djangos_headers_lower_cased():
    request = RequestFactory().post("/x/", b"{}", content_type="application/json; charset=utf-8",
                                    HTTP_WEBHOOK_ID="evt_1", HTTP_X_MULTI_WORD_NAME="v", HTTP_USER_AGENT="ua",
                                    CONTENT_LENGTH="2")
    assert _headers(request.META) == {k.lower(): v for k, v in request.headers.items()}
    assert _headers(request.META)["content-type"] == "application/json; charset=utf-8"


def test_the_body_is_parsed_once_per_delivery(sandbox, monkeypatch, enqueued):
    calls = []
    real = safejson.loads
    monkeypatch.setattr(safejson, "loads", lambda data, *a, **kw: calls.append(1) or real(data, *a, **kw))
    headers, body = sandbox.make_webhook("bench.ping", {"n": 1}, event_id="evt_once")
    assert post(body, headers).status_code == 200
    assert len(calls) == 1 and len(enqueued) == 1


def test_the_stored_event_is_what_save_would_store(sandbox, enqueued):
    headers, body = sandbox.make_webhook("bench.ping", {"n": 2}, event_id="evt_row")
    response = post(body, headers)
    assert response.status_code == 200
    assert response.json() == {"received": True, "id": response.json()["id"], "duplicate": False}
    stored = WebhookEvent.objects.get()
    assert enqueued == [stored.pk]
    assert stored.uid == response.json()["id"] and stored.uid.startswith("evt_")
    assert (stored.status, stored.attempts, stored.notes, stored.last_error, stored.last_traceback,
            stored.processed_at) == (WebhookEvent.RECEIVED, 0, [], "", "", None)
    assert stored.event_id == "evt_row" and stored.event_id_hash == WebhookEvent.hash_event_id("evt_row")
    assert stored.body == body.decode() and stored.headers["webhook-id"] == "evt_row"
    assert "webhook-signature" not in stored.headers
    assert stored.next_attempt_at > stored.received_at

    second_headers, second_body = sandbox.make_webhook("bench.ping", {"n": 3}, event_id="evt_row_2")
    from vault_wallets.processors import base as p
    from vault_wallets.services import events

    delivery = p.WebhookRequest(headers=second_headers, body=second_body, remote_addr="127.0.0.1")
    event, created = events.store_delivery("default", sandbox, delivery, "evt_row_2", "bench.ping")
    fresh = WebhookEvent.objects.get(pk=event.pk)
    assert created and not event._state.adding and event._state.db == "default"
    names = [f.attname for f in WebhookEvent._meta.concrete_fields]
    assert {n: getattr(event, n) for n in names} == {n: getattr(fresh, n) for n in names}
