"""The shared processor conformance suite, run against the embedded sandbox processor."""

from __future__ import annotations

import pytest

from vault_wallets.processors import get_processor
from vault_wallets.processors.base import WebhookRequest
from vault_wallets.testing.conformance import (
    CARD_DECLINE,
    CARD_OK,
    CARD_OK_OTHER,
    ConformanceHarness,
    ProcessorConformance,
)

pytestmark = pytest.mark.django_db

CARDS = {CARD_OK: "4242424242424242", CARD_OK_OTHER: "5555555555554444", CARD_DECLINE: "4000000000000002"}


class SandboxHarness(ConformanceHarness):
    def __init__(self):
        self.processor = get_processor("default")
        self.processor.faults.reset()

    def temporary_token(self, card=CARD_OK):
        return self.processor.tokenize_card(CARDS[card], 12, 2034, "123", "Alex Morales")

    def network_update(self, customer, method, update):
        self.processor.network_update(method.method_id, exp_month=update.exp_month, exp_year=update.exp_year,
                                      last4=update.last4, closed=update.closed)

    def signed_update_webhook(self, customer, method):
        headers, body = self.processor.make_webhook(
            "provider.noc", {"customer_id": customer.id, "payment_method_ids": [method.method_id]})
        return WebhookRequest(headers=headers, body=body)

    def tamper(self, request):
        headers = dict(request.headers)
        headers["webhook-signature"] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        return WebhookRequest(headers=headers, body=request.body)

    def fail_next(self, status=503, count=10):
        self.processor.faults.fail_next(count)

    def hang_next(self, count=10):
        self.processor.faults.fail_next(count, kind="timeout")


class TestSandboxConformance(ProcessorConformance):
    @pytest.fixture
    def harness(self, db):
        harness = SandboxHarness()
        yield harness
        harness.processor.faults.reset()
