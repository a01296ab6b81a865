"""The processor conformance suite, shared by every processor and subclassed once per processor.

Like django-anymail's shared backend tests: a processor module is correct when this suite
passes against it.  A subclass provides one fixture, ``harness``, returning a
``ConformanceHarness`` — the processor instance configured against its running fake plus the
few things only the fake side can do (tokenize a test card the way the processor's browser
library would, change a card as the card network would, sign a webhook).  Everything goes
over the processor's real client code; nothing is patched::

    class TestPaySimple(ProcessorConformance):
        @pytest.fixture
        def harness(self, paysimple_fake):
            return PaySimpleHarness(paysimple_fake)

The service-level half of the suite (nothing written locally when the processor is down)
lives in the project's tests, on the same harnesses.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from vault_wallets.processors import base
from vault_wallets.processors.base import (
    BaseProcessor,
    ChargeRequest,
    CustomerData,
    CustomerRef,
    MethodRef,
    ProcessorUnavailable,
    VaultedMethod,
    VaultRequest,
    WebhookRequest,
    WebhookVerificationError,
)

if TYPE_CHECKING:
    from vault_wallets.testing.server import FakeServer, Faults

#: Card kinds a harness must be able to tokenize.
CARD_OK = "ok"  # vaults and charges successfully
CARD_OK_OTHER = "ok_other"  # another good card (different brand or number)
CARD_DECLINE = "decline"  # vaults; charges are declined


@dataclass
class NetworkUpdate:
    exp_month: int
    exp_year: int
    last4: str | None = None
    closed: bool = False


class ConformanceHarness:
    """What a processor's test module provides; see the module docstring.

    A harness whose ``fake`` is the running ``FakeServer`` gets ``fail_next`` and ``hang_next``
    from the fake's ``faults``; set ``hang_seconds`` above the processor's read timeout.
    """

    processor: BaseProcessor
    #: The running fake the processor talks to; the default ``fail_next``/``hang_next`` use its faults.
    fake: FakeServer | None = None
    #: How long ``hang_next`` holds a request: longer than the processor's read timeout.
    hang_seconds = 1.5
    #: The processor refunds (or credits) captured charges.
    supports_refund = True
    #: ``charge(capture=False)`` then ``capture`` works.
    supports_authorize = True
    #: An authorization can be voided (with ``supports_authorize``).
    supports_void = True
    #: Charging with ``method=None`` charges the customer's default method.
    supports_charge_default = True

    def temporary_token(self, card: str = CARD_OK) -> str:
        """Tokenize a test card as the processor's browser library would; return the temporary token."""
        raise NotImplementedError

    #: The browser's result already names the vaulted method (PaySimpleJS's account id).
    browser_token_is_vaulted = False

    def browser_token(self, customer: CustomerRef, card: str = CARD_OK) -> str:
        """What the checkout page submits for ``customer`` after the processor's browser library
        tokenized a test card.  Defaults to ``temporary_token``; processors whose library works
        for one customer (PaySimpleJS under a customer token) override it."""
        return self.temporary_token(card)

    def network_update(self, customer: CustomerRef, method: VaultedMethod, update: NetworkUpdate) -> None:
        """Change the card at the processor, as an account updater / network token update would."""
        raise NotImplementedError

    def signed_update_webhook(self, customer: CustomerRef, method: VaultedMethod) -> WebhookRequest:
        """A correctly authenticated delivery announcing that ``method`` changed."""
        raise NotImplementedError

    def tamper(self, request: WebhookRequest) -> WebhookRequest:
        """The same delivery with its authentication broken (bad signature or missing secret).

        Processors whose webhooks are unsigned (ProcessOut) return a delivery naming an
        event the processor does not know, which the re-fetch must refuse.
        """
        raise NotImplementedError

    def fail_next(self, status: int = 503, count: int = 10) -> None:
        """Make the next requests answer ``status`` in the processor's own error shape."""
        self._faults().fail_next(status, count)

    def hang_next(self, count: int = 10) -> None:
        """Make the next requests take longer than the processor's read timeout (``hang_seconds``)."""
        self._faults().hang_next(self.hang_seconds, count)

    def _faults(self) -> Faults:
        if self.fake is None:
            raise NotImplementedError("set ``fake`` to the running FakeServer, or override fail_next/hang_next")
        return self.fake.faults


def _ref(customer) -> CustomerRef:
    return CustomerRef(id=customer.id, secret=customer.secret)


