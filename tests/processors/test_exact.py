"""Exact Payments: the shared conformance suite plus Exact's own rules, over real HTTP to the fake."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from datetime import date

import pytest
import requests

from vault_wallets.processors import base
from vault_wallets.processors.base import (
    AddressData,
    AuthenticationError,
    ChargeRequest,
    CustomerData,
    CustomerRef,
    InvalidRequestError,
    NotFoundError,
    ProcessorUnavailable,
    TemporaryTokenError,
    VaultRequest,
    VerificationFailedError,
    WebhookParseError,
    WebhookRequest,
    WebhookVerificationError,
)
from vault_wallets.processors.exact import ExactProcessor, alpha3, cents, error_message, sanitize
from vault_wallets.testing.conformance import (
    CARD_DECLINE,
    CARD_OK,
    CARD_OK_OTHER,
    ConformanceHarness,
    NetworkUpdate,
    ProcessorConformance,
)
from vault_wallets.testing.fakes import exact as exact_fakes
from vault_wallets.testing.fakes.exact import ExactFake
from vault_wallets.testing.server import running

exact_fake = exact_fakes.exact_fake  # the shared fixture

EXP_YEAR = date.today().year + 3
TEST_NUMBERS = {CARD_OK: "4111111111111111", CARD_OK_OTHER: "5500000000000004",
                CARD_DECLINE: "4000000000000002"}


def fake_options(fake: ExactFake, **extra) -> dict:
    return {"API_TOKEN": fake.API_TOKEN, "BASE_URL": fake.url, "WEBHOOK_HEADER": fake.WEBHOOK_HEADER,
            "WEBHOOK_SECRET": fake.WEBHOOK_SECRET, "TIMEOUT": (2, 0.5), "RETRIES": 1, **extra}


def tokenize(fake: ExactFake, number: str, cvc: str = "123") -> str:
    response = requests.post(f"{fake.url}/_fake/tokens", timeout=5, json={
        "number": number, "exp_month": 12, "exp_year": EXP_YEAR, "cvc": cvc, "holder_name": "Alex Morales"})
    response.raise_for_status()
    return response.json()["token"]


def delivery(fake: ExactFake, event: dict, **header_overrides) -> WebhookRequest:
    headers, body = fake.webhook_delivery(event)
    headers = {k.lower(): v for k, v in headers.items()}
    headers.update({k.lower(): v for k, v in header_overrides.items()})
    return WebhookRequest(headers=headers, body=body)


class ExactHarness(ConformanceHarness):
    hang_seconds = 2.0

    def __init__(self, fake: ExactFake, **options):
        self.fake = fake
        self.processor = ExactProcessor("exact-test", fake_options(fake, **options))

    def temporary_token(self, card: str = CARD_OK) -> str:
        return tokenize(self.fake, TEST_NUMBERS[card])

    def network_update(self, customer, method, update: NetworkUpdate) -> None:
        self.fake.network_update(customer.id, method.token, update.exp_month, update.exp_year,
                                 update.last4, update.closed)

    def signed_update_webhook(self, customer, method) -> WebhookRequest:
        names = ("payment-methods.update", "payment-methods.delete")
        event = next((e for e in reversed(self.fake.events)
                      if e["event"] in names and e["resources"].get("paymentMethod") == method.token), None)
        if event is None:
            event = self.fake.record_event("payment-methods.update", customer=customer.id,
                                           paymentMethod=method.token)
        return delivery(self.fake, event)

    def tamper(self, request: WebhookRequest) -> WebhookRequest:
        name = self.fake.WEBHOOK_HEADER.lower()
        headers = {**request.headers, name: "not-" + request.headers[name]}
        return WebhookRequest(headers=headers, body=request.body)


@pytest.fixture
def harness(exact_fake):
    return ExactHarness(exact_fake)


@pytest.fixture
def processor(harness):
    return harness.processor


@pytest.fixture
def customer(processor):
    return processor.create_customer(CustomerData(reference_id=f"ref-{uuid.uuid4().hex[:12]}",
                                                  name="Alex Morales", email="alex@example.com"))


def ref(customer) -> CustomerRef:
    return CustomerRef(id=customer.id, secret=customer.secret)


def vault(harness, customer, number="4111111111111111", **kwargs):
    return harness.processor.vault_payment_method(VaultRequest(
        customer=ref(customer), temporary_token=tokenize(harness.fake, number), **kwargs))


def pay(processor, customer, method=None, amount=1000, **kwargs):
    return processor.charge(ChargeRequest(customer=ref(customer), method=method and method.ref, amount=amount,
                                          currency="USD", **kwargs))


class TestExactConformance(ProcessorConformance):
    @pytest.fixture
    def harness(self, exact_fake):
        return ExactHarness(exact_fake)


# -- authentication --------------------------------------------------------------------------


class HeaderRecordingFake(ExactFake):
    def reset(self):
        super().reset()
        self.authorizations = []

    def authenticate(self, request):
        self.authorizations.append(request.header("authorization"))
        return super().authenticate(request)


def test_sends_the_raw_token_without_a_scheme():
    with running(HeaderRecordingFake) as fake, pytest.raises(NotFoundError):
        ExactProcessor("a", fake_options(fake)).list_payment_methods(CustomerRef(id="64af8f0906"))
    # The customer does not exist: what matters is the header the fake saw.
    assert fake.authorizations == ["exact-fake-application-token-7d3f9a2c41b8"]


def test_fake_accepts_the_older_basic_scheme_and_rejects_others(exact_fake):
    basic = "Basic ZXhhY3QtZmFrZS1hcHBsaWNhdGlvbi10b2tlbi03ZDNmOWEyYzQxYjg6"  # base64("{API_KEY}:")
    assert basic == "Basic " + base64.b64encode(f"{exact_fake.API_TOKEN}:".encode()).decode()
    ok = requests.get(f"{exact_fake.url}/customer", headers={"Authorization": basic}, timeout=5)
    assert ok.status_code == 200 and ok.json() == []
    for wrong in (f"Bearer {exact_fake.API_TOKEN}", "Basic " + base64.b64encode(b"nope:").decode(),
                  "Basic %%%", "", exact_fake.API_TOKEN + "x"):
        denied = requests.get(f"{exact_fake.url}/customer", headers={"Authorization": wrong}, timeout=5)
        assert denied.status_code == 401
        body = denied.json()
        assert body["type"] == "authentication-error" and body["code"] == "unauthorized"
        assert body["message"] and uuid.UUID(body["requestId"])


def test_bad_token_is_an_authentication_error_without_the_token(exact_fake, caplog):
    caplog.set_level(logging.DEBUG)
    processor = ExactProcessor("a", fake_options(exact_fake, API_TOKEN="wrong-token-0123456789"))
    with pytest.raises(AuthenticationError) as info:
        processor.create_customer(CustomerData(reference_id="r1", name="A"))
    assert info.value.http_status == 401
    assert "Missing or invalid authorization token" in info.value.message
    assert "wrong-token-0123456789" not in caplog.text + str(info.value) + repr(processor)


def test_partner_routes_are_prefixed_with_the_account(exact_fake):
    processor = ExactProcessor("a", fake_options(exact_fake, ACCOUNT_ID=exact_fake.ACCOUNT_ID))
    customer = processor.create_customer(CustomerData(reference_id="partner-1", name="P"))
    assert processor.list_payment_methods(ref(customer)) == []
    paths = [path for _method, path, _status in exact_fake.calls]
    assert paths and all(path.startswith(f"/account/{exact_fake.ACCOUNT_ID}/") for path in paths)
    other = ExactProcessor("a", fake_options(exact_fake, ACCOUNT_ID="000000000000000000000000"))
    with pytest.raises(AuthenticationError, match="Account not found"):
        other.list_payment_methods(ref(customer))


def test_missing_token_fails_before_any_request(exact_fake):
    processor = ExactProcessor("a", {"BASE_URL": exact_fake.url})
    with pytest.raises(AuthenticationError):
        processor.list_payment_methods(CustomerRef(id="x"))
    assert exact_fake.calls == []


# -- customers ---------------------------------------------------------------------------------


def test_customer_token_is_the_secret_and_never_in_raw_or_repr(processor, exact_fake, customer):
    stored = exact_fake.customers[customer.id]
    assert customer.secret == stored["token"]
    assert "token" not in customer.raw and stored["token"] not in repr(customer)
    assert [a["label"][:len("vault_wallets:ref-")] for a in stored["addresses"]] == ["vault_wallets:ref-"]


def test_recreate_finds_a_customer_beyond_the_first_page(processor, exact_fake):
    data = CustomerData(reference_id="ref-early", name="Early", email="early@example.com")
    first = processor.create_customer(data)
    for index in range(101):
        processor.create_customer(CustomerData(reference_id=f"filler-{index}", name="Filler"))
    exact_fake.calls.clear()
    again = processor.create_customer(data)
    assert again.id == first.id and again.secret == first.secret
    lists = [path for method, path, _ in exact_fake.calls if method == "GET"]
    assert lists == ["/customer", "/customer"]  # two pages of 100, newest first
    assert ("POST", "/customer", 201) not in exact_fake.calls


def test_reference_lookup_can_be_disabled(exact_fake):
    processor = ExactProcessor("a", fake_options(exact_fake, REFERENCE_LOOKUP_LIMIT=0))
    data = CustomerData(reference_id="dup", name="Dup")
    assert processor.create_customer(data).id != processor.create_customer(data).id


def test_update_keeps_the_reference_marker_and_sends_alpha3_countries(processor, exact_fake, customer):
    data = CustomerData(reference_id="ref-upd", name="New Name", email="new@example.com", phone="5551234567",
                        address=AddressData(line1="7272 Indian School Dr", city="Scottsdale", state="AZ",
                                            postal_code="85251", country="US", label="Work"))
    updated = processor.update_customer(ref(customer), data)
    stored = exact_fake.customers[customer.id]
    assert updated.id == customer.id and updated.secret == customer.secret
    assert stored["name"] == "New Name" and stored["addresses"][0]["country"] == "USA"
    assert stored["addresses"][1] == {"label": "vault_wallets:ref-upd", "isDefault": False}
    assert processor.create_customer(data).id == customer.id
    assert alpha3("ca") == "CAN" and alpha3("CAN") == "CAN" and alpha3("") == ""


def test_delete_customer_is_idempotent(processor, exact_fake, customer):
    processor.delete_customer(ref(customer))
    processor.delete_customer(ref(customer))
    assert customer.id not in exact_fake.customers


# -- payment methods -------------------------------------------------------------------------------


def test_vaulted_method_display_data_and_sanitized_raw(harness, customer):
    method = vault(harness, customer, label="My Visa Card")
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == ("visa", "1111", 12, EXP_YEAR)
    assert method.method_id == method.token and method.is_default  # the first linked method is the default
    assert method.verification_status == base.VERIFICATION_SUCCESS  # cvcCheck full-match
    assert method.fingerprint.startswith("derived:") and "1111" not in method.fingerprint
    assert method.raw["label"] == "My Visa Card" and "token" not in method.raw
    no_cvc = harness.processor.vault_payment_method(VaultRequest(
        customer=ref(customer), temporary_token=tokenize(harness.fake, "6011000000000004", cvc="")))
    assert no_cvc.verification_status == base.VERIFICATION_NOT_REQUESTED and not no_cvc.is_default


def test_temporary_tokens_are_single_use_and_expire(harness, customer, monkeypatch):
    token = tokenize(harness.fake, "4111111111111111")
    request = VaultRequest(customer=ref(customer), temporary_token=token)
    harness.processor.vault_payment_method(request)
    with pytest.raises(TemporaryTokenError) as info:
        harness.processor.vault_payment_method(request)
    assert "token: Payment method token is invalid, expired or already used" in info.value.message
    assert token not in info.value.message
    monkeypatch.setattr(harness.fake, "TEMPORARY_TOKEN_TTL", -1)
    with pytest.raises(TemporaryTokenError):
        vault(harness, customer)
    with pytest.raises(TemporaryTokenError):
        harness.processor.vault_payment_method(VaultRequest(customer=ref(customer),
                                                            temporary_token=str(uuid.uuid4())))


def test_refused_verification(harness, customer):
    with pytest.raises(VerificationFailedError, match="could not be verified"):
        vault(harness, customer, "4000000000000127")


def test_vault_for_an_unknown_customer_is_not_found(harness):
    with pytest.raises(NotFoundError):
        vault(harness, CustomerRef(id="64af8f090674c4d267779e4d"))


def test_network_update_to_a_past_expiry_marks_the_method_expired(harness, customer):
    method = vault(harness, customer)
    harness.fake.network_update(customer.id, method.token, 1, 2020, last4="4321")
    fresh = harness.processor.fetch_payment_method(ref(customer), method.ref)
    assert (fresh.status, fresh.last4, fresh.exp_year) == (base.METHOD_EXPIRED, "4321", 2020)


def test_delete_method_is_idempotent_and_fetch_after_is_not_found(harness, customer):
    method = vault(harness, customer)
    harness.processor.delete_payment_method(ref(customer), method.ref)
    harness.processor.delete_payment_method(ref(customer), method.ref)
    with pytest.raises(NotFoundError):
        harness.processor.fetch_payment_method(ref(customer), method.ref)


# -- money ---------------------------------------------------------------------------------------


def test_amounts_are_integer_cents_and_validated_before_any_request(harness, customer):
    method = vault(harness, customer)
    result = pay(harness.processor, customer, method, amount=1999, reference="order-7",
                 idempotency_key="idem-1")
    sent = harness.fake.payments[result.reference]
    assert sent["amount"] == 1999 and isinstance(sent["amount"], int)
    assert sent["reference"] == {"referenceNo": "order-7", "correlationId": "idem-1"}
    assert (result.amount, result.amount_captured, result.currency) == (1999, 1999, "USD")
    calls = len(harness.fake.calls)
    for bad in (19.99, True, 0, -5):
        with pytest.raises(InvalidRequestError, match="whole number"):
            pay(harness.processor, customer, method, amount=bad)
    with pytest.raises(InvalidRequestError, match="charges in USD"):
        harness.processor.charge(ChargeRequest(customer=ref(customer), method=method.ref, amount=100,
                                               currency="EUR"))
    assert len(harness.fake.calls) == calls
    assert (cents(1999.0), cents("1999"), cents(None, 5), cents(True, 7), cents("x", 3)) == (
        1999, 1999, 5, 7, 3)


def test_charge_default_uses_the_customer_token_and_fetches_it_when_missing(harness, customer):
    vault(harness, customer)
    second = vault(harness, customer, "5500000000000004", make_default=True)
    result = harness.processor.charge(ChargeRequest(customer=CustomerRef(id=customer.id), amount=500,
                                                    currency="USD"))
    assert result.status == base.CHARGE_CAPTURED
    assert harness.fake.payments[result.reference]["paymentMethodDetails"]["last4"] == second.last4
    assert ("GET", f"/customer/{customer.id}", 200) in harness.fake.calls


def test_gateway_failure_amount_is_an_invalid_request_with_exacts_message(harness, customer):
    method = vault(harness, customer)
    with pytest.raises(InvalidRequestError, match="Invalid Credit Card Number") as info:
        pay(harness.processor, customer, method, amount=500022)
    assert info.value.http_status == 400


def test_exact_network_failures_are_failed_results(harness, customer):
    method = vault(harness, customer)
    result = pay(harness.processor, customer, method, amount=500044)
    assert (result.status, result.failure_code, result.failure_message) == (
        base.CHARGE_FAILED, "exact_44", "Address not Verified")
    failing = vault(harness, customer, "4000000000001216")
    assert pay(harness.processor, customer, failing).failure_code == "exact_61"


def test_decline_all_fault_declines_with_the_bank_response(harness, customer):
    method = vault(harness, customer)
    harness.fake.faults.decline_all = True
    result = pay(harness.processor, customer, method)
    assert (result.status, result.failure_code, result.failure_message) == (
        base.CHARGE_DECLINED, "ND", "Declined")


def test_validation_errors_name_the_field_but_not_the_token(harness, customer):
    method = vault(harness, customer)
    harness.processor.delete_payment_method(ref(customer), method.ref)
    with pytest.raises(InvalidRequestError) as info:
        pay(harness.processor, customer, method)
    assert info.value.code == "validation-error"
    assert "paymentMethod.token: Payment method not found" in info.value.message
    assert "[request " in info.value.message and method.token not in str(info.value)


def test_capture_then_refund_goes_to_the_capture_transaction(harness, customer):
    method = vault(harness, customer)
    auth = pay(harness.processor, customer, method, amount=2500, capture=False)
    assert auth.status == base.CHARGE_AUTHORIZED and auth.amount_captured == 0
    captured = harness.processor.capture(auth.reference)  # amount defaults to what remains: everything
    assert (captured.reference, captured.status, captured.amount_captured) == (
        auth.reference, base.CHARGE_CAPTURED, 2500)
    posts = len([c for c in harness.fake.calls if c[0] == "POST"])
    assert harness.processor.capture(auth.reference).status == base.CHARGE_CAPTURED  # nothing captured twice
    assert len([c for c in harness.fake.calls if c[0] == "POST"]) == posts
    part = harness.processor.refund(auth.reference, 1000)
    rest = harness.processor.refund(auth.reference)  # the remaining 1500
    assert (part.amount_refunded, rest.amount_refunded) == (1000, 1500)
    capture_id = harness.fake.payments[auth.reference]["captureDetails"]["captures"][0]
    assert harness.fake.payments[capture_id]["refundDetails"]["remaining"] == 0
    with pytest.raises(InvalidRequestError, match="Refund amount exceeds"):
        harness.processor.refund(auth.reference, 1)


def test_void_twice_answers_from_state(harness, customer):
    method = vault(harness, customer)
    auth = pay(harness.processor, customer, method, amount=700, capture=False)
    assert harness.processor.void(auth.reference).status == base.CHARGE_VOIDED
    assert harness.processor.void(auth.reference).status == base.CHARGE_VOIDED
    assert len(harness.fake.payments[auth.reference]["voidDetails"]["voids"]) == 1
    with pytest.raises(InvalidRequestError, match="voided and cannot be captured"):
        harness.processor.capture(auth.reference)


def test_unknown_payment_is_not_found(processor):
    with pytest.raises(NotFoundError):
        processor.refund("64af8f090674c4d267779e4d", 100)


# -- retries and timeouts -------------------------------------------------------------------------


def test_a_post_is_never_retried_even_with_an_idempotency_key(harness, customer):
    method = vault(harness, customer)
    harness.fake.faults.fail_next(503, count=1)
    with pytest.raises(ProcessorUnavailable) as info:
        pay(harness.processor, customer, method, idempotency_key=uuid.uuid4().hex)
    assert info.value.http_status == 503
    assert [c for c in harness.fake.calls if c[1] == "/payments"] == [("POST", "/payments", 503)]
    assert harness.fake.payments == {}


def test_a_get_is_retried_after_a_503(harness, customer):
    vault(harness, customer)
    harness.fake.faults.fail_next(503, count=1)
    assert len(harness.processor.list_payment_methods(ref(customer))) == 1
    path = f"/customer/{customer.id}/payment-method"
    assert [c[2] for c in harness.fake.calls if c[1] == path and c[0] == "GET"] == [503, 200]


def test_urllib3_retry_warnings_do_not_carry_the_token(harness, customer, caplog):
    caplog.set_level(logging.DEBUG)
    method = vault(harness, customer)
    harness.fake.faults.hang_next(2.0, count=2)
    with pytest.raises(ProcessorUnavailable):
        harness.processor.fetch_payment_method(ref(customer), method.ref)
    retried = [r for r in caplog.records
               if r.name == "urllib3.connectionpool" and r.levelno == logging.WARNING]
    assert retried and retried[0].getMessage().endswith(": /[path]")  # http.py's RedactPathsFilter
    assert method.token not in caplog.text


def test_no_credential_token_or_customer_secret_in_logs(harness, customer, caplog):
    caplog.set_level(logging.DEBUG)
    method = vault(harness, customer)
    harness.processor.fetch_payment_method(ref(customer), method.ref)
    harness.processor.delete_payment_method(ref(customer), method.ref)
    with pytest.raises(InvalidRequestError) as info:
        pay(harness.processor, customer, None)  # the customer token now has no default method
    text = caplog.text + str(info.value)
    assert "/customer/{customer_id}/payment-method/{token}" in caplog.text
    for secret in (method.token, customer.secret, harness.fake.API_TOKEN):
        assert secret not in text


# -- errors ------------------------------------------------------------------------------------------


def test_error_message_shapes():
    token = str(uuid.uuid4())
    body = {"code": "validation-error", "type": "invalid-request-error", "message": f"Bad token {token}",
            "pathIssues": [{"field": "amount", "type": "invalid", "details": ["Amount must be an integer"]}],
            "requestId": "bcc78633-cd09-4e7d-8f3b-d593fdc1439c"}
    message, code = error_message(body)
    assert code == "validation-error" and token not in message
    assert message == ("Bad token [redacted] (amount: Amount must be an integer) "
                       "[request bcc78633-cd09-4e7d-8f3b-d593fdc1439c]")
    assert error_message({"messages": ["Amount must be an integer"]}) == ("Amount must be an integer", "")
    assert error_message({"type": "system-error", "message": "x"}) == ("x", "system-error")
    assert error_message(None) == ("", "") and error_message(["odd"]) == ("", "")


def test_sanitize_drops_tokens_and_numbers_but_keeps_token_type():
    raw = {"token": "t", "customerToken": "c", "items": [{"paymentMethodToken": "p", "label": "x"}],
           "card": {"tokenType": "platform", "number": "4111111111111111"}}
    assert sanitize(raw) == {"card": {"tokenType": "platform"}, "items": [{"label": "x"}]}


def test_fake_answers_exacts_validation_shape(exact_fake):
    auth = {"Authorization": exact_fake.API_TOKEN}
    response = requests.post(f"{exact_fake.url}/customer", json={"email": "x@example.com"}, headers=auth,
                             timeout=5)
    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["type"]) == ("validation-error", "invalid-request-error")
    assert body["pathIssues"] == [{"field": "name", "type": "required", "details": ["Required"]}]
    too_many = requests.get(f"{exact_fake.url}/customer", params={"$limit": 101}, headers=auth, timeout=5)
    assert too_many.status_code == 400 and too_many.json()["pathIssues"][0]["field"] == "$limit"


# -- webhooks ------------------------------------------------------------------------------------------


@pytest.fixture
def update_event(harness, customer):
    method = vault(harness, customer)
    return harness.fake.network_update(customer.id, method.token, 11, 2031), method


def test_webhook_header_checks(harness, update_event):
    event, _method = update_event
    processor, fake = harness.processor, harness.fake
    processor.verify_webhook(delivery(fake, event))
    processor.verify_webhook(delivery(fake, event, **{fake.WEBHOOK_HEADER: f"  {fake.WEBHOOK_SECRET} "}))
    cases = {
        "missing": WebhookRequest(headers={"content-type": "application/json"}, body=b"{}"),
        "empty": delivery(fake, event, **{fake.WEBHOOK_HEADER: ""}),
        "wrong": delivery(fake, event, **{fake.WEBHOOK_HEADER: fake.WEBHOOK_SECRET[:-1]}),
        "longer": delivery(fake, event, **{fake.WEBHOOK_HEADER: fake.WEBHOOK_SECRET + "x"}),
        "non-ascii": delivery(fake, event, **{fake.WEBHOOK_HEADER: "sécret\udcff"}),
        "bytes": WebhookRequest(headers={fake.WEBHOOK_HEADER.lower(): b"bytes"}, body=b"{}"),
        "not a mapping": WebhookRequest(headers=None, body=b"{}"),
    }
    for name, request in cases.items():
        with pytest.raises(WebhookVerificationError) as info:
            processor.verify_webhook(request)
        assert fake.WEBHOOK_SECRET not in info.value.reason, name


def test_webhook_without_a_configured_secret_is_always_rejected(exact_fake, update_event):
    event, _method = update_event
    for options in ({"WEBHOOK_SECRET": ""}, {"WEBHOOK_SECRET": None}, {"WEBHOOK_SECRET": []}):
        processor = ExactProcessor("a", fake_options(exact_fake, **options))
        with pytest.raises(WebhookVerificationError, match="no webhook secret"):
            processor.verify_webhook(delivery(exact_fake, event))
        assert any("every Exact webhook delivery will be rejected" in p for p in processor.check_options())


def test_rotated_secrets_and_a_custom_header_name(exact_fake, update_event):
    event, _method = update_event
    secrets = ["new-secret-0123456789", exact_fake.WEBHOOK_SECRET]
    processor = ExactProcessor("a", fake_options(exact_fake, WEBHOOK_HEADER="X-Shop-Hook",
                                                 WEBHOOK_SECRET=secrets))
    processor.verify_webhook(delivery(exact_fake, event, **{"X-Shop-Hook": exact_fake.WEBHOOK_SECRET}))
    processor.verify_webhook(delivery(exact_fake, event, **{"X-Shop-Hook": "new-secret-0123456789"}))
    assert processor.webhook_secret_headers == ("x-shop-hook",)
    assert ExactProcessor.webhook_secret_headers == ("x-exact-webhook-secret",)
    with pytest.raises(WebhookVerificationError, match="missing"):
        processor.verify_webhook(delivery(exact_fake, event))  # the secret under the default header name


def test_no_timestamp_window_old_and_future_events_still_verify(harness, update_event):
    event, _method = update_event
    for when in ("2001-01-01T00:00:00.000Z", "2099-01-01T00:00:00.000Z"):
        request = delivery(harness.fake, {**event, "startedAt": when, "finishedAt": when})
        harness.processor.verify_webhook(request)  # Exact's scheme has no timestamp: de-duplicated by id
        assert harness.processor.parse_webhook(request)[0].occurred_at.year in (2001, 2099)


def test_event_id_includes_the_lifecycle_status(harness, update_event):
    event, _method = update_event
    event_id, name = harness.processor.webhook_event_id(delivery(harness.fake, event))
    assert (event_id, name) == (f"{event['id']}:success", "payment-methods.update")
    finished = harness.processor.webhook_event_id(delivery(harness.fake, {**event, "status": "finish"}))
    assert finished[0] == f"{event['id']}:finish"
    for body in (b"not json", b"[1]", b'{"event": "x"}', b'{"id": "1"}', b'{"id": 5, "event": "x"}'):
        with pytest.raises(WebhookParseError):
            harness.processor.webhook_event_id(WebhookRequest(headers={}, body=body))


def test_card_update_and_closed_card_events(harness, customer, update_event):
    event, method = update_event
    [updated] = harness.processor.parse_webhook(delivery(harness.fake, event))
    assert (updated.type, updated.payment_method_ids, updated.customer_id) == (
        base.EVENT_PAYMENT_METHOD_UPDATED, (method.token,), customer.id)
    assert method.token not in json.dumps(updated.raw)
    closed_event = harness.fake.network_update(customer.id, method.token, 11, 2031, closed=True)
    [closed] = harness.processor.parse_webhook(delivery(harness.fake, closed_event))
    assert (closed.type, closed.payment_method_ids) == (base.EVENT_PAYMENT_METHOD_CLOSED, (method.token,))
    started = harness.processor.parse_webhook(delivery(harness.fake, {**event, "status": "start"}))
    assert started[0].type == base.EVENT_UNKNOWN


def test_payment_events_ask_exact_for_the_outcome(harness, customer):
    good = vault(harness, customer)
    declining = vault(harness, customer, "4000000000000002")
    approved = pay(harness.processor, customer, good, amount=3000)
    declined = pay(harness.processor, customer, declining)

    def parse(payment_id, name="payments.create", status="success"):
        event = harness.fake.record_event(name, payment=payment_id)
        return harness.processor.parse_webhook(delivery(harness.fake, {**event, "status": status}))[0]

    ok = parse(approved.reference)
    assert (ok.type, ok.charge_reference, ok.data["amount"]) == (
        base.EVENT_CHARGE_SUCCEEDED, approved.reference, 3000)
    refund_id = harness.processor.refund(approved.reference, 3000).raw["id"]
    bad = parse(declined.reference)
    assert (bad.type, bad.data["failure_code"]) == (base.EVENT_CHARGE_FAILED, "ND")
    assert parse(refund_id, "payments.refund").type == base.EVENT_CHARGE_REFUNDED
    auth = pay(harness.processor, customer, good, amount=700, capture=False)
    assert parse(auth.reference).type == base.EVENT_CHARGE_SUCCEEDED
    void_id = harness.processor.void(auth.reference).raw["id"]
    assert parse(void_id, "payments.void").data["status"] == base.CHARGE_VOIDED
    assert parse(void_id, "payments.void").type == base.EVENT_CHARGE_VOIDED
    assert parse(approved.reference, status="failure").type == base.EVENT_CHARGE_FAILED
    with pytest.raises(WebhookVerificationError, match="does not know"):
        parse("64af8f090674c4d267779e4d")


def test_customer_and_unknown_events(harness, customer):
    updated = harness.fake.record_event("customers.update", customer=customer.id)
    [event] = harness.processor.parse_webhook(delivery(harness.fake, updated))
    assert (event.type, event.customer_id) == (base.EVENT_CUSTOMER_UPDATED, customer.id)
    other = harness.fake.record_event("accounts.create")
    assert harness.processor.parse_webhook(delivery(harness.fake, other))[0].type == base.EVENT_UNKNOWN


# -- configuration -------------------------------------------------------------------------------------


def test_check_options():
    assert ExactProcessor("a", {"API_TOKEN": "t", "WEBHOOK_SECRET": "s" * 20}).check_options() == []
    problems = ExactProcessor("a", {"BASE_URL": "ftp://x", "WEBHOOK_SECRET": "short", "CURRENCY": "dollars",
                                    "WEBHOOK_HEADER": "Bad Header", "TIMEOUT": "soon"}).check_options()
    assert problems == [
        "OPTIONS is missing 'API_TOKEN'",
        "BASE_URL must be an http(s) URL",
        "WEBHOOK_SECRET should be at least 16 characters long",
        "WEBHOOK_HEADER is not a valid HTTP header name",
        "CURRENCY must be a three-letter ISO 4217 code",
        "TIMEOUT must be a number of seconds or a (connect, read) pair",
    ]
    assert "t0ken" not in repr(ExactProcessor("a", {"API_TOKEN": "t0ken"}))


def test_fake_tokenization_and_lookup_routes(harness, customer):
    fake, auth = harness.fake, {"Authorization": harness.fake.API_TOKEN}
    created = requests.post(f"{fake.url}/payment-method", headers=auth, timeout=5, json={
        "type": "card", "billingDetails": {"name": "Alex Morales", "email": "alex@example.com"},
        "card": {"number": "340000000000009", "expiry": {"month": 3, "year": EXP_YEAR}, "cvc": "1234"}})
    assert created.status_code == 201 and created.json()["card"]["brand"] == "amex"
    method = harness.processor.vault_payment_method(VaultRequest(customer=ref(customer),
                                                                 temporary_token=created.json()["token"]))
    assert "340000000000009" not in json.dumps([fake.temporary, fake.methods], default=str)
    by_token = requests.get(f"{fake.url}/customer-token/{customer.secret}/payment-method", headers=auth,
                            timeout=5)
    assert [m["token"] for m in by_token.json()] == [method.token]
    partner = f"{fake.url}/account/{fake.ACCOUNT_ID}"
    default = requests.get(f"{partner}/customer/{customer.id}/payment-method/default", headers=auth,
                           timeout=5)
    assert default.json()["token"] == method.token and default.json()["card"]["lastFour"] == "0009"
    events = requests.get(f"{fake.url}/event", params={"$sort[createdAt]": -1, "$limit": 1}, headers=auth,
                          timeout=5).json()
    assert [e["event"] for e in events] == ["payment-methods.create"]
    bad = requests.post(f"{fake.url}/payment-method", headers=auth, timeout=5, json={
        "type": "card", "billingDetails": {"name": "A"}, "card": {"number": "4111111111111112",
                                                                 "expiry": {"month": 3, "year": EXP_YEAR}}})
    assert bad.status_code == 400 and bad.json()["pathIssues"][0]["details"] == ["Invalid Credit Card Number"]


def test_ach_method_mapping():
    body = {"type": "ach", "token": str(uuid.uuid4()), "isDefault": False,
            "ach": {"bankAccountType": "Checking", "lastFour": "6789", "verified": False}}
    method = ExactProcessor("a", {"API_TOKEN": "t"})._method(body)
    assert (method.method_type, method.last4, method.account_type, method.verification_status) == (
        base.METHOD_ACH, "6789", "checking", base.VERIFICATION_PENDING)
    assert "token" not in method.raw and method.fingerprint == ""
