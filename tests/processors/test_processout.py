"""ProcessOut: the shared conformance suite plus what is particular to ProcessOut.

Everything runs over real HTTP against ``ProcessOutFake``; nothing is patched.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from datetime import date

import pytest

from vault_wallets.processors import base
from vault_wallets.processors.base import (
    AuthenticationError,
    ChargeRequest,
    CustomerData,
    CustomerRef,
    InvalidRequestError,
    ProcessorUnavailable,
    TemporaryTokenError,
    UnsupportedOperation,
    VaultRequest,
    VerificationFailedError,
    WebhookParseError,
    WebhookRequest,
    WebhookVerificationError,
)
from vault_wallets.processors.money import to_major_string
from vault_wallets.processors.processout import ProcessOutProcessor, to_minor_units
from vault_wallets.testing.conformance import (
    CARD_DECLINE,
    CARD_OK,
    CARD_OK_OTHER,
    ConformanceHarness,
    NetworkUpdate,
    ProcessorConformance,
)
from vault_wallets.testing.fakes import processout as processout_fakes
from vault_wallets.testing.fakes.processout import ProcessOutFake

processout_fake = processout_fakes.processout_fake  # the fixture

CARD_NUMBERS = {CARD_OK: "4242424242424242", CARD_OK_OTHER: "5555555555554444",
                CARD_DECLINE: "4000000000000002"}
CARD_GATEWAY_ERROR = "4000000000001216"
CARD_3DS = "4000000000000101"
CARD_AMEX = "378282246310005"


def make_processor(fake: ProcessOutFake, **options) -> ProcessOutProcessor:
    return ProcessOutProcessor("po-test", {
        "PROJECT_ID": fake.PROJECT_ID, "PROJECT_SECRET": fake.PROJECT_SECRET, "BASE_URL": fake.url,
        "TIMEOUT": (2, 0.5), "RETRIES": 1, **options,
    })


class ProcessOutHarness(ConformanceHarness):
    def __init__(self, fake: ProcessOutFake, **options):
        self.fake = fake
        self.processor = make_processor(fake, **options)

    def temporary_token(self, card: str = CARD_OK) -> str:
        return self.tokenize(CARD_NUMBERS[card])

    def tokenize(self, number: str) -> str:
        return self.fake.tokenize_card(number, 12, date.today().year + 3, "123", "Alex Morales")

    def network_update(self, customer, method, update: NetworkUpdate) -> None:
        self.fake.update_card(method.token, update.exp_month, update.exp_year, update.last4, update.closed)

    def signed_update_webhook(self, customer, method) -> WebhookRequest:
        return self.fake.token_delivery(method.token)

    def tamper(self, request: WebhookRequest) -> WebhookRequest:
        body = json.loads(request.body)
        body["event_id"] = "ev_" + uuid.uuid4().hex  # an event ProcessOut never fired
        return WebhookRequest(headers=request.headers, body=json.dumps(body).encode())


class TestProcessOutConformance(ProcessorConformance):
    @pytest.fixture
    def harness(self, processout_fake):
        return ProcessOutHarness(processout_fake)


# --------------------------------------------------------------------------------------
# ProcessOut specifics
# --------------------------------------------------------------------------------------


@pytest.fixture
def harness(processout_fake) -> ProcessOutHarness:
    return ProcessOutHarness(processout_fake)


@pytest.fixture
def processor(harness) -> ProcessOutProcessor:
    return harness.processor


@pytest.fixture
def customer(processor) -> CustomerRef:
    created = processor.create_customer(CustomerData(reference_id=f"ref-{uuid.uuid4().hex[:12]}",
                                                     name="Alex Morales", currency="USD"))
    return CustomerRef(id=created.id)


def vault(harness, customer, number="4242424242424242", **kwargs):
    return harness.processor.vault_payment_method(
        VaultRequest(customer=customer, temporary_token=harness.tokenize(number), **kwargs))


def charge(processor, customer, method=None, amount=1999, **kwargs):
    return processor.charge(ChargeRequest(customer=customer, method=method.ref if method else None,
                                          amount=amount, currency=kwargs.pop("currency", "USD"), **kwargs))


def posts(fake, path_suffix: str) -> int:
    return sum(1 for method, path, _status in fake.calls if method == "POST" and path.endswith(path_suffix))


# -- authentication and headers -----------------------------------------------------------


def test_requests_use_basic_auth_json_and_api_version(processout_fake, processor, customer):
    # HTTP Basic with project id as user and project secret as password (worked example in PROCESSORS.md).
    expected = ("Basic dGVzdC1wcm9qX3ZhdWx0d2FsbGV0c0Zha2UwMDAwMDAwMDAwMDAxOmtleV9zYW5kYm94X3Zh"
                "dWx0d2FsbGV0c0Zha2VTZWNyZXQwMDAwMDE=")
    credentials = f"{processout_fake.PROJECT_ID}:{processout_fake.PROJECT_SECRET}"
    assert base64.b64decode(expected.split()[1]).decode() == credentials
    seen = [s for s in processout_fake.seen if s["method"] == "POST" and s["path"] == "/customers"]
    assert seen, "create_customer must POST /customers"
    request = seen[-1]
    assert request["authorization"] == expected
    assert request["api-version"] == "1.4.0.0"
    assert request["content-type"] == "application/json"
    assert request["accept"] == "application/json"
    assert request["idempotency-key"].startswith("vw-customer-")


def test_documented_example_credentials_are_sent_as_basic(processout_fake):
    # The docs' curl example: -u test-proj_gAO1…:key_sandbox_mah3… ; the fake refuses them (not its project).
    processor = ProcessOutProcessor("docs", {
        "PROJECT_ID": "test-proj_gAO1Uu0ysZJvDuUpOGPkUBeE3pGalk3x",
        "PROJECT_SECRET": "key_sandbox_mah31RDFqcDxmaS7MvhDbJfDJvjtsFTB",
        "BASE_URL": processout_fake.url, "TIMEOUT": (2, 0.5), "RETRIES": 0,
    })
    with pytest.raises(AuthenticationError) as info:
        processor.list_payment_methods(CustomerRef(id="cust_x"))
    assert processout_fake.seen[-1]["authorization"] == (
        "Basic dGVzdC1wcm9qX2dBTzFVdTB5c1pKdkR1VXBPR1BrVUJlRTNwR2FsazN4OmtleV9zYW5kYm94X21h"
        "aDMxUkRGcWNEeG1hUzdNdmhEYkpmREp2anRzRlRC"
    )
    assert info.value.http_status == 401
    assert info.value.code == "request.authentication.invalid"
    assert info.value.message == "The project ID or project secret is invalid."
    assert "key_sandbox_mah31RDFqcDxmaS7MvhDbJfDJvjtsFTB" not in str(info.value) + repr(info.value)


def test_fake_rejects_bad_or_missing_credentials_with_processout_401(processout_fake):
    import requests

    for auth in [None, ("wrong", "creds"), (processout_fake.PROJECT_ID, "nope")]:
        response = requests.get(processout_fake.url + "/customers", auth=auth, timeout=5)
        assert response.status_code == 401
        body = response.json()
        assert body["success"] is False and body["error_type"].startswith("request.authentication.")
        assert body["message"]
    response = requests.get(processout_fake.url + "/customers", timeout=5,
                            headers={"Authorization": "Basic !!!not-base64"})
    assert response.status_code == 401 and response.json()["error_type"] == "request.authentication.invalid"


# -- money ---------------------------------------------------------------------------------


@pytest.mark.parametrize("minor, currency, text", [
    (1999, "USD", "19.99"), (5, "EUR", "0.05"), (100000, "usd", "1000.00"),
    (500, "JPY", "500"), (1234, "KWD", "1.234"), (1, "BHD", "0.001"),
])
def test_amounts_convert_exactly(minor, currency, text):
    assert to_major_string(minor, currency) == text
    assert to_minor_units(text, currency) == minor


def test_amount_parsing_edge_cases():
    assert to_minor_units("", "USD") == 0
    assert to_minor_units(None, "USD") == 0
    assert to_minor_units("19.9", "USD") == 1990
    assert to_minor_units("0.005", "USD") == 1  # sub-cent digits round half up
    with pytest.raises(ProcessorUnavailable):
        to_minor_units("abc", "USD")


def test_invoice_is_created_in_decimal_units(processout_fake, customer):
    harness = ProcessOutHarness(processout_fake, INVOICE_DEFAULTS={"merchant_initiator_type": "one-off",
                                                                   "amount": "0.01"})
    method = vault(harness, customer)
    result = charge(harness.processor, customer, method, amount=123456, currency="JPY", reference="order-7",
                    description="Order 7")
    invoice = processout_fake.invoices[result.reference]
    assert (invoice["amount"], invoice["currency"], invoice["order_id"], invoice["name"]) == (
        "123456", "JPY", "order-7", "Order 7")
    assert invoice["merchant_initiator_type"] == "one-off"
    assert result.amount == 123456 and result.amount_captured == 123456 and result.currency == "JPY"


def test_partial_capture_and_partial_refund(harness, customer):
    method = vault(harness, customer)
    auth = charge(harness.processor, customer, method, amount=5000, capture=False)
    assert auth.status == base.CHARGE_AUTHORIZED and auth.amount_captured == 0
    captured = harness.processor.capture(auth.reference, 3000)
    assert (captured.status, captured.amount_captured) == (base.CHARGE_CAPTURED, 3000)
    refunded = harness.processor.refund(auth.reference, 1000)
    assert (refunded.status, refunded.amount_refunded, refunded.amount_captured) == (
        base.CHARGE_REFUNDED, 1000, 3000)
    rest = harness.processor.refund(auth.reference)  # the remaining 20.00
    assert rest.amount_refunded == 3000
    with pytest.raises(InvalidRequestError) as info:
        harness.processor.refund(auth.reference, 1)
    assert info.value.code == "refund.amount-too-high"


def test_charge_outcomes_by_test_card(processout_fake, harness, customer):
    ok = charge(harness.processor, customer, vault(harness, customer, CARD_AMEX))
    assert ok.status == base.CHARGE_CAPTURED
    failed = charge(harness.processor, customer, vault(harness, customer, CARD_GATEWAY_ERROR))
    assert (failed.status, failed.failure_code) == (base.CHARGE_FAILED, "gateway.internal-error")
    assert failed.failure_message == "The payment gateway failed to process the payment."
    declined = charge(harness.processor, customer, vault(harness, customer, "4000000000000002"))
    assert (declined.status, declined.failure_code) == (base.CHARGE_DECLINED, "card.declined")
    three_ds = charge(harness.processor, customer, vault(harness, customer, CARD_3DS))
    assert (three_ds.status, three_ds.failure_code) == (base.CHARGE_DECLINED, "customer_action_required")
    processout_fake.faults.decline_all = True
    assert charge(harness.processor, customer, vault(harness, customer)).status == base.CHARGE_DECLINED


def test_charge_default_without_default_token_is_an_error(harness, customer):
    vault(harness, customer)
    with pytest.raises(InvalidRequestError) as info:
        charge(harness.processor, customer, None)
    assert info.value.message == "The customer has no default token."


def test_make_default_and_customer_default_token(processout_fake, harness, processor):
    data = CustomerData(reference_id="ref-default", name="Alex Morales", currency="USD")
    customer = CustomerRef(id=processor.create_customer(data).id)
    vault(harness, customer)
    second = vault(harness, customer, "5555555555554444", make_default=True, label="Work card")
    assert second.is_default and second.raw["metadata"] == {"label": "Work card"}
    changes = CustomerData(reference_id="ref-default", name="Alex M. Morales", currency="USD",
                           metadata={"vip": "yes"})
    updated = processor.update_customer(customer, changes)
    assert updated.default_method_id == second.method_id and "default_token_id" not in updated.raw
    assert processout_fake.customers[customer.id]["metadata"] == {
        "vip": "yes", "vault_wallets_reference_id": "ref-default", "vault_wallets_account": "po-test"}
    assert processout_fake.customers[customer.id]["last_name"] == "M. Morales"


# -- customers -----------------------------------------------------------------------------


def test_customer_is_found_by_metadata_after_the_idempotency_window(processout_fake, processor):
    data = CustomerData(reference_id="ref-window", name="Sam Lee Park", email="sam@example.com",
                        currency="EUR", metadata={"tier": 2})
    first = processor.create_customer(data)
    stored = processout_fake.customers[first.id]
    assert stored["metadata"] == {"tier": "2", "vault_wallets_reference_id": "ref-window",
                                  "vault_wallets_account": "po-test"}
    assert (stored["first_name"], stored["last_name"], stored["currency"]) == ("Sam", "Lee Park", "EUR")
    processout_fake.idempotent.clear()  # ProcessOut forgot the key: the metadata scan still finds it
    assert processor.create_customer(data).id == first.id
    assert len(processout_fake.customers) == 1
    other_account = ProcessOutProcessor("other", dict(processor.options))
    assert other_account.create_customer(data).id != first.id


def test_customer_create_is_idempotent_without_scan(processout_fake):
    processor = make_processor(processout_fake, CUSTOMER_SCAN_PAGES=0)
    data = CustomerData(reference_id="ref-noscan")
    processout_fake.faults.fail_next(503, 1)  # the keyed POST is retried and answered once
    first = processor.create_customer(data)
    assert processor.create_customer(data).id == first.id
    assert posts(processout_fake, "/customers") == 3 and len(processout_fake.customers) == 1


def test_customer_scan_pages_through_the_newest_customers(processout_fake):
    processor = make_processor(processout_fake)
    target = processor.create_customer(CustomerData(reference_id="ref-old"))
    for i in range(120):  # more than one page of newer customers
        processout_fake.customers[f"cust_filler{i}"] = processout_fake._stamp(
            {"id": f"cust_filler{i}", "metadata": {}, "default_token_id": None, "currency": None})
    processout_fake.idempotent.clear()
    assert processor.create_customer(CustomerData(reference_id="ref-old")).id == target.id
    assert sum(1 for s in processout_fake.seen if s["method"] == "GET" and s["path"] == "/customers") >= 3


def test_customer_currency_cannot_change(processor, customer):
    same = processor.update_customer(customer, CustomerData(reference_id="r", email="new@example.com",
                                                            currency="usd"))
    assert same.currency == "USD" and same.raw["email"] == "new@example.com"
    with pytest.raises(InvalidRequestError) as info:
        processor.update_customer(customer, CustomerData(reference_id="r", currency="EUR"))
    assert info.value.code == "request.validation.error"
    assert info.value.message == "The customer currency cannot be changed once it is set."
    assert info.value.http_status == 400


def test_customer_currency_is_set_by_the_first_payment(processout_fake, harness, processor):
    created = processor.create_customer(CustomerData(reference_id="ref-nocurrency"))
    assert created.currency == ""
    ref = CustomerRef(id=created.id)
    charge(processor, ref, vault(harness, ref), currency="GBP")
    assert processout_fake.customers[created.id]["currency"] == "GBP"


def test_delete_customer_is_idempotent(processout_fake, processor, customer):
    processor.delete_customer(customer)
    processor.delete_customer(customer)
    assert customer.id not in processout_fake.customers


# -- tokens ----------------------------------------------------------------------------------


def test_vaulted_method_is_sanitized(harness, customer):
    method = vault(harness, customer, CARD_AMEX)
    assert (method.brand, method.last4, method.verification_status) == (
        "american express", "0005", "not-requested")
    assert method.fingerprint and method.holder_name == "Alex Morales"
    text = json.dumps(dict(method.raw))
    assert method.token not in text and "card_" not in text and CARD_AMEX not in text
    assert method.raw["card"]["iin"] == "378282"


def test_temporary_token_used_twice_or_unknown(harness, customer):
    temporary = harness.tokenize("4242424242424242")
    harness.processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=temporary))
    for token in (temporary, "card_unknown"):
        with pytest.raises(TemporaryTokenError) as info:
            harness.processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=token))
        assert info.value.code == "request.source.invalid"


def test_vault_for_unknown_customer_is_not_found(harness):
    with pytest.raises(base.NotFoundError):
        vault(harness, CustomerRef(id="cust_missing"))


def test_ach_is_unsupported(harness, customer):
    with pytest.raises(UnsupportedOperation):
        harness.processor.vault_payment_method(VaultRequest(customer=customer, temporary_token="x",
                                                            method_type=base.METHOD_ACH))


def test_verify_tokens_option(processout_fake, customer):
    harness = ProcessOutHarness(processout_fake, VERIFY_TOKENS=True)
    assert vault(harness, customer).verification_status == base.VERIFICATION_SUCCESS
    assert vault(harness, customer, CARD_GATEWAY_ERROR).verification_status == base.VERIFICATION_SUCCESS
    before = set(processout_fake.tokens)
    with pytest.raises(VerificationFailedError):
        vault(harness, customer, "4000000000000002")
    assert set(processout_fake.tokens) == before  # the failed token was deleted
    pending = vault(harness, customer, CARD_3DS)
    assert pending.verification_status == base.VERIFICATION_PENDING and pending.status == base.METHOD_ACTIVE
    assert pending.raw["customer_action"]["type"] == "url"
    event = processout_fake.complete_verification(pending.token)
    [normalized] = harness.processor.parse_webhook(processout_fake.delivery(event))
    assert normalized.type == base.EVENT_VERIFICATION_SUCCEEDED
    assert normalized.payment_method_ids == (pending.method_id,) and normalized.customer_id == customer.id
    # Verified with 3-D Secure: later payments on the token go through.
    assert charge(harness.processor, customer, pending).status == base.CHARGE_CAPTURED
    failing = vault(harness, customer, CARD_3DS)
    [normalized] = harness.processor.parse_webhook(
        processout_fake.delivery(processout_fake.complete_verification(failing.token, success=False)))
    assert normalized.type == base.EVENT_VERIFICATION_FAILED


def test_closed_card_is_reported_closed(processout_fake, harness, customer):
    method = vault(harness, customer)
    event = processout_fake.update_card(method.token, 1, date.today().year + 4, last4="4343", closed=True)
    fresh = harness.processor.fetch_payment_method(customer, method.ref)
    assert (fresh.status, fresh.last4) == (base.METHOD_CLOSED, "4343")
    [normalized] = harness.processor.parse_webhook(processout_fake.delivery(event))
    assert normalized.type == base.EVENT_PAYMENT_METHOD_CLOSED
    assert normalized.payment_method_ids == (method.method_id,)
    assert charge(harness.processor, customer, method).status == base.CHARGE_DECLINED


def test_list_pages_through_many_tokens(harness, customer):
    made = {vault(harness, customer).method_id for _ in range(3)}
    from vault_wallets.processors import processout as module

    original, module.PAGE_LIMIT = module.PAGE_LIMIT, 2  # force several pages
    try:
        listed = {m.method_id for m in harness.processor.list_payment_methods(customer)}
    finally:
        module.PAGE_LIMIT = original
    assert listed == made


# -- webhooks -------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"", b"not json", b"\xff\xfe", b"[]", b'"ev_1"', b"{}", b'{"event_id": ""}', b'{"event_id": 42}',
    b'{"event_id": "../customers"}', b'{"event_id": "ev_1/tokens"}', b'{"event_id": "' + b"a" * 200 + b'"}',
])
def test_malformed_deliveries_are_refused_before_any_call(processout_fake, processor, body):
    request = WebhookRequest(headers={}, body=body)
    for check in (processor.verify_webhook, processor.webhook_event_id, processor.parse_webhook):
        with pytest.raises(WebhookParseError):
            check(request)
    assert not processout_fake.calls


def test_headers_do_not_matter_and_only_the_refetch_counts(processout_fake, harness, customer):
    method = vault(harness, customer)
    event = processout_fake.update_card(method.token, 10, date.today().year + 5)
    # The posted body lies about the type and carries junk; headers are odd or missing.
    body = json.dumps({"event_id": event["id"], "event_type": "transaction.refunded",
                       "data": {"transaction": {"invoice_id": "iv_forged"}}}).encode()
    request = WebhookRequest(headers={"x-signature": "garbage", "content-type": "text/plain"}, body=body)
    harness.processor.verify_webhook(request)
    assert harness.processor.webhook_event_id(request) == (event["id"], "transaction.refunded")
    [normalized] = harness.processor.parse_webhook(request)
    assert normalized.type == base.EVENT_PAYMENT_METHOD_UPDATED
    assert normalized.processor_event_type == "customer_token.updated"
    assert normalized.charge_reference == "" and normalized.payment_method_ids == (method.method_id,)
    assert normalized.data["exp_month"] == 10 and normalized.occurred_at is not None
    assert method.token not in json.dumps(dict(normalized.raw))
    assert ("GET", f"/events/{event['id']}", 200) in processout_fake.calls


def test_unknown_event_is_refused(processor):
    body = b'{"event_id": "ev_neverfired", "event_type": "transaction.captured"}'
    request = WebhookRequest(headers={}, body=body)
    processor.verify_webhook(request)  # shape only
    with pytest.raises(WebhookVerificationError) as info:
        processor.parse_webhook(request)
    assert not isinstance(info.value, WebhookParseError)
    assert info.value.reason == "ProcessOut does not know this event"


def test_event_of_another_project_is_refused(processout_fake, processor):
    event = processout_fake.fire("transaction.captured", {"transaction": {"invoice_id": "iv_1"}},
                                 project_id="proj_someoneelse")
    with pytest.raises(WebhookVerificationError) as info:
        processor.parse_webhook(processout_fake.delivery(event))
    assert info.value.reason == "the event belongs to another ProcessOut project"


def test_refetch_failures_are_not_verification_failures(processout_fake, processor):
    event = processout_fake.fire("transaction.captured", {})
    processout_fake.faults.fail_next(503, 5)
    with pytest.raises(ProcessorUnavailable):
        processor.parse_webhook(processout_fake.delivery(event))
    processout_fake.faults.reset()
    wrong = ProcessOutProcessor("x", {**processor.options, "PROJECT_SECRET": "key_wrong"})
    with pytest.raises(AuthenticationError):
        wrong.parse_webhook(processout_fake.delivery(event))


def test_transaction_events_name_the_charge(processout_fake, harness, customer):
    method = vault(harness, customer)
    result = charge(harness.processor, customer, method, amount=2500)
    harness.processor.refund(result.reference, 500)
    declined = charge(harness.processor, customer, vault(harness, customer, "4000000000000002"))
    seen = {}
    for event in sorted(processout_fake.events.values(), key=lambda e: e["_seq"]):
        if "transaction" in event["data"]:
            [normalized] = harness.processor.parse_webhook(processout_fake.delivery(event))
            seen[(event["name"], normalized.charge_reference)] = normalized
    captured = seen[("transaction.captured", result.reference)]
    assert captured.type == base.EVENT_CHARGE_SUCCEEDED and captured.data["amount_captured"] == 2500
    refunded = seen[("transaction.refunded", result.reference)]
    assert refunded.type == base.EVENT_CHARGE_REFUNDED and refunded.data["amount_refunded"] == 500
    failed = seen[("transaction.failed", declined.reference)]
    assert (failed.type, failed.data["status"], failed.data["failure_code"]) == (
        base.EVENT_CHARGE_FAILED, base.CHARGE_DECLINED, "card.declined")
    assert captured.customer_id == customer.id and method.token not in json.dumps(dict(captured.raw))


def test_void_event_is_unknown_but_names_the_charge(processout_fake, harness, customer):
    auth = charge(harness.processor, customer, vault(harness, customer), capture=False)
    harness.processor.void(auth.reference)
    [event] = [e for e in processout_fake.events.values() if e["name"] == "transaction.voided"]
    [normalized] = harness.processor.parse_webhook(processout_fake.delivery(event))
    assert (normalized.type, normalized.charge_reference, normalized.data["status"]) == (
        base.EVENT_UNKNOWN, auth.reference, base.CHARGE_VOIDED)


def test_event_type_overrides(processout_fake):
    processor = make_processor(processout_fake, EVENT_TYPES={"customer.updated": base.EVENT_CUSTOMER_UPDATED})
    event = processout_fake.fire("customer.updated", {"customer": {"id": "cust_1"}})
    [normalized] = processor.parse_webhook(processout_fake.delivery(event))
    assert normalized.type == base.EVENT_CUSTOMER_UPDATED
    assert make_processor(processout_fake, EVENT_TYPES={"x": "nope"}).check_options() == [
        f"OPTIONS['EVENT_TYPES']['x'] is not one of {base.EVENT_TYPES}"]


def test_check_options():
    assert ProcessOutProcessor("a", {}).check_options() == [
        "OPTIONS is missing 'PROJECT_ID'", "OPTIONS is missing 'PROJECT_SECRET'"]
    bad_timeout = {"PROJECT_ID": "p", "PROJECT_SECRET": "s", "TIMEOUT": "x"}
    assert ProcessOutProcessor("a", bad_timeout).check_options() == [
        "OPTIONS['TIMEOUT'] must be a number or a (connect, read) pair of numbers"]


# -- idempotency and retries -------------------------------------------------------------------


def test_post_without_key_is_not_retried(processout_fake, harness, customer):
    processout_fake.faults.fail_next(503, 1)
    with pytest.raises(ProcessorUnavailable):
        vault(harness, customer)
    assert posts(processout_fake, "/tokens") == 1


def test_post_with_key_is_retried_once_and_applied_once(processout_fake, harness, customer):
    processout_fake.faults.fail_next(503, 1)
    method = vault(harness, customer, idempotency_key="vault-1")
    assert posts(processout_fake, "/tokens") == 2
    assert [t for t in processout_fake.tokens] == [method.token]


def test_charge_with_the_same_key_is_one_payment(processout_fake, harness, customer):
    method = vault(harness, customer)
    key = uuid.uuid4().hex
    first = charge(harness.processor, customer, method, idempotency_key=key)
    processout_fake.faults.fail_next(502, 1)
    again = charge(harness.processor, customer, method, idempotency_key=key)
    assert again.reference == first.reference and again.status == base.CHARGE_CAPTURED
    assert len(processout_fake.invoices) == 1 and len(processout_fake.transactions) == 1
    keys = {s["idempotency-key"] for s in processout_fake.seen if s["method"] == "POST"}
    assert {f"{key}:invoice", f"{key}:capture"} <= keys


def test_get_is_retried_on_503(processout_fake, processor, customer):
    processout_fake.faults.fail_next(503, 1)
    assert processor.list_payment_methods(customer) == []


# -- secrets ------------------------------------------------------------------------------------


def test_no_secret_or_token_in_logs_or_errors(processout_fake, harness, customer, caplog):
    caplog.set_level(logging.DEBUG)
    method = vault(harness, customer)
    processout_fake.faults.fail_next(404, 1)
    with pytest.raises(base.NotFoundError) as info:
        harness.processor.fetch_payment_method(customer, method.ref)
    charge(harness.processor, customer, method)
    text = caplog.text + str(info.value) + repr(info.value) + repr(harness.processor)
    for secret in (processout_fake.PROJECT_SECRET, method.token, customer.id):
        assert secret not in text
    assert "/customers/{customer}/tokens/{token}" in caplog.text
