"""Webhook attack matrix: the sandbox's Standard Webhooks and the five processors' schemes, each
signed with its fake's own helper.  Every attack is a 4xx that stores nothing (ProcessOut's
unsigned deliveries are stored and then refused by the re-fetch, as its scheme prescribes);
replays are stored and processed once."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from django.test import Client

from vault_wallets.models import WebhookEvent
from vault_wallets.services.events import process_event

from .conftest import deep, post_webhook, record

pytestmark = pytest.mark.django_db

SCHEME_NAMES = ["sandbox", "paysimple", "processout", "cybersource", "exact", "caselle"]
AUTH_HEADERS = ("webhook-signature", "webhook-id", "webhook-timestamp", "paysimple-hmac-sha256", "v-c-signature",
                "x-exact-webhook-secret", "x-webhook-signature")


@pytest.fixture(params=SCHEME_NAMES)
def scheme(request, schemes):
    return next(s for s in schemes if s.name == request.param)


def send(scheme, body, headers=None, account=None):
    return post_webhook(Client(), scheme, body, scheme.delivery(body) if headers is None else headers, account)


def refused(category, response, code=None):
    record(f"webhook: {category}", response.status_code)
    assert 400 <= response.status_code < 500, (category, response.status_code, response.content[:200])
    assert response["Content-Type"].startswith("application/json")
    if code:
        assert response.json()["error"]["code"] == code, response.content


def test_valid_delivery_is_accepted(scheme):
    """The control: the signing helpers make deliveries the endpoint accepts."""
    response = send(scheme, scheme.body(event_id=f"ev_ok_{scheme.name}"))
    record("webhook: valid delivery (control)", response.status_code, refused=False)
    assert response.status_code == 200, response.content
    assert WebhookEvent.objects.get().event_id.startswith(f"ev_ok_{scheme.name}")


def test_forged(scheme, processout_fake):
    body = scheme.body(event_id=f"ev_forged_{scheme.name}")
    if not scheme.signed:
        # ProcessOut signs nothing: the delivery is stored, then the re-fetch does not know the event.
        response = send(scheme, body)
        assert response.status_code == 200
        event = WebhookEvent.objects.get()
        status = process_event(event.pk)
        record("webhook: forged", 200, refused=status == WebhookEvent.IGNORED)
        assert status == WebhookEvent.IGNORED and "not authenticated" in " ".join(event.__class__.objects.get(
            pk=event.pk).notes)
        return
    headers = scheme.delivery(body)
    if scheme.name != "exact":  # Exact signs nothing: its shared-secret header does not cover the body
        tampered = body.replace(b"ev_forged", b"ev_Forged")  # signed one body, sent another
        refused("forged", send(scheme, tampered, headers), "verification_failed")
    wrong = {k: (v[:-6] + ("000000" if not v.endswith("000000") else "111111")) if k in AUTH_HEADERS else v
             for k, v in headers.items()}
    refused("forged", send(scheme, body, wrong), "verification_failed")
    assert not WebhookEvent.objects.exists()


def test_missing_headers(scheme):
    if not scheme.signed:
        pytest.skip("ProcessOut deliveries carry no authentication headers")
    body = scheme.body()
    headers = scheme.delivery(body)
    for name in [h for h in headers if h in AUTH_HEADERS]:
        refused("missing headers", send(scheme, body, {k: v for k, v in headers.items() if k != name}))
    refused("missing headers", send(scheme, body, {"content-type": "application/json"}))
    assert not WebhookEvent.objects.exists()


def test_stale_and_future_timestamps(scheme):
    if scheme.tolerance is None:
        pytest.skip(f"{scheme.name}'s scheme has no timestamp (replays are stopped by de-duplication)")
    for offset in (-(scheme.tolerance + 600), scheme.tolerance + 600):
        ts = int(time.time()) + offset
        body = scheme.body(ts=ts)
        refused("stale/future timestamp", send(scheme, body, scheme.delivery(body, ts=ts)), "verification_failed")
    assert not WebhookEvent.objects.exists()


def test_twenty_replays_store_one_event(scheme):
    body = scheme.body(event_id=f"ev_replay_{scheme.name}")
    headers = scheme.delivery(body)
    answers = [send(scheme, body, headers) for _ in range(20)]
    for response in answers:
        record("webhook: 20 replays", response.status_code, refused=response.json().get("duplicate", False))
    assert [r.status_code for r in answers] == [200] * 20
    assert sum(not r.json()["duplicate"] for r in answers) == 1
    assert WebhookEvent.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
def test_twenty_concurrent_replays_store_one_event(scheme):
    body = scheme.body(event_id=f"ev_race_{scheme.name}")
    headers = scheme.delivery(body)
    barrier = threading.Barrier(20)

    def run(_):
        try:
            barrier.wait()
            return send(scheme, body, headers)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(run, range(20)))
    for response in answers:
        record("webhook: 20 concurrent replays", response.status_code,
               refused=response.json().get("duplicate", False))
    assert [r.status_code for r in answers] == [200] * 20
    assert sum(not r.json()["duplicate"] for r in answers) == 1
    assert WebhookEvent.objects.filter(account=scheme.account).count() == 1


def test_oversize(scheme, settings):
    limit = 64 * 1024
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "WEBHOOK_MAX_BODY_BYTES": limit}
    body = scheme.body(data=b'"' + b"x" * (limit + 10) + b'"')
    refused("oversize", send(scheme, body), "payload_too_large")
    # A lying Content-Length does not help: the body is read up to the limit and measured.
    response = Client().generic("POST", f"/wallet/webhooks/{scheme.account}/", b"", content_type="application/json",
                                **{"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": "100"})
    record("webhook: oversize", response.status_code)
    assert response.status_code == 400  # 100 bytes of a JSON document: not a valid delivery
    assert not WebhookEvent.objects.exists()


def test_chunked(scheme):
    body = scheme.body(event_id=f"ev_chunked_{scheme.name}")
    extra = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in scheme.delivery(body).items()
             if k != "content-type"}
    for terminated in (True, False):
        environ = {"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked",
                   **({"wsgi.input_terminated": True} if terminated else {})}
        response = Client().generic("POST", f"/wallet/webhooks/{scheme.account}/", b"",
                                    content_type="application/json", **extra, **environ)
        record("webhook: chunked", response.status_code, refused=not terminated)
        assert response.status_code == (200 if terminated else 411), response.content
    assert WebhookEvent.objects.get().event_id.startswith(f"ev_chunked_{scheme.name}")


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"\xff\xfe{}", b"", b"null"])
def test_non_json(scheme, raw):
    if scheme.name == "caselle" and raw:
        raw = raw + b' "timestamp": %d' % int(time.time())  # its timestamp is found, the body is still not JSON
    try:
        headers = scheme.delivery(raw)
    except (UnicodeDecodeError, AttributeError, ValueError):
        headers = scheme.delivery(scheme.body())  # a helper that cannot sign it: any valid-looking headers
    refused("non-JSON", send(scheme, raw, headers))
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("kind", ["nul-id", "surrogate-id", "nul-type", "surrogate-type", "nul-data",
                                  "surrogate-key", "deep"])
def test_hostile_json(scheme, kind):
    value = "ev_\u0000" if kind.startswith("nul") else "ev_\ud800"
    body = {
        "nul-id": lambda: scheme.body(event_id=value), "surrogate-id": lambda: scheme.body(event_id=value),
        "nul-type": lambda: scheme.body(event_type=value), "surrogate-type": lambda: scheme.body(event_type=value),
        "nul-data": lambda: scheme.body(data=b'{"note": "a\\u0000b"}'),
        "surrogate-key": lambda: scheme.body(data=b'{"\\udc00": 1}'),
        "deep": lambda: scheme.body(data=deep()),
    }[kind]()
    refused("NUL / surrogates / deep nesting", send(scheme, body), "malformed_payload")
    assert not WebhookEvent.objects.exists()


def test_unknown_account(scheme):
    body = scheme.body()
    refused("unknown account", send(scheme, body, account="no-such-account"), "unknown_account")
    refused("unknown account", send(scheme, body, account="%00"))
    assert not WebhookEvent.objects.exists()
