"""Caselle Payments API: the shared conformance suite plus Caselle-specific behaviour.

Everything runs over real HTTP against ``CaselleFake``; nothing is patched.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests

from vault_wallets.processors import base
from vault_wallets.processors.base import (
    AuthenticationError,
    ChargeRequest,
    CustomerData,
    CustomerRef,
    InvalidRequestError,
    MethodRef,
    NotFoundError,
    ProcessorUnavailable,
    TemporaryTokenError,
    UnsupportedOperation,
    VaultRequest,
    VerificationFailedError,
    WebhookParseError,
    WebhookRequest,
    WebhookVerificationError,
)
from vault_wallets.processors.caselle import (
    DEFAULT_WEBHOOK_TOLERANCE,
    CaselleProcessor,
    ImportItem,
    decode_browser_token,
    encode_browser_token,
)
from vault_wallets.testing.conformance import (
    CARD_DECLINE,
    CARD_OK,
    CARD_OK_OTHER,
    ConformanceHarness,
    NetworkUpdate,
    ProcessorConformance,
)
from vault_wallets.testing.fakes import caselle as caselle_fakes
from vault_wallets.testing.fakes.caselle import CaselleFake
from vault_wallets.testing.server import running

caselle_fake = caselle_fakes.caselle_fake  # the fixture

CARDS = {CARD_OK: "4242424242424242", CARD_OK_OTHER: "5555555555554444", CARD_DECLINE: "4000000000000002"}


def options_for(fake: CaselleFake, **extra) -> dict:
    return {
        "CLIENT_ID": fake.client_id,
        "CLIENT_SECRET": fake.client_secret,
        "PAYMENT_ACCOUNT_UID": fake.payment_account_uid,
        "AUTH_URL": fake.url,
        "BASE_URL": fake.url,
        "WEBHOOK_SECRET": fake.webhook_secret,
        "TIMEOUT": (2, 0.5),
        "RETRIES": 1,
        **extra,
    }


def delivery(headers: dict, body: bytes) -> WebhookRequest:
    return WebhookRequest(headers=headers, body=body)


class CaselleHarness(ConformanceHarness):
    # charge(capture=False) + capture work, but Caselle has no void.
    supports_authorize = True
    supports_void = False
    supports_refund = True
    supports_charge_default = True
    hang_seconds = 1.0

    def __init__(self, fake: CaselleFake, **extra):
        self.fake = fake
        self.processor = CaselleProcessor("caselle-test", options_for(fake, **extra))

    def temporary_token(self, card: str = CARD_OK) -> str:
        return self.fake.tokenize_card(CARDS[card], 12, 2031, "123", "Alex Morales")

    def network_update(self, customer, method, update: NetworkUpdate) -> None:
        self.fake.network_update(
            method.method_id,
            exp_month=update.exp_month,
            exp_year=update.exp_year,
            last4=update.last4,
            closed=update.closed,
        )

    def signed_update_webhook(self, customer, method) -> WebhookRequest:
        return delivery(*self.fake.noc_delivery(customer.id, [method.method_id]))

    def tamper(self, request: WebhookRequest) -> WebhookRequest:
        signature = request.headers["x-webhook-signature"]
        flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
        return WebhookRequest(headers={**request.headers, "x-webhook-signature": flipped}, body=request.body)


class TestCaselleConformance(ProcessorConformance):
    @pytest.fixture
    def harness(self, caselle_fake):
        return CaselleHarness(caselle_fake)


# --------------------------------------------------------------------------------------
# Caselle-specific
# --------------------------------------------------------------------------------------


@pytest.fixture
def harness(caselle_fake):
    return CaselleHarness(caselle_fake)


@pytest.fixture
def processor(harness):
    return harness.processor


@pytest.fixture
def customer(processor):
    created = processor.create_customer(
        CustomerData(
            reference_id=f"ref-{uuid.uuid4().hex[:10]}", name="Alex Morales", email="alex@example.com"
        )
    )
    return CustomerRef(id=created.id)


def vault(harness, customer, card=CARD_OK, **kwargs):
    return harness.processor.vault_payment_method(
        VaultRequest(customer=customer, temporary_token=harness.temporary_token(card), **kwargs)
    )


def charge(processor, method, amount=1999, **kwargs):
    return processor.charge(
        ChargeRequest(
            customer=CustomerRef(id="unused"), method=method.ref, amount=amount, currency="usd", **kwargs
        )
    )


def api_calls(fake, method, path_prefix):
    return [c for c in fake.calls if c[0] == method and c[1].startswith(path_prefix)]


# -- authentication ----------------------------------------------------------------------


def test_token_request_is_basic_client_credentials_with_the_documented_scope():
    with running(CaselleFake, client_id="my-client", client_secret="my-secret") as fake:
        processor = CaselleProcessor("x", options_for(fake))
        processor.find_customer("nobody")
        (token_request,) = fake.token_requests
        # base64("my-client:my-secret"), computed independently.
        assert token_request.header("Authorization") == "Basic bXktY2xpZW50Om15LXNlY3JldA=="
        assert token_request.header("Content-Type") == "application/x-www-form-urlencoded"
        assert token_request.body == b"grant_type=client_credentials&scope=com.govineer.payments%2Fadmin"
        api_request = fake.received[-1]
        assert api_request.header("Authorization").startswith("Bearer eyJ")
        assert api_request.header("X-Payment-Account-Uid") == fake.payment_account_uid


def test_access_token_is_cached_and_shared_by_threads(caselle_fake, processor, customer):
    errors = []

    def work():
        try:
            processor.list_payment_methods(customer)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(caselle_fake.token_requests) == 1
    tokens = {r.header("Authorization") for r in caselle_fake.received if r.path.startswith("/api/")}
    assert len(tokens) == 1


def test_token_is_refreshed_before_it_expires(caselle_fake, processor):
    caselle_fake.token_ttl = 1  # refreshed after half its life when it is shorter than the margin
    processor.find_customer("a")
    processor.find_customer("b")
    assert len(caselle_fake.token_requests) == 1
    time.sleep(0.6)
    processor.find_customer("c")
    assert len(caselle_fake.token_requests) == 2


def test_a_401_refreshes_the_token_once_and_repeats_the_call(caselle_fake, processor, customer):
    caselle_fake.revoke_access_tokens()
    assert processor.list_payment_methods(customer) == []
    assert len(caselle_fake.token_requests) == 2
    statuses = [s for m, p, s in caselle_fake.calls if p.endswith("/payment-methods")]
    assert statuses == [401, 200]


def test_a_second_401_is_an_authentication_error(caselle_fake, processor, customer):
    caselle_fake.revoke_access_tokens()
    caselle_fake.token_ttl = -10  # every new token is already expired: the API keeps answering 401
    with pytest.raises(AuthenticationError) as info:
        processor.list_payment_methods(customer)
    assert info.value.message == "Unauthorized" and info.value.http_status == 401
    assert len(caselle_fake.token_requests) == 2  # one refresh, not a loop


def test_wrong_client_secret_is_an_authentication_error_without_the_secret(caselle_fake):
    processor = CaselleProcessor("x", options_for(caselle_fake, CLIENT_SECRET="wrong-secret-value"))
    with pytest.raises(AuthenticationError) as info:
        processor.find_customer("x")
    assert info.value.code == "invalid_client"
    assert "wrong-secret-value" not in str(info.value) + repr(info.value)


def test_fake_answers_with_caselle_shapes(caselle_fake):
    bad_basic = requests.post(
        f"{caselle_fake.url}/oauth2/token",
        auth=("nobody", "nope"),
        data={"grant_type": "client_credentials"},
        timeout=5,
    )
    assert (bad_basic.status_code, bad_basic.json()) == (400, {"error": "invalid_client"})
    no_bearer = requests.get(f"{caselle_fake.url}/api/customers", timeout=5)
    assert (no_bearer.status_code, no_bearer.json()) == (401, {"message": "Unauthorized"})
    token = requests.post(
        f"{caselle_fake.url}/oauth2/token",
        auth=(caselle_fake.client_id, caselle_fake.client_secret),
        data={"grant_type": "client_credentials"},
        timeout=5,
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "X-Payment-Account-Uid": caselle_fake.payment_account_uid}
    unknown = requests.post(
        f"{caselle_fake.url}/api/customers",
        headers=headers,
        timeout=5,
        json={"reference_id": "r1", "name": "A", "nickname": "x"},
    )
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "validation_error" and "nickname" in unknown.json()["message"]
    other_account = requests.get(
        f"{caselle_fake.url}/api/customers",
        timeout=5,
        headers={**headers, "X-Payment-Account-Uid": "pa_other"},
    )
    assert other_account.status_code == 403


def test_check_options(caselle_fake):
    assert CaselleProcessor("x", options_for(caselle_fake)).check_options() == []
    problems = CaselleProcessor(
        "x", {"BASE_URL": "http://api.example.com", "WEBHOOK_TOLERANCE": "soon"}
    ).check_options()
    assert "OPTIONS is missing 'CLIENT_SECRET'" in problems
    assert any("BASE_URL" in p and "https" in p for p in problems)
    assert any("WEBHOOK_TOLERANCE" in p for p in problems)


# -- customers -----------------------------------------------------------------------------


def test_create_conflict_fetches_the_existing_customer_by_filter(caselle_fake, processor):
    data = CustomerData(reference_id="o'brien-42", name="Pat O'Brien")
    first = processor.create_customer(data)
    again = processor.create_customer(data)
    assert again.id == first.id and again.id.startswith("cus_")
    assert [s for m, p, s in caselle_fake.calls if p == "/api/customers"] == [201, 409, 200]
    lookup = caselle_fake.received[-1]
    assert lookup.query == {"$filter": "reference_id eq 'o''brien-42'", "$top": "1"}


def test_update_and_delete_customer(caselle_fake, processor, customer):
    updated = processor.update_customer(customer, CustomerData(reference_id="ignored", name="New Name"))
    assert updated.raw["name"] == "New Name" and updated.raw["email"] == "alex@example.com"
    processor.delete_customer(customer)
    with pytest.raises(NotFoundError):
        processor.list_payment_methods(customer)


# -- payment methods -------------------------------------------------------------------------


def test_save_sends_exactly_the_documented_fields(caselle_fake, harness, customer):
    method = vault(harness, customer, holder_name="A. Morales")
    request = next(
        r for r in caselle_fake.received if r.method == "POST" and r.path.endswith("/payment-methods")
    )
    sent = json.loads(request.body)["payment_method"]
    assert sent["payment_method_type"] == "credit"
    assert set(sent["credit"]) == {
        "fingerprint",
        "last4",
        "exp_month",
        "exp_year",
        "bin",
        "card_brand",
        "holder_name",
    }
    assert sent["credit"]["fingerprint"].startswith("prx_") and sent["credit"]["holder_name"] == "A. Morales"
    assert method.method_id.startswith("spm_") and method.token.startswith("ptk_")
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == ("VISA", "4242", 12, 2031)
    assert method.is_default  # the first saved method is the default
    assert "fingerprint" not in json.dumps(dict(method.raw))


def test_browser_token_round_trip_and_rejections():
    token = encode_browser_token(
        "credit",
        {
            "fingerprint": "prx_1",
            "last4": "4242",
            "exp_month": 1,
            "exp_year": 2030,
            "extra": "dropped",
            "bin": "",
        },
    )
    assert decode_browser_token(token) == (
        "credit",
        {"fingerprint": "prx_1", "last4": "4242", "exp_month": 1, "exp_year": 2030},
    )
    for bad in (
        "",
        "prx_123",
        "cstk1.%%%",
        "cstk1." + base64.urlsafe_b64encode(b"[1]").decode(),
        encode_browser_token("credit", {"fingerprint": "prx_1", "last4": "4242"}),
    ):
        with pytest.raises(TemporaryTokenError):
            decode_browser_token(bad)
    wrong_type = (
        "cstk1."
        + base64.urlsafe_b64encode(
            json.dumps(
                {
                    "payment_method_type": "credit",
                    "credit": {"fingerprint": "p", "last4": "1", "exp_month": "12", "exp_year": 2030},
                }
            ).encode()
        ).decode()
    )
    with pytest.raises(TemporaryTokenError, match="exp_month"):
        decode_browser_token(wrong_type)


def test_used_expired_and_forged_temporary_tokens(caselle_fake, harness, processor, customer):
    token = harness.temporary_token()
    processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=token))
    with pytest.raises(TemporaryTokenError) as used:
        processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=token))
    assert used.value.message == "the proxynized token is unknown, expired or already used"
    assert used.value.code == "invalid_payment_token" and used.value.http_status == 400

    expired = harness.temporary_token()
    caselle_fake.expire_proxynized_tokens()
    with pytest.raises(TemporaryTokenError):
        processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=expired))

    _, details = decode_browser_token(harness.temporary_token())
    forged = encode_browser_token("credit", {**details, "last4": "0000"})
    with pytest.raises(InvalidRequestError, match="does not match the tokenized credit"):
        processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=forged))

    posts_before = len(api_calls(caselle_fake, "POST", "/api/customers/"))
    with pytest.raises(TemporaryTokenError):
        processor.vault_payment_method(VaultRequest(customer=customer, temporary_token="tok_not_caselle"))
    assert len(api_calls(caselle_fake, "POST", "/api/customers/")) == posts_before  # refused locally


def test_expired_card_is_a_verification_failure(caselle_fake, processor, customer):
    token = caselle_fake.tokenize_card("4242424242424242", 1, 2020)
    with pytest.raises(VerificationFailedError) as info:
        processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=token))
    assert info.value.code == "expired_card" and info.value.message == "the card has expired"


def test_ach_vault_and_charge(caselle_fake, processor, customer):
    token = caselle_fake.tokenize_bank_account("021000021", "000123456789", "savings", "Alex Morales")
    method = processor.vault_payment_method(
        VaultRequest(customer=customer, temporary_token=token, method_type=base.METHOD_ACH)
    )
    assert method.method_type == base.METHOD_ACH
    assert (method.last4, method.account_type, method.bank_name) == ("6789", "savings", "Fake Community Bank")
    result = charge(processor, method, 5000)
    assert result.status == base.CHARGE_CAPTURED
    sent = json.loads(next(r for r in caselle_fake.received if r.path == "/api/payments").body)
    assert sent["payment_method"]["payment_method_type"] == "wallet_ach"
    assert result.raw["processing_fee_amount"] == CaselleFake.ACH_FEE
    with pytest.raises(InvalidRequestError) as mismatch:  # a bank token offered as a card
        processor.vault_payment_method(
            VaultRequest(
                customer=customer,
                temporary_token=caselle_fake.tokenize_bank_account("021000021", "000123456789"),
            )
        )
    assert mismatch.value.code == "method_type_mismatch"
    returned = processor.vault_payment_method(
        VaultRequest(
            customer=customer,
            temporary_token=caselle_fake.tokenize_bank_account("021000021", "55550002"),
            method_type=base.METHOD_ACH,
        )
    )
    assert charge(processor, returned).status == base.CHARGE_DECLINED


def test_make_default_and_network_closure(caselle_fake, harness, processor, customer):
    vault(harness, customer)
    other = vault(harness, customer, CARD_OK_OTHER, make_default=True)
    assert other.is_default
    assert [m.method_id for m in processor.list_payment_methods(customer) if m.is_default] == [
        other.method_id
    ]
    caselle_fake.network_update(other.method_id, closed=True)
    fresh = processor.fetch_payment_method(customer, other.ref)
    assert fresh.status == base.METHOD_CLOSED and fresh.token == other.token
    (event,) = processor.parse_webhook(delivery(*caselle_fake.noc_delivery(customer.id, [other.method_id])))
    assert event.type == base.EVENT_PAYMENT_METHOD_CLOSED and event.payment_method_ids == (other.method_id,)
    assert event.customer_id == customer.id
    closed_charge = charge(processor, other)
    assert closed_charge.status == base.CHARGE_DECLINED and closed_charge.failure_code == "card_declined"


def test_fetch_unknown_method_is_not_found(processor, customer):
    with pytest.raises(NotFoundError):
        processor.fetch_payment_method(customer, MethodRef(token="ptk_x", method_id="spm_missing"))


def test_import_payment_methods(caselle_fake, processor, customer):
    result = processor.import_payment_methods(
        customer,
        [
            ImportItem(
                token="legacy-card-token",
                last4="1111",
                exp_month=3,
                exp_year=2030,
                bin="411111",
                brand="VISA",
            ),
            ImportItem(
                token="legacy-bank-token",
                method_type=base.METHOD_ACH,
                routing_number="021000021",
                account_number_suffix="4321",
                account_type="checking",
            ),
            ImportItem(token="legacy-old-card", last4="2222", exp_month=1, exp_year=2019),
        ],
    )
    assert [(m.method_type, m.last4) for m in result.methods] == [
        (base.METHOD_CARD, "1111"),
        (base.METHOD_ACH, "4321"),
    ]
    assert [(f.index, f.code) for f in result.failures] == [(2, "expired_card")]
    assert {m["token"] for m in caselle_fake.saved_methods.values()} == {
        "legacy-card-token",
        "legacy-bank-token",
    }
    imported = result.methods[0]
    assert charge(processor, imported, 1000).status == base.CHARGE_CAPTURED
    assert "legacy-card-token" not in repr(ImportItem(token="legacy-card-token"))
    assert processor.import_payment_methods(customer, []).methods == ()


# -- money -----------------------------------------------------------------------------------


def test_amounts_are_integer_cents_with_the_quoted_fee(caselle_fake, harness, processor, customer):
    method = vault(harness, customer)
    result = charge(processor, method, 12345, reference="order-77")
    payment = caselle_fake.payments[result.reference]
    assert (payment["base_amount"], payment["tax_amount"], payment["currency"]) == (12345, 0, "USD")
    assert payment["reference_id"] == "order-77"
    assert result.amount == result.amount_captured == 12345
    assert result.raw["processing_fee_amount"] == 309  # 2.5 % of 123.45, rounded half up
    assert result.raw["total_amount"] == 12654
    capture_body = json.loads(next(r for r in caselle_fake.received if r.path.endswith("/capture")).body)
    assert capture_body["processing_fee_amount"] == 309 and capture_body["base_amount"] == 12345
    for bad in (0, -5, 12.5, True, "100"):
        with pytest.raises(InvalidRequestError):
            charge(processor, method, bad)


def test_validate_then_capture_and_what_capture_refuses(caselle_fake, harness, processor, customer):
    method = vault(harness, customer)
    auth = charge(processor, method, 2500, capture=False)
    assert auth.status == base.CHARGE_AUTHORIZED and auth.reference.startswith("pay_")
    assert caselle_fake.payments[auth.reference]["status"] == "validated"
    with pytest.raises(InvalidRequestError) as partial:
        processor.capture(auth.reference, 2000)
    assert partial.value.code == "partial_capture_unsupported"
    captured = processor.capture(auth.reference, 2500, idempotency_key="cap-1")
    assert captured.status == base.CHARGE_CAPTURED and captured.amount_captured == 2500
    assert (
        processor.capture(auth.reference).status == base.CHARGE_CAPTURED
    )  # already captured: no second capture
    assert len(api_calls(caselle_fake, "POST", f"/api/payments/{auth.reference}/capture")) == 1
    with pytest.raises(UnsupportedOperation):
        processor.void(auth.reference)


def test_declines_and_processor_failures_are_results(caselle_fake, harness, processor, customer):
    declined = charge(processor, vault(harness, customer, CARD_DECLINE))
    assert (declined.status, declined.failure_code, declined.failure_message) == (
        base.CHARGE_DECLINED,
        "card_declined",
        "The card was declined.",
    )
    assert declined.reference.startswith("pay_")
    failing = processor.vault_payment_method(
        VaultRequest(
            customer=customer, temporary_token=caselle_fake.tokenize_card("4000000000001216", 12, 2031)
        )
    )
    failed = charge(processor, failing)
    assert (failed.status, failed.failure_code) == (base.CHARGE_FAILED, "processing_error")
    caselle_fake.faults.decline_all = True
    assert charge(processor, vault(harness, customer)).status == base.CHARGE_DECLINED


def test_charge_default_needs_a_default(caselle_fake, processor, customer):
    with pytest.raises(InvalidRequestError) as info:
        processor.charge(ChargeRequest(customer=customer, amount=100, currency="USD"))
    assert info.value.code == "no_default_method"


def test_partial_then_full_refund(caselle_fake, harness, processor, customer):
    paid = charge(processor, vault(harness, customer), 3000)
    partial = processor.refund(paid.reference, 1000, idempotency_key="r-1")
    assert (partial.status, partial.amount_refunded) == (base.CHARGE_REFUNDED, 1000)
    assert caselle_fake.payments[paid.reference]["status"] == "partially_refunded"
    rest = processor.refund(paid.reference)
    assert rest.amount_refunded == 3000
    with pytest.raises(InvalidRequestError) as info:
        processor.refund(paid.reference, 1)
    assert info.value.code == "invalid_state" and info.value.http_status == 409


def test_error_message_is_caselles_own(caselle_fake, processor, customer):
    with pytest.raises(NotFoundError) as info:
        processor.refund("pay_does_not_exist")
    assert (info.value.message, info.value.code) == ("payment not found", "not_found")


# -- retries and idempotency -------------------------------------------------------------------


def test_post_without_idempotency_key_is_not_retried(caselle_fake, harness, processor, customer):
    method = vault(harness, customer)
    caselle_fake.faults.fail_next(503, count=1)
    with pytest.raises(ProcessorUnavailable):
        charge(processor, method)
    assert [s for m, p, s in api_calls(caselle_fake, "POST", "/api/payments")] == [503]


def test_post_with_idempotency_key_is_retried_and_replayed(caselle_fake, harness, processor, customer):
    method = vault(harness, customer)
    caselle_fake.faults.fail_next(503, count=1)
    first = charge(processor, method, idempotency_key="order-9-attempt-1")
    assert first.status == base.CHARGE_CAPTURED
    assert [s for m, p, s in api_calls(caselle_fake, "POST", "/api/payments")] == [503, 201, 200]
    keys = [r.header("Idempotency-Key") for r in caselle_fake.received if r.path.startswith("/api/payments")]
    assert keys == ["order-9-attempt-1-validate", "order-9-attempt-1-capture"]  # (the 503 was not handled)
    again = charge(processor, method, idempotency_key="order-9-attempt-1")
    assert again.reference == first.reference and len(caselle_fake.payments) == 1


def test_idempotency_header_can_be_disabled(caselle_fake, harness, customer):
    processor = CaselleHarness(caselle_fake, IDEMPOTENCY_HEADER="").processor
    method = processor.vault_payment_method(
        VaultRequest(customer=customer, temporary_token=harness.temporary_token())
    )
    charge(processor, method, idempotency_key="k")
    assert not any(r.header("Idempotency-Key") for r in caselle_fake.received)


def test_get_is_retried_on_503(caselle_fake, processor, customer):
    processor.list_payment_methods(customer)
    caselle_fake.faults.fail_next(503, count=1)
    assert processor.list_payment_methods(customer) == []


# -- webhooks ----------------------------------------------------------------------------------


def test_fetch_webhook_secret_verifies_deliveries(caselle_fake):
    processor = CaselleProcessor("x", options_for(caselle_fake, WEBHOOK_SECRET=None))
    secret = processor.fetch_webhook_secret()
    assert secret == caselle_fake.webhook_secret
    configured = CaselleProcessor("x", options_for(caselle_fake, WEBHOOK_SECRET=secret))
    configured.verify_webhook(delivery(*caselle_fake.webhook_delivery("payment.completed", {})))
    with pytest.raises(WebhookVerificationError, match="no webhook secret"):
        processor.verify_webhook(delivery(*caselle_fake.webhook_delivery("payment.completed", {})))


def test_signature_scheme_exact_vector(caselle_fake):
    # HMAC-SHA256 hex over "<timestamp>.<raw body>", secret as UTF-8 (Caselle's webhook guide); the
    # expected value was computed independently (openssl dgst -sha256 -hmac whsec_test).
    body = b'{"webhook_id":"evt_1","event_type":"payment.completed","timestamp":1781200800,"data":{}}'
    expected = "e1e4b45ac31171ca8c15c7f770384bc527299b8c9203450e564bb5911ffd9345"
    assert caselle_fake.sign(body, 1781200800, "whsec_test") == "sha256=" + expected
    processor = CaselleProcessor("x", {"WEBHOOK_SECRET": "whsec_test", "WEBHOOK_TOLERANCE": 10})
    at = datetime.fromtimestamp(1781200805, timezone.utc)
    for header in (expected, "sha256=" + expected, " SHA256=" + expected.upper() + " "):
        processor.verify_webhook(
            WebhookRequest(headers={"x-webhook-signature": header}, body=body, received_at=at)
        )
    # The raw body alone (no timestamp) is not what Caselle signs.
    import hashlib
    import hmac

    body_only = hmac.new(b"whsec_test", body, hashlib.sha256).hexdigest()
    with pytest.raises(WebhookVerificationError, match="bad signature"):
        processor.verify_webhook(
            WebhookRequest(headers={"x-webhook-signature": body_only}, body=body, received_at=at)
        )


@pytest.mark.parametrize(
    "header, reason",
    [
        (None, "missing signature"),
        ("", "missing signature"),
        ("sha256=", "malformed signature"),
        ("sha256=zz" + "0" * 62, "malformed signature"),
        ("t=1,v1=abc", "malformed signature"),
        ("sha256=" + "0" * 64, "bad signature"),
        ("\u00e9\u00e9", "malformed signature"),
    ],
)
def test_bad_or_malformed_signature_headers(caselle_fake, processor, header, reason):
    headers, body = caselle_fake.webhook_delivery("payment.completed", {})
    headers = {k: v for k, v in headers.items() if k != "x-webhook-signature"}
    if header is not None:
        headers["x-webhook-signature"] = header
    with pytest.raises(WebhookVerificationError) as info:
        processor.verify_webhook(WebhookRequest(headers=headers, body=body))
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"webhook_id": "e", "timestamp": "soon"}',
        b'{"webhook_id": "e", "timestamp": true}',
        b"\xff\xfe",
    ],
)
def test_malformed_bodies_fail_verification(caselle_fake, processor, body):
    headers = {"x-webhook-signature": "sha256=" + "a" * 64}
    with pytest.raises(WebhookVerificationError):
        processor.verify_webhook(WebhookRequest(headers=headers, body=body))


def test_stale_and_future_timestamps(caselle_fake, processor):
    now = int(time.time())
    for offset in (DEFAULT_WEBHOOK_TOLERANCE + 60, -(DEFAULT_WEBHOOK_TOLERANCE + 60)):
        with pytest.raises(WebhookVerificationError, match="tolerance"):
            processor.verify_webhook(
                delivery(*caselle_fake.webhook_delivery("payment.completed", {}, timestamp=now + offset))
            )
    processor.verify_webhook(
        delivery(*caselle_fake.webhook_delivery("payment.completed", {}, timestamp=now - 3600))
    )
    strict = CaselleProcessor("x", options_for(caselle_fake, WEBHOOK_TOLERANCE=300))
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        strict.verify_webhook(
            delivery(*caselle_fake.webhook_delivery("payment.completed", {}, timestamp=now - 301))
        )


def test_configurable_header_and_secret_rotation(caselle_fake):
    processor = CaselleProcessor(
        "x",
        options_for(
            caselle_fake,
            WEBHOOK_SIGNATURE_HEADER="X-Govifi-Signature",
            WEBHOOK_SECRET=["new-secret", caselle_fake.webhook_secret],
        ),
    )
    headers, body = caselle_fake.webhook_delivery("payment.completed", {})
    with pytest.raises(WebhookVerificationError, match="missing"):
        processor.verify_webhook(WebhookRequest(headers=headers, body=body))
    processor.verify_webhook(
        WebhookRequest(headers={"x-govifi-signature": headers["x-webhook-signature"]}, body=body)
    )


def test_event_mapping(caselle_fake, harness, processor, customer):
    paid = charge(processor, vault(harness, customer))
    expected = {
        "payment.completed": base.EVENT_CHARGE_SUCCEEDED,
        "payment.failed": base.EVENT_CHARGE_FAILED,
        "payment.refunded": base.EVENT_CHARGE_REFUNDED,
        "provider.nsf": base.EVENT_CHARGE_FAILED,
        "provider.reversal": base.EVENT_CHARGE_FAILED,
    }
    for event_type, normalized in expected.items():
        request = delivery(
            *caselle_fake.payment_delivery(event_type, paid.reference, webhook_id=f"evt_{event_type}")
        )
        processor.verify_webhook(request)
        assert processor.webhook_event_id(request) == (f"evt_{event_type}", event_type)
        (event,) = processor.parse_webhook(request)
        assert (event.type, event.charge_reference) == (normalized, paid.reference)
        assert event.data["base_amount"] == 1999 and event.occurred_at is not None
    for event_type in ("provider.chargeback", "checkout_session.completed", "ivr.completed"):
        (event,) = processor.parse_webhook(delivery(*caselle_fake.webhook_delivery(event_type, {"x": 1})))
        assert event.type == base.EVENT_UNKNOWN and event.processor_event_type == event_type
    (noc,) = processor.parse_webhook(delivery(*caselle_fake.noc_delivery(customer.id, ["spm_a", "spm_b"])))
    assert noc.type == base.EVENT_PAYMENT_METHOD_UPDATED and noc.payment_method_ids == ("spm_a", "spm_b")


def test_event_id_needs_a_parsable_body(processor):
    for body in (b"{", b'{"event_type": "payment.completed"}'):
        with pytest.raises(WebhookParseError):
            processor.webhook_event_id(WebhookRequest(headers={}, body=body))


# -- secrets ------------------------------------------------------------------------------------


def test_no_secret_in_logs_or_errors_across_a_flow(caselle_fake, harness, caplog):
    caplog.set_level(logging.DEBUG)
    processor = harness.processor
    customer = CustomerRef(id=processor.create_customer(CustomerData(reference_id="secret-flow")).id)
    temporary = harness.temporary_token()
    method = processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=temporary))
    charge(processor, method, idempotency_key="k1")
    access_token = processor._tokens.current
    caselle_fake.faults.fail_next(400, count=1)
    with pytest.raises(base.ProcessorError) as info:
        processor.list_payment_methods(customer)
    bad = CaselleProcessor("x", options_for(caselle_fake, CLIENT_SECRET="another-secret"))
    with pytest.raises(AuthenticationError) as auth:
        bad.find_customer("x")
    text = caplog.text + str(info.value) + repr(info.value) + str(auth.value) + repr(processor)
    for secret in (
        caselle_fake.client_secret,
        "another-secret",
        access_token,
        method.token,
        temporary,
        caselle_fake.webhook_secret,
    ):
        assert secret not in text
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("vault_wallets"))
    assert customer.id not in ours and method.method_id not in ours  # only route templates are logged
    assert "/api/customers/{customer}/payment-methods" in ours