class ProcessorConformance:
    """Shared tests; subclass and provide the ``harness`` fixture."""

    @pytest.fixture
    def harness(self) -> ConformanceHarness:  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.fixture
    def processor(self, harness) -> BaseProcessor:
        return harness.processor

    @pytest.fixture
    def customer(self, processor):
        return processor.create_customer(
            CustomerData(reference_id=f"ref-{uuid.uuid4().hex[:12]}", name="Alex Morales",
                         email="alex@example.com", currency="USD")
        )

    def vault(self, harness, customer, card=CARD_OK, **kwargs) -> VaultedMethod:
        return harness.processor.vault_payment_method(
            VaultRequest(customer=_ref(customer), temporary_token=harness.browser_token(_ref(customer), card),
                         **kwargs)
        )

    # -- customers ---------------------------------------------------------------------
    def test_create_customer_and_recreate_by_reference(self, processor):
        data = CustomerData(reference_id=f"ref-{uuid.uuid4().hex[:12]}", name="Alex Morales",
                            email="alex@example.com", currency="USD")
        first = processor.create_customer(data)
        assert first.id
        again = processor.create_customer(data)
        assert again.id == first.id

    # -- methods -----------------------------------------------------------------------
    def test_vault_returns_permanent_token_and_display_data(self, harness, customer):
        temporary = harness.browser_token(_ref(customer), CARD_OK)
        method = harness.processor.vault_payment_method(
            VaultRequest(customer=_ref(customer), temporary_token=temporary)
        )
        assert method.token and (method.token != temporary or harness.browser_token_is_vaulted)
        assert method.method_type == base.METHOD_CARD
        assert len(method.last4) == 4 and method.last4.isdigit()
        assert method.brand
        assert 1 <= (method.exp_month or 0) <= 12 and (method.exp_year or 0) >= 2000
        assert method.verification_status in base.VERIFICATION_STATUSES
        assert method.status == base.METHOD_ACTIVE
        assert method.token not in repr(method)
        assert method.token not in repr(dict(method.raw))

    def test_same_card_twice_has_the_same_fingerprint(self, harness, customer):
        one = self.vault(harness, customer, CARD_OK)
        two = self.vault(harness, customer, CARD_OK)
        other = self.vault(harness, customer, CARD_OK_OTHER)
        assert one.fingerprint and one.fingerprint == two.fingerprint
        assert other.fingerprint != one.fingerprint

    def test_list_and_delete(self, harness, customer):
        one = self.vault(harness, customer, CARD_OK)
        two = self.vault(harness, customer, CARD_OK_OTHER)
        listed = {m.method_id for m in harness.processor.list_payment_methods(_ref(customer))}
        assert {one.method_id, two.method_id} <= listed
        harness.processor.delete_payment_method(_ref(customer), one.ref)
        listed = {m.method_id for m in harness.processor.list_payment_methods(_ref(customer))}
        assert one.method_id not in listed and two.method_id in listed

    def test_set_default(self, harness, customer):
        self.vault(harness, customer, CARD_OK)
        two = self.vault(harness, customer, CARD_OK_OTHER)
        harness.processor.set_default_payment_method(_ref(customer), two.ref)
        methods = harness.processor.list_payment_methods(_ref(customer))
        defaults = [m.method_id for m in methods if m.is_default]
        assert defaults == [two.method_id]

    # -- money -------------------------------------------------------------------------
    def test_charge_captures(self, harness, customer):
        method = self.vault(harness, customer)
        result = harness.processor.charge(ChargeRequest(
            customer=_ref(customer), method=method.ref, amount=1999, currency="USD",
            idempotency_key=uuid.uuid4().hex, reference="order-1"))
        assert result.status == base.CHARGE_CAPTURED
        assert result.amount == 1999 and result.reference

    def test_authorize_then_capture(self, harness, customer):
        if not harness.supports_authorize:
            pytest.skip("this processor has no separate authorization")
        method = self.vault(harness, customer)
        auth = harness.processor.charge(ChargeRequest(
            customer=_ref(customer), method=method.ref, amount=2500, currency="USD", capture=False,
            idempotency_key=uuid.uuid4().hex))
        assert auth.status == base.CHARGE_AUTHORIZED
        captured = harness.processor.capture(auth.reference, 2500, idempotency_key=uuid.uuid4().hex)
        assert captured.status == base.CHARGE_CAPTURED

    def test_authorize_then_void(self, harness, customer):
        if not (harness.supports_authorize and harness.supports_void):
            pytest.skip("this processor cannot void an authorization")
        method = self.vault(harness, customer)
        auth = harness.processor.charge(ChargeRequest(
            customer=_ref(customer), method=method.ref, amount=700, currency="USD", capture=False,
            idempotency_key=uuid.uuid4().hex))
        voided = harness.processor.void(auth.reference, idempotency_key=uuid.uuid4().hex)
        assert voided.status == base.CHARGE_VOIDED

    def test_charge_the_default_method(self, harness, customer):
        if not harness.supports_charge_default:
            pytest.skip("this processor cannot charge a customer's default method")
        method = self.vault(harness, customer)
        harness.processor.set_default_payment_method(_ref(customer), method.ref)
        result = harness.processor.charge(ChargeRequest(
            customer=_ref(customer), method=None, amount=1234, currency="USD",
            idempotency_key=uuid.uuid4().hex))
        assert result.status == base.CHARGE_CAPTURED

    def test_decline_is_a_result(self, harness, customer):
        method = self.vault(harness, customer, CARD_DECLINE)
        result = harness.processor.charge(ChargeRequest(
            customer=_ref(customer), method=method.ref, amount=1000, currency="USD",
            idempotency_key=uuid.uuid4().hex))
        assert result.status == base.CHARGE_DECLINED
        assert result.failure_code or result.failure_message

    def test_refund(self, harness, customer):
        if not harness.supports_refund:
            pytest.skip("this processor has no refunds")
        method = self.vault(harness, customer)
        result = harness.processor.charge(ChargeRequest(
            customer=_ref(customer), method=method.ref, amount=3000, currency="USD",
            idempotency_key=uuid.uuid4().hex))
        refunded = harness.processor.refund(result.reference, 3000, idempotency_key=uuid.uuid4().hex)
        assert refunded.status == base.CHARGE_REFUNDED
        assert refunded.amount_refunded == 3000

    # -- browser -----------------------------------------------------------------------
    def test_client_token(self, processor, customer):
        token = processor.get_client_token(_ref(customer))
        if processor.supports_client_token:
            assert token is not None and token.token
            assert token.token not in repr(token)
        else:
            assert token is None

    # -- webhooks and changes ----------------------------------------------------------
    def test_webhook_authenticated(self, harness, customer):
        method = self.vault(harness, customer)
        delivery = harness.signed_update_webhook(_ref(customer), method)
        harness.processor.verify_webhook(delivery)
        event_id, _type = harness.processor.webhook_event_id(delivery)
        assert event_id
        events = harness.processor.parse_webhook(delivery)
        assert events and all(e.type in base.EVENT_TYPES for e in events)

    def test_webhook_rejected_when_tampered(self, harness, customer):
        method = self.vault(harness, customer)
        delivery = harness.tamper(harness.signed_update_webhook(_ref(customer), method))
        with pytest.raises(WebhookVerificationError):
            harness.processor.verify_webhook(delivery)
            # Processors that authenticate by re-fetching refuse while parsing.
            harness.processor.parse_webhook(delivery)

    def test_network_update_is_seen_by_fetch(self, harness, customer):
        method = self.vault(harness, customer)
        assert (method.exp_month, method.exp_year) != (3, 2036)
        harness.network_update(_ref(customer), method, NetworkUpdate(exp_month=3, exp_year=2036))
        fresh = harness.processor.fetch_payment_method(_ref(customer), method.ref)
        assert (fresh.exp_month, fresh.exp_year) == (3, 2036)
        delivery = harness.signed_update_webhook(_ref(customer), method)
        events = harness.processor.parse_webhook(delivery)
        named = {mid for e in events for mid in e.payment_method_ids}
        assert method.method_id in named

    # -- failures ----------------------------------------------------------------------
    def test_5xx_is_unavailable(self, harness, customer):
        harness.fail_next(503)
        with pytest.raises(ProcessorUnavailable):
            harness.processor.list_payment_methods(_ref(customer))

    def test_timeout_is_unavailable(self, harness, customer):
        harness.hang_next()
        with pytest.raises(ProcessorUnavailable):
            harness.processor.list_payment_methods(_ref(customer))

    def test_no_secret_in_logs_or_errors(self, harness, customer, caplog):
        caplog.set_level(logging.DEBUG)
        method = self.vault(harness, customer)
        harness.fail_next(400, count=1)
        with pytest.raises(base.ProcessorError) as info:
            harness.processor.fetch_payment_method(_ref(customer), MethodRef(token=method.token,
                                                                              method_id=method.method_id))
        text = caplog.text + str(info.value) + repr(info.value)
        for secret in [method.token, *_option_secrets(harness.processor)]:
            assert secret not in text


def _option_secrets(processor: BaseProcessor) -> list[str]:
    return [str(processor.options[k]) for k in processor.secret_options if processor.options.get(k)]
