"""Standard Webhooks signing and verification of the sandbox processor (spec test vector included)."""

from __future__ import annotations

import time

import pytest

from vault_wallets.processors.base import WebhookParseError, WebhookRequest, WebhookVerificationError
from vault_wallets.processors.sandbox import SandboxProcessor

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def processor():
    return SandboxProcessor("default", {"WEBHOOK_SECRETS": [SPEC_SECRET]})


def test_standard_webhooks_spec_vector(processor):
    headers = processor.sign_webhook("msg_p5jXN8AQM9LWM0D4loKWxJek", b'{"test": 2432232314}', 1614265330)
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def delivery(processor, ts=None, body=b'{"id":"evt_1","type":"provider.noc","data":{}}'):
    return WebhookRequest(headers=processor.sign_webhook("evt_1", body, ts), body=body)


def test_fresh_delivery_verifies(processor):
    processor.verify_webhook(delivery(processor))
    assert processor.webhook_event_id(delivery(processor)) == ("evt_1", "provider.noc")


@pytest.mark.parametrize("offset", [-301, 301, -3600, 86400])
def test_stale_or_future_timestamp_is_rejected(processor, offset):
    with pytest.raises(WebhookVerificationError) as info:
        processor.verify_webhook(delivery(processor, int(time.time()) + offset))
    assert "timestamp" in info.value.reason


def test_rotation_accepts_any_configured_secret(processor):
    rotated = SandboxProcessor("default", {"WEBHOOK_SECRETS": ["whsec_bmV3LXNlY3JldC1ieXRlcw==", SPEC_SECRET]})
    rotated.verify_webhook(delivery(rotated))  # signed with the new secret
    rotated.verify_webhook(delivery(processor))  # still in flight, signed with the old one
    with pytest.raises(WebhookVerificationError):
        processor.verify_webhook(delivery(rotated))  # the old config does not know the new secret


@pytest.mark.parametrize("mutate", [
    lambda h: {k: v for k, v in h.items() if k != "webhook-signature"},
    lambda h: {**h, "webhook-signature": "garbage"},
    lambda h: {**h, "webhook-signature": "v1,!!!notbase64"},
    lambda h: {**h, "webhook-signature": "v2,abc v1"},
    lambda h: {**h, "webhook-timestamp": "yesterday"},
    lambda h: {**h, "webhook-id": "evt_other"},
])
def test_bad_headers_are_rejected_cleanly(processor, mutate):
    good = delivery(processor)
    with pytest.raises(WebhookVerificationError):
        processor.verify_webhook(WebhookRequest(headers=mutate(dict(good.headers)), body=good.body))


def test_tampered_body_is_rejected(processor):
    good = delivery(processor)
    with pytest.raises(WebhookVerificationError):
        processor.verify_webhook(WebhookRequest(headers=good.headers, body=good.body.replace(b"noc", b"xyz")))


def test_no_secret_rejects_everything(processor):
    with pytest.raises(WebhookVerificationError):
        SandboxProcessor("default", {}).verify_webhook(delivery(processor))


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"type":"x"}', b"\xff\xfe"])
def test_unparseable_bodies(processor, body):
    with pytest.raises(WebhookParseError):
        processor.webhook_event_id(WebhookRequest(headers={}, body=body))
