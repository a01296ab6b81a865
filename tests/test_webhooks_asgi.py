"""Webhook deliveries through Django's ASGI handler (uvicorn, daphne, hypercorn): the server
de-chunks a ``Transfer-Encoding: chunked`` body and Django holds all of it before the view, so a
chunked delivery without ``Content-Length`` is read, checked against the limit and stored — not
refused with 411 as it is under a WSGI server that does not de-chunk."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIHandler

from vault_wallets import services
from vault_wallets.models import WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/wallet/webhooks/default/"


@pytest.fixture
def method(customer, card_token):
    saved, _ = services.add_payment_method(customer, card_token())
    return saved


def asgi_post(body: bytes, headers: dict, *, chunked: bool) -> tuple[int, dict]:
    """POST through ``ASGIHandler`` as an ASGI server calls it: the body in several
    ``http.request`` messages; chunked = no ``content-length`` header, a ``transfer-encoding`` one."""
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-type", b"application/json"))
    raw.append((b"transfer-encoding", b"chunked") if chunked else (b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": URL, "raw_path": URL.encode(), "query_string": b"", "root_path": "",
             "headers": raw, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000)}
    pieces = [body[i:i + 100] for i in range(0, len(body), 100)] or [b""]
    messages = [{"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
                for i, piece in enumerate(pieces)]
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client stays connected (Django listens for a disconnect)

    async def send(message):
        sent.append(message)

    async_to_sync(ASGIHandler())(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(content)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_delivery_through_asgi_is_stored(method, sandbox, chunked):
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [method.processor_ref.method_id]},
                                         event_id=f"evt_asgi_{chunked}")
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    assert len(body) > 100  # delivered in more than one message
    status, answer = asgi_post(body, headers, chunked=chunked)
    assert status == 200, answer
    assert WebhookEvent.objects.filter(event_id=f"evt_asgi_{chunked}").count() == 1


def test_a_chunked_delivery_over_the_limit_through_asgi_is_refused(method, sandbox, settings):
    headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [method.processor_ref.method_id]},
                                         event_id="evt_asgi_over")
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "WEBHOOK_MAX_BODY_BYTES": len(body) - 1}
    status, answer = asgi_post(body, headers, chunked=True)
    assert status == 413 and answer["error"]["code"] == "payload_too_large"
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "WEBHOOK_MAX_BODY_BYTES": len(body)}
    status, answer = asgi_post(body, headers, chunked=True)
    assert status == 200, answer
    assert list(WebhookEvent.objects.values_list("event_id", flat=True)) == ["evt_asgi_over"]
