"""CyberSource REST (TMS v2 + Payments v2): the conformance suite plus processor-specific tests."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from datetime import datetime, timezone

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
    MethodRef,
    NotFoundError,
    ProcessorUnavailable,
    TemporaryTokenError,
    VaultRequest,
    VerificationFailedError,
    WebhookParseError,
    WebhookRequest,
    WebhookVerificationError,
)
from vault_wallets.processors.cybersource import (
    CyberSourceProcessor,
    HttpSignature,
    body_digest,
    decode_key,
    error_message,
    parse_webhook_signature,
    sign_request,
    webhook_signature,
)
from vault_wallets.testing.conformance import (
    CARD_DECLINE,
    CARD_OK,
    CARD_OK_OTHER,
    ConformanceHarness,
    NetworkUpdate,
    ProcessorConformance,
)
from vault_wallets.testing.fakes import cybersource as cybersource_fakes
from vault_wallets.testing.fakes.cybersource import CyberSourceFake

cybersource_fake = cybersource_fakes.cybersource_fake  # the shared fixture

CARDS = {CARD_OK: "4242424242424242", CARD_OK_OTHER: "5555555555554444", CARD_DECLINE: "4000000000000002"}


class CyberSourceHarness(ConformanceHarness):
    hang_seconds = 1.0

    def __init__(self, fake: CyberSourceFake, **options):
        self.fake = fake
        self.processor = CyberSourceProcessor(
            "cybersource-test", fake.account_options(TIMEOUT=(2, 0.5), RETRIES=1, **options)
        )

    def temporary_token(self, card: str = CARD_OK) -> str:
        return self.fake.tokenize_card(CARDS.get(card, card), 12, 2031, "123", "Alex Morales")

    def network_update(self, customer, method, update: NetworkUpdate) -> None:
        self.fake.network_update(
            method.method_id,
            exp_month=update.exp_month,
            exp_year=update.exp_year,
            last4=update.last4,
            closed=update.closed,
        )

    def signed_update_webhook(self, customer, method, **kwargs) -> WebhookRequest:
        headers, body = self.fake.network_token_updated(method.method_id, **kwargs)
        return WebhookRequest(headers=headers, body=body)

    def tamper(self, request: WebhookRequest) -> WebhookRequest:
        return WebhookRequest(headers=request.headers, body=request.body.replace(b"tms.", b"tmz."))


@pytest.fixture
def harness(cybersource_fake):
    return CyberSourceHarness(cybersource_fake)


@pytest.fixture
def processor(harness):
    return harness.processor


@pytest.fixture
def customer(processor):
    created = processor.create_customer(
        CustomerData(reference_id=f"ref-{uuid.uuid4().hex[:12]}", email="alex@example.com")
    )
    return CustomerRef(id=created.id)


def vault(harness, customer, number="4242424242424242", **kwargs):
    token = harness.fake.tokenize_card(number, 12, 2031)
    return harness.processor.vault_payment_method(
        VaultRequest(customer=customer, temporary_token=token, **kwargs)
    )


def pay(processor, customer, method=None, amount=1999, capture=True, currency="USD"):
    return processor.charge(
        ChargeRequest(
            customer=customer,
            method=method.ref if method else None,
            amount=amount,
            currency=currency,
            capture=capture,
            reference="order-7",
        )
    )


class TestCyberSourceConformance(ProcessorConformance):
    @pytest.fixture
    def harness(self, cybersource_fake):
        return CyberSourceHarness(cybersource_fake)


# -- HTTP Signature: the worked vectors ------------------------------------------------------------

VECTOR = {
    "merchant_id": "testrest",
    "key_id": "08c94330-f618-42a3-b09d-e1e43be5efda",
    "secret": "yBJxy6LjM2TmcPGu+GaJrHtkke25fPpUX+UY6/L/1tE=",
    "host": "apitest.cybersource.com",
    "date": "Thu, 18 Jul 2019 00:18:03 GMT",
}
VECTOR_BODY = b'{"clientReferenceInformation":{"code":"TC50171_3"}}'
VECTOR_EPOCH = 1563409083  # the vector's Date


def vector_headers(method, target, body=b""):
    return sign_request(
        method=method,
        target=target,
        host=VECTOR["host"],
        date=VECTOR["date"],
        merchant_id=VECTOR["merchant_id"],
        key_id=VECTOR["key_id"],
        secret=decode_key(VECTOR["secret"]),
        body=body,
    )


def test_post_vector_digest_and_signature():
    headers = vector_headers("POST", "/pts/v2/payments", VECTOR_BODY)
    assert headers["Digest"] == "SHA-256=8/r3xgd0zzJf7lzdmDJ0phW/UOyPt23n++R+PbYNQeU="
    assert headers["Signature"] == (
        'keyid="08c94330-f618-42a3-b09d-e1e43be5efda", algorithm="HmacSHA256", '
        'headers="host date request-target digest v-c-merchant-id", '
        'signature="0FHxkKDumzZiBpkzKJ1BHQJYo1r1hD84c7774apzrJU="'
    )
    assert headers["v-c-merchant-id"] == "testrest" and headers["Date"] == VECTOR["date"]


def test_get_vector_signature_has_no_digest():
    headers = vector_headers("GET", "/pts/v2/payments/5246387105766473203529")
    assert "Digest" not in headers
    assert headers["Signature"] == (
        'keyid="08c94330-f618-42a3-b09d-e1e43be5efda", algorithm="HmacSHA256", '
        'headers="host date request-target v-c-merchant-id", '
        'signature="R5Ww5XXGUatZ2Wz6xXUOBfuxIHqqzbfMQtCu/tgRdy8="'
    )


def test_prepare_hook_signs_the_final_bytes_of_both_vectors():
    signer = HttpSignature(
        "testrest", VECTOR["key_id"], decode_key(VECTOR["secret"]), clock=lambda: VECTOR_EPOCH
    )
    post = requests.Request(
        "POST", "https://apitest.cybersource.com/pts/v2/payments", data=VECTOR_BODY
    ).prepare()
    signer(post)
    assert post.headers["Digest"] == "SHA-256=8/r3xgd0zzJf7lzdmDJ0phW/UOyPt23n++R+PbYNQeU="
    assert 'signature="0FHxkKDumzZiBpkzKJ1BHQJYo1r1hD84c7774apzrJU="' in post.headers["Signature"]
    assert post.headers["Host"] == "apitest.cybersource.com" and post.headers["Date"] == VECTOR["date"]
    get = requests.Request(
        "GET", "https://apitest.cybersource.com/pts/v2/payments/5246387105766473203529"
    ).prepare()
    signer(get)
    assert 'signature="R5Ww5XXGUatZ2Wz6xXUOBfuxIHqqzbfMQtCu/tgRdy8="' in get.headers["Signature"]
    assert "Digest" not in get.headers


def test_processor_signs_through_its_http_client():
    processor = CyberSourceProcessor(
        "vec", {"MERCHANT_ID": "testrest", "KEY_ID": VECTOR["key_id"], "SHARED_SECRET": VECTOR["secret"]}
    )
    processor.signer.clock = lambda: VECTOR_EPOCH
    prepared = processor.http.session.prepare_request(
        requests.Request("POST", processor.http.url("/pts/v2/payments"), data=VECTOR_BODY)
    )
    processor.http._prepare(prepared)
    assert 'signature="0FHxkKDumzZiBpkzKJ1BHQJYo1r1hD84c7774apzrJU="' in prepared.headers["Signature"]


def test_signature_covers_the_query_string():
    with_query = vector_headers("GET", "/tms/v2/customers/X/payment-instruments?offset=0&limit=100")
    without = vector_headers("GET", "/tms/v2/customers/X/payment-instruments")
    assert with_query["Signature"] != without["Signature"]


def test_digest_is_of_the_raw_sha256_not_its_hex():
    assert body_digest(b"") == "SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


# -- the fake authenticates like CyberSource -------------------------------------------------------


def signed(fake, method, path, body=b"", *, secret=None, clock=time.time):
    signer = HttpSignature(
        fake.MERCHANT_ID, fake.KEY_ID, decode_key(secret or fake.SHARED_SECRET), clock=clock
    )
    prepared = requests.Request(
        method, fake.url + path, data=body or None, headers={"Content-Type": "application/json"}
    ).prepare()
    signer(prepared)
    return prepared


def send(prepared):
    with requests.Session() as session:
        return session.send(prepared, timeout=5)


@pytest.mark.parametrize(
    "breakage", ["unsigned", "wrong secret", "stale date", "future date", "body changed", "wrong merchant"]
)
def test_fake_rejects_bad_signatures_with_the_gateway_401(cybersource_fake, breakage):
    fake = cybersource_fake
    body = b'{"buyerInformation":{"merchantCustomerID":"r1"}}'
    kwargs = {}
    if breakage == "wrong secret":
        kwargs["secret"] = base64.b64encode(b"x" * 32).decode()
    if breakage in ("stale date", "future date"):
        kwargs["clock"] = lambda: time.time() + (-400 if breakage == "stale date" else 400)
    prepared = signed(fake, "POST", "/tms/v2/customers", body, **kwargs)
    if breakage == "unsigned":
        del prepared.headers["Signature"]
    if breakage == "body changed":
        prepared.body = body.replace(b"r1", b"r2")
    if breakage == "wrong merchant":
        prepared.headers["v-c-merchant-id"] = "someone-else"
    response = send(prepared)
    assert response.status_code == 401
    assert response.json() == {"response": {"rmsg": "Authentication Failed"}}
    assert not fake.customers


def test_fake_accepts_a_correct_signature(cybersource_fake):
    response = send(
        signed(
            cybersource_fake, "POST", "/tms/v2/customers", b'{"buyerInformation":{"merchantCustomerID":"r1"}}'
        )
    )
    assert response.status_code == 201 and response.json()["buyerInformation"]["merchantCustomerID"] == "r1"


def test_wrong_credentials_are_an_authentication_error(cybersource_fake, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = base64.b64encode(b"not the shared secret at all....").decode()
    processor = CyberSourceProcessor("bad", cybersource_fake.account_options(SHARED_SECRET=wrong))
    with pytest.raises(AuthenticationError) as info:
        processor.create_customer(CustomerData(reference_id="r-1"))
    assert info.value.http_status == 401 and info.value.message == "Authentication Failed"
    assert wrong not in caplog.text + str(info.value)


def test_malformed_shared_secret_is_reported_by_check_options_and_on_use():
    processor = CyberSourceProcessor(
        "bad", {"MERCHANT_ID": "m", "KEY_ID": "k", "SHARED_SECRET": "not base64!"}
    )
    assert any("SHARED_SECRET" in problem for problem in processor.check_options())
    with pytest.raises(AuthenticationError):
        processor.list_payment_methods(CustomerRef(id="C"))
    assert CyberSourceProcessor("x", {}).check_options() == [
        "OPTIONS is missing 'MERCHANT_ID'",
        "OPTIONS is missing 'KEY_ID'",
        "OPTIONS is missing 'SHARED_SECRET'",
    ]


# -- amounts (conversion itself: tests/processors/test_money.py) ----------------------------------


def test_charge_sends_decimal_amount_and_reads_it_back(processor, harness, customer):
    method = vault(harness, customer)
    result = pay(processor, customer, method, amount=10001)
    assert result.amount == 10001 and result.amount_captured == 10001
    assert result.raw["orderInformation"]["amountDetails"]["authorizedAmount"] == "100.01"
    assert str(harness.fake.transactions[result.reference]["amount"]) == "100.01"


# -- customers, methods, addresses -------------------------------------------------------------------


def test_customer_fields_and_defined_data(processor, harness):
    created = processor.create_customer(
        CustomerData(
            reference_id="shop-42", email="a@example.com", metadata={"data1": "gold", "tier": "ignored"}
        )
    )
    stored = harness.fake.customers[created.id]
    assert stored["buyer"] == {"merchantCustomerID": "shop-42", "email": "a@example.com"}
    assert stored["defined"] == [{"name": "data1", "value": "gold"}]
    updated = processor.update_customer(
        CustomerRef(id=created.id), CustomerData(reference_id="shop-42", email="b@example.com")
    )
    assert updated.raw["buyerInformation"]["email"] == "b@example.com"
    processor.delete_customer(CustomerRef(id=created.id, reference_id="shop-42"))
    assert created.id not in harness.fake.customers
    assert processor.create_customer(CustomerData(reference_id="shop-42")).id != created.id


def test_recreate_after_the_customer_vanished_creates_a_new_one(processor, harness):
    first = processor.create_customer(CustomerData(reference_id="gone-1"))
    del harness.fake.customers[first.id]
    assert processor.create_customer(CustomerData(reference_id="gone-1")).id != first.id


def test_tms_validation_error_carries_the_tms_message(processor):
    with pytest.raises(InvalidRequestError) as info:
        processor.create_customer(CustomerData(reference_id="r-bad", email="not-an-email"))
    assert info.value.http_status == 400 and info.value.code == "invalidFields"
    assert "buyerInformation.email" in info.value.message


def test_vaulted_card_display_data_and_sanitized_raw(processor, harness, customer):
    method = vault(
        harness,
        customer,
        holder_name="Alex Morales",
        billing_address=AddressData(
            line1="1 Market St", city="San Francisco", state="CA", postal_code="94105", country="us"
        ),
    )
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == ("visa", "4242", 12, 2031)
    assert method.verification_status == base.VERIFICATION_SUCCESS and method.is_default
    assert method.holder_name == "Alex Morales"
    assert method.fingerprint == harness.fake.instruments[method.method_id]["identifier"]
    assert harness.fake.instruments[method.method_id]["bill_to"]["country"] == "US"
    text = json.dumps(dict(method.raw))
    assert method.token not in text and method.fingerprint not in text and "4242424242424242" not in text
    assert method.raw["bin"] == "424242"


def test_transient_token_is_single_use_and_checked(processor, harness, customer):
    token = harness.fake.tokenize_card("4242424242424242", 12, 2031)
    processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=token))
    for bad in (token, token[:-4] + "AAAA", "not-a-token"):
        with pytest.raises(TemporaryTokenError) as info:
            processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=bad))
        assert (
            info.value.code == "INVALID_DATA" and "tokenInformation.transientTokenJwt" in info.value.message
        )


def test_expired_transient_token(processor, harness, customer):
    token = harness.fake.tokenize_card("4242424242424242", 12, 2031)
    for record in harness.fake.transient.values():
        record["expires"] = time.time() - 1
    with pytest.raises(TemporaryTokenError):
        processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=token))


def test_verification_refused(processor, harness, customer):
    with pytest.raises(VerificationFailedError) as info:
        vault(harness, customer, "4000000000000127")
    assert info.value.code == "PROCESSOR_DECLINED" and "General decline" in info.value.message
    assert processor.list_payment_methods(customer) == []


def test_delete_default_card_promotes_another(processor, harness, customer):
    one = vault(harness, customer)
    two = vault(harness, customer, "5555555555554444")
    assert one.is_default and not two.is_default
    processor.delete_payment_method(customer, one.ref)
    remaining = processor.list_payment_methods(customer)
    assert [(m.method_id, m.is_default) for m in remaining] == [(two.method_id, True)]


def test_list_pages_through_more_than_one_page(processor, harness, customer, monkeypatch):
    monkeypatch.setattr("vault_wallets.processors.cybersource._PAGE", 2)
    ids = {
        vault(harness, customer, number).method_id
        for number in (
            "4242424242424242",
            "5555555555554444",
            "4111111111111111",
            "378282246310005",
            "6011111111111117",
        )
    }
    assert {m.method_id for m in processor.list_payment_methods(customer)} == ids
    assert {m.brand for m in processor.list_payment_methods(customer)} == {
        "visa",
        "mastercard",
        "amex",
        "discover",
    }


def test_make_default_on_vault(processor, harness, customer):
    vault(harness, customer)
    second = vault(harness, customer, "5555555555554444", make_default=True)
    assert second.is_default
    assert harness.fake.customers[customer.id]["default_instrument"] == second.method_id


def test_fetch_unknown_method_is_not_found(processor, customer):
    with pytest.raises(NotFoundError) as info:
        processor.fetch_payment_method(customer, MethodRef(token="F" * 32))
    assert info.value.code == "notFound"


def test_closed_and_expired_cards(processor, harness, customer):
    closed = vault(harness, customer)
    harness.fake.network_update(closed.method_id, exp_month=12, exp_year=2031, closed=True)
    assert processor.fetch_payment_method(customer, closed.ref).status == base.METHOD_CLOSED
    expired = vault(harness, customer, "5555555555554444")
    harness.fake.network_update(expired.method_id, exp_month=1, exp_year=2020)
    assert processor.fetch_payment_method(customer, expired.ref).status == base.METHOD_EXPIRED


def test_addresses_round_trip(processor, harness, customer):
    home = processor.save_address(
        customer,
        AddressData(
            line1="1 Market St",
            city="San Francisco",
            state="CA",
            postal_code="94105",
            country="US",
            name="Alex Morales",
        ),
    )
    assert home.processor_id and home.is_default
    assert harness.fake.addresses[home.processor_id]["ship_to"]["lastName"] == "Morales"
    work = processor.save_address(
        customer, AddressData(line1="2 Main St", city="Boston", country="US", is_default=True)
    )
    assert work.is_default
    moved = processor.save_address(
        customer, AddressData(line1="3 Elm St", city="Boston", country="US", processor_id=home.processor_id)
    )
    assert moved.processor_id == home.processor_id
    assert harness.fake.addresses[home.processor_id]["ship_to"]["address1"] == "3 Elm St"
    processor.delete_address(customer, work)  # the default: the other one is promoted first
    assert list(harness.fake.addresses) == [home.processor_id]
    with pytest.raises(InvalidRequestError):
        processor.save_address(customer, AddressData(line1="", city="", country="US"))
    with pytest.raises(InvalidRequestError):
        processor.delete_address(customer, AddressData(line1="never saved"))


# -- money -----------------------------------------------------------------------------------------------


def test_processor_error_card_is_a_failed_result(processor, harness, customer):
    method = vault(harness, customer, "4000000000001216")
    result = pay(processor, customer, method)
    assert result.status == base.CHARGE_FAILED and result.failure_code == "PROCESSOR_ERROR"
    assert "Processor failure" in result.failure_message


def test_decline_all_fault(processor, harness, customer):
    method = vault(harness, customer)
    harness.fake.faults.decline_all = True
    result = pay(processor, customer, method)
    assert (result.status, result.failure_code) == (base.CHARGE_DECLINED, "PROCESSOR_DECLINED")


def test_partial_capture_then_refund_uses_the_capture(processor, harness, customer):
    method = vault(harness, customer)
    auth = pay(processor, customer, method, amount=5000, capture=False)
    captured = processor.capture(auth.reference, 3000)
    assert (captured.reference, captured.amount_captured) == (auth.reference, 3000)
    capture_id = captured.raw["id"]
    assert harness.fake.transactions[capture_id]["kind"] == "capture"
    refunded = processor.refund(auth.reference)
    assert (refunded.status, refunded.amount_refunded) == (base.CHARGE_REFUNDED, 3000)
    assert harness.fake.transactions[capture_id]["refunded"] == 30


def test_capture_more_than_authorized_has_cybersource_reason(processor, harness, customer):
    method = vault(harness, customer)
    auth = pay(processor, customer, method, amount=1000, capture=False)
    with pytest.raises(InvalidRequestError) as info:
        processor.capture(auth.reference, 1001)
    assert info.value.code == "EXCEEDS_AUTH_AMOUNT"
    assert "exceeds the originally authorized amount" in info.value.message


def test_void_a_sale_and_refund_partially(processor, harness, customer):
    method = vault(harness, customer)
    sale = pay(processor, customer, method, amount=2000)
    partial = processor.refund(sale.reference, 500)
    assert partial.amount_refunded == 500
    with pytest.raises(InvalidRequestError) as info:
        processor.refund(sale.reference, 1600)
    assert info.value.code == "INVALID_AMOUNT"
    other = pay(processor, customer, method, amount=800)
    assert processor.void(other.reference).status == base.CHARGE_VOIDED
    assert harness.fake.transactions[other.reference]["closed"]


def test_follow_ons_in_a_new_process_use_transaction_details(harness, customer):
    method = vault(harness, customer)
    auth = pay(harness.processor, customer, method, amount=2500, capture=False)
    fresh = CyberSourceHarness(harness.fake).processor  # another worker: an empty memo
    captured = fresh.capture(auth.reference)
    assert captured.amount_captured == 2500
    third = CyberSourceHarness(harness.fake).processor
    refunded = third.refund(auth.reference, 1000)  # finds the capture among the related transactions
    assert refunded.amount_refunded == 1000
    assert ("GET", f"/tss/v2/transactions/{auth.reference}", 200) in harness.fake.calls
    sale = pay(harness.processor, customer, method, amount=700)
    assert CyberSourceHarness(harness.fake).processor.void(sale.reference).status == base.CHARGE_VOIDED


def test_follow_on_for_a_declined_payment_is_refused(harness, customer):
    method = vault(harness, customer, "4000000000000002")
    declined = pay(harness.processor, customer, method)
    with pytest.raises(InvalidRequestError) as info:
        CyberSourceHarness(harness.fake).processor.refund(declined.reference)
    assert info.value.code == "not_a_payment"


def test_refund_of_an_uncaptured_authorization_is_refused(processor, harness, customer):
    auth = pay(processor, customer, vault(harness, customer), capture=False)
    with pytest.raises(InvalidRequestError) as info:
        processor.refund(auth.reference)
    assert info.value.code == "not_captured"


def test_credit(processor, harness, customer):
    method = vault(harness, customer)
    result = processor.credit(
        ChargeRequest(customer=customer, method=method.ref, amount=1250, currency="USD")
    )
    assert (result.status, result.amount_refunded) == (base.CHARGE_REFUNDED, 1250)
    assert harness.fake.transactions[result.reference]["kind"] == "credit"


def test_charge_without_a_default_card_is_invalid(processor, customer):
    with pytest.raises(InvalidRequestError) as info:
        pay(processor, customer)
    assert (
        info.value.code == "INVALID_DATA" and "paymentInformation.paymentInstrument.id" in info.value.message
    )


# -- retries and idempotency -------------------------------------------------------------------------


def test_post_is_never_retried_on_503_even_with_an_idempotency_key(processor, harness, customer):
    method = vault(harness, customer)
    harness.fake.calls.clear()
    harness.fake.faults.fail_next(503, 1)
    with pytest.raises(ProcessorUnavailable):
        processor.charge(
            ChargeRequest(
                customer=customer,
                method=method.ref,
                amount=100,
                currency="USD",
                idempotency_key=uuid.uuid4().hex,
            )
        )
    assert [c for c in harness.fake.calls if c[0] == "POST"] == [("POST", "/pts/v2/payments", 503)]
    assert not any(
        t["kind"] in ("sale", "authorization") for t in harness.fake.transactions.values() if t["amount"] == 1
    )


def test_get_is_retried_on_503(processor, harness, customer):
    vault(harness, customer)
    harness.fake.calls.clear()
    harness.fake.faults.fail_next(503, 1)
    assert len(processor.list_payment_methods(customer)) == 1
    assert [c[2] for c in harness.fake.calls] == [503, 200]


def test_5xx_carries_cybersource_message(processor, harness, customer):
    harness.fake.faults.fail_next(502, 5)
    with pytest.raises(ProcessorUnavailable) as info:
        processor.fetch_payment_method(customer, MethodRef(token="A" * 32))
    assert info.value.http_status == 502 and "simulated HTTP 502" in info.value.message


# -- error mapping ---------------------------------------------------------------------------------------


def test_error_message_shapes():
    pts = {
        "submitTimeUtc": "2024-01-01T00:00:00Z",
        "status": "INVALID_REQUEST",
        "reason": "MISSING_FIELD",
        "message": "Declined - The request is missing one or more fields",
        "details": [{"field": "orderInformation.amountDetails.totalAmount", "reason": "MISSING_FIELD"}],
    }
    assert error_message(pts, None) == (
        "Declined - The request is missing one or more fields "
        "(orderInformation.amountDetails.totalAmount: MISSING_FIELD)",
        "MISSING_FIELD",
    )
    tms = {
        "errors": [
            {
                "type": "invalidFields",
                "message": "Invalid",
                "details": [{"name": "buyerInformation.email", "location": "body"}],
            }
        ]
    }
    assert error_message(tms, None) == ("Invalid (buyerInformation.email)", "invalidFields")
    assert error_message({"response": {"rmsg": "Authentication Failed"}}, None) == (
        "Authentication Failed",
        "authentication_failed",
    )
    oauth = {"response": {"rmsg": '{"error":"UNAUTHORIZED_USER","error_description":"UNAUTHORIZED USER"}'}}
    assert error_message(oauth, None) == ("UNAUTHORIZED USER", "UNAUTHORIZED_USER")
    declined = {
        "status": "DECLINED",
        "errorInformation": {"reason": "EXPIRED_CARD", "message": "Expired card"},
    }
    assert error_message(declined, None) == ("Expired card", "EXPIRED_CARD")
    assert error_message(["odd"], None) == ("", "")


# -- Microform capture context ---------------------------------------------------------------------------


def test_client_token_is_a_capture_context(processor, harness, customer):
    token = processor.get_client_token(customer)
    assert token.token.count(".") == 2 and token.expires_at > datetime.now(timezone.utc)
    payload = token.token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["ctx"][0]["data"]["targetOrigins"] == ["http://localhost:8000"]


def test_client_token_needs_target_origins(cybersource_fake, customer):
    options = cybersource_fake.account_options()
    del options["TARGET_ORIGINS"]
    with pytest.raises(base.UnsupportedOperation):
        CyberSourceProcessor("x", options).get_client_token(customer)


def test_fake_tokens_endpoint_plays_microform(cybersource_fake, processor, customer):
    response = requests.post(
        cybersource_fake.url + "/_fake/tokens",
        timeout=5,
        json={"number": "4242 4242 4242 4242", "exp_month": 3, "exp_year": 2032},
    )
    assert response.status_code == 201
    method = processor.vault_payment_method(
        VaultRequest(customer=customer, temporary_token=response.json()["token"])
    )
    assert (method.last4, method.exp_month, method.exp_year) == ("4242", 3, 2032)
    assert (
        requests.post(
            cybersource_fake.url + "/_fake/tokens",
            timeout=5,
            json={"number": "4242424242424241", "exp_month": 3, "exp_year": 2032},
        ).status_code
        == 400
    )
    assert not any("4242424242424242" in json.dumps(v) for v in cybersource_fake.transient.values())


# -- webhooks --------------------------------------------------------------------------------------------

VECTOR_KEY = "dGVzdF9rZXk="
VECTOR_KEY_ID = "bf44c857-b182-bb05-e053-34b8d30a7a72"
VECTOR_HEADER = (
    "t=1617830804768;keyId=bf44c857-b182-bb05-e053-34b8d30a7a72;"
    "sig=CzHY47nzJgCSD/BREtSIb+9l/vfkaaL4qf9n8MNJ4CY="
)
VECTOR_PAYLOAD = b"this is a decrypted payload"
VECTOR_RECEIVED = datetime.fromtimestamp(1617830804.768 + 2, tz=timezone.utc)


def webhook_processor(keys):
    return CyberSourceProcessor(
        "wh", {"MERCHANT_ID": "m", "KEY_ID": "k", "SHARED_SECRET": VECTOR["secret"], "WEBHOOK_KEYS": keys}
    )


def test_webhook_vector_crypto():
    assert (
        webhook_signature(decode_key(VECTOR_KEY), "1617830804768", VECTOR_PAYLOAD)
        == "CzHY47nzJgCSD/BREtSIb+9l/vfkaaL4qf9n8MNJ4CY="
    )
    assert parse_webhook_signature(VECTOR_HEADER)["sig"] == "CzHY47nzJgCSD/BREtSIb+9l/vfkaaL4qf9n8MNJ4CY="
    delivery = WebhookRequest(
        headers={"v-c-signature": VECTOR_HEADER}, body=VECTOR_PAYLOAD, received_at=VECTOR_RECEIVED
    )
    for keys in ({VECTOR_KEY_ID: VECTOR_KEY}, [VECTOR_KEY], VECTOR_KEY):
        webhook_processor(keys).verify_webhook(delivery)  # the vector's own t, as received then


def test_webhook_vector_negative_case_key_not_decoded():
    # Keyed with the base64 text itself the HMAC is aYG2…; the header carrying it must fail.
    assert (
        base64.b64encode(
            __import__("hmac").new(VECTOR_KEY.encode(), b"1617830804768." + VECTOR_PAYLOAD, "sha256").digest()
        ).decode()
        == "aYG2LmG+gldx5aVoFnI8V/43RkXur0eqnGyHNBsY4dU="
    )
    header = VECTOR_HEADER.replace(
        "CzHY47nzJgCSD/BREtSIb+9l/vfkaaL4qf9n8MNJ4CY=", "aYG2LmG+gldx5aVoFnI8V/43RkXur0eqnGyHNBsY4dU="
    )
    with pytest.raises(WebhookVerificationError, match="bad signature"):
        webhook_processor({VECTOR_KEY_ID: VECTOR_KEY}).verify_webhook(
            WebhookRequest(
                headers={"v-c-signature": header}, body=VECTOR_PAYLOAD, received_at=VECTOR_RECEIVED
            )
        )


def test_webhook_vector_is_stale_today():
    with pytest.raises(WebhookVerificationError, match="stale"):
        webhook_processor([VECTOR_KEY]).verify_webhook(
            WebhookRequest(headers={"v-c-signature": VECTOR_HEADER}, body=VECTOR_PAYLOAD)
        )


@pytest.mark.parametrize(
    ("offset_ms", "reason"), [(-301_000, "stale"), (301_000, "future"), (-290_000, None), (290_000, None)]
)
def test_webhook_freshness_window(harness, customer, offset_ms, reason):
    method = vault(harness, customer)
    delivery = harness.signed_update_webhook(
        customer, method, timestamp_ms=int(time.time() * 1000) + offset_ms
    )
    if reason is None:
        harness.processor.verify_webhook(delivery)
    else:
        with pytest.raises(WebhookVerificationError, match=reason):
            harness.processor.verify_webhook(delivery)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "t=abc;keyId=x;sig=y",
        "t=123",
        "t=;keyId=;sig=",
        "keyId=a;sig=b",
        "t=١٢٣;keyId=bf44c857-b182-bb05-e053-34b8d30a7a72;sig=x",
        "t=1" + "0" * 40 + ";keyId=k;sig=s",
        "t=1617830804768;keyId=bf44c857-b182-bb05-e053-34b8d30a7a72;sig=é—≠",
    ],
)
def test_malformed_signature_headers_are_verification_errors(header):
    headers = {} if header is None else {"v-c-signature": header}
    with pytest.raises(WebhookVerificationError):
        webhook_processor({VECTOR_KEY_ID: VECTOR_KEY}).verify_webhook(
            WebhookRequest(headers=headers, body=VECTOR_PAYLOAD, received_at=VECTOR_RECEIVED)
        )


def test_webhook_key_selection(harness, customer):
    method = vault(harness, customer)
    delivery = harness.signed_update_webhook(customer, method)
    other = base64.b64encode(b"another key").decode()
    with pytest.raises(WebhookVerificationError, match="unknown webhook keyId"):
        webhook_processor({"another-id": harness.fake.WEBHOOK_KEY}).verify_webhook(delivery)
    with pytest.raises(WebhookVerificationError, match="bad signature"):
        webhook_processor({harness.fake.WEBHOOK_KEY_ID: other}).verify_webhook(delivery)
    webhook_processor([other, harness.fake.WEBHOOK_KEY]).verify_webhook(delivery)  # rotation: any listed key
    with pytest.raises(WebhookVerificationError, match="no webhook key"):
        webhook_processor({}).verify_webhook(delivery)
    with pytest.raises(WebhookVerificationError, match="misconfigured"):
        webhook_processor(["%%%"]).verify_webhook(delivery)
    assert webhook_processor(["%%%"]).check_options()


def test_network_update_names_every_instrument_of_the_card(harness, customer, processor):
    method = vault(harness, customer)
    other_customer = CustomerRef(id=processor.create_customer(CustomerData(reference_id="r-other")).id)
    same_card = vault(harness, other_customer)
    assert same_card.fingerprint == method.fingerprint
    harness.fake.network_update(method.method_id, exp_month=11, exp_year=2031, last4="4243")
    delivery = harness.signed_update_webhook(customer, method)
    harness.processor.verify_webhook(delivery)
    event_id, event_type = processor.webhook_event_id(delivery)
    assert event_type == "tms.networktoken.updated" and event_id.endswith("-0")
    [event] = processor.parse_webhook(delivery)
    assert event.type == base.EVENT_PAYMENT_METHOD_UPDATED
    assert set(event.payment_method_ids) == {method.method_id, same_card.method_id}
    assert event.data["reason"] == "TOKEN_EXPIRY_UPDATED" and event.occurred_at.tzinfo is not None
    fresh = processor.fetch_payment_method(other_customer, same_card.ref)
    assert (fresh.last4, fresh.exp_month, fresh.exp_year) == ("4243", 11, 2031)


def test_other_events_are_unknown_and_bodies_are_checked(harness, processor):
    headers, body = harness.fake.signed_delivery(
        {
            "eventType": "tms.networktoken.provisioned",
            "transactionTraceId": "trace-1",
            "payload": {"data": {}},
        }
    )
    delivery = WebhookRequest(headers=headers, body=body)
    processor.verify_webhook(delivery)
    [event] = processor.parse_webhook(delivery)
    assert (event.type, event.event_id) == (base.EVENT_UNKNOWN, "trace-1")
    for bad in (b"not json", b"[1, 2]", b"{}"):
        with pytest.raises(WebhookParseError):
            processor.webhook_event_id(WebhookRequest(headers={}, body=bad))


def test_no_secret_in_logs_or_errors_across_operations(harness, customer, caplog):
    caplog.set_level(logging.DEBUG)
    method = vault(harness, customer)
    harness.fake.faults.fail_next(400, 1)
    with pytest.raises(InvalidRequestError) as info:
        harness.processor.fetch_payment_method(customer, method.ref)
    text = caplog.text + str(info.value) + repr(harness.processor) + repr(harness.processor.signer)
    for secret in (harness.fake.SHARED_SECRET, harness.fake.WEBHOOK_KEY, method.token, customer.id):
        assert secret not in text


def test_void_after_a_separate_capture_voids_the_capture(processor, harness, customer):
    auth = pay(processor, customer, vault(harness, customer), amount=900, capture=False)
    capture_id = processor.capture(auth.reference).raw["id"]
    assert processor.void(auth.reference).status == base.CHARGE_VOIDED
    assert harness.fake.transactions[capture_id]["closed"]
    assert harness.fake.transactions[auth.reference]["captured"] == 0


class DictCache:
    """The part of Django's cache API the processor uses."""

    def __init__(self, fail=False):
        self.data, self.fail = {}, fail

    def get(self, key):
        if self.fail:
            raise ConnectionError("cache down")
        return self.data.get(key)

    def set(self, key, value):
        if self.fail:
            raise ConnectionError("cache down")
        self.data[key] = value

    def delete(self, key):
        self.data.pop(key, None)


def test_shared_reference_cache_makes_create_idempotent_across_workers(cybersource_fake):
    cache = DictCache()
    one = CyberSourceHarness(cybersource_fake, REFERENCE_CACHE=cache).processor
    two = CyberSourceHarness(cybersource_fake, REFERENCE_CACHE=cache).processor
    data = CustomerData(reference_id="shared ref with spaces/and:colons")
    assert one.create_customer(data).id == two.create_customer(data).id
    assert len(cybersource_fake.customers) == 1
    assert all(len(key) < 120 and " " not in key for key in cache.data)


def test_a_failing_reference_cache_is_a_miss_not_an_error(cybersource_fake, caplog):
    processor = CyberSourceHarness(cybersource_fake, REFERENCE_CACHE=DictCache(fail=True)).processor
    created = processor.create_customer(CustomerData(reference_id="r-cache-down"))
    assert created.id in cybersource_fake.customers
    assert "reference cache get failed: ConnectionError" in caplog.text


# -- lost answers: Transaction Search and Transaction Details (docs/reliability.md) ---------------
# Wire facts: cybersource-rest-client-python CyberSource/api/search_transactions_api.py (create_search:
# POST /tss/v2/searches, Accept/Content-Type application/json;charset=utf-8, answer
# TssV2TransactionsPost201Response: _embedded.transactionSummaries[]); query syntax
# "clientReferenceInformation.code:<code>" as in CyberSource/cybersource-rest-samples-php
# Samples/TransactionSearch/CoreServices/CreateSearchRequest.php.


def keyed(customer, method, key, amount=1999, capture=True, reference=""):
    return ChargeRequest(customer=customer, method=method.ref, amount=amount, currency="USD", capture=capture,
                         idempotency_key=key, reference=reference)


def test_a_lost_charge_answer_is_found_by_its_key(processor, harness, customer):
    method = vault(harness, customer)
    key = f"order-{uuid.uuid4().hex[:10]}"
    harness.fake.faults.drop_next(path="/pts/v2/payments")
    with pytest.raises(ProcessorUnavailable):
        processor.charge(keyed(customer, method, key))
    made = [t for t in harness.fake.transactions.values() if t["code"] == key]
    assert len(made) == 1 and made[0]["kind"] == "sale"  # CyberSource charged; the answer was lost
    found = processor.find_charge(keyed(customer, method, key))
    assert (found.reference, found.status, found.amount, found.amount_captured) == (
        made[0]["id"], base.CHARGE_CAPTURED, 1999, 1999)
    search = [c for c in harness.fake.calls if c[0] == "POST" and c[1] == "/tss/v2/searches"]
    assert search and search[-1][2] == 201
    assert len([t for t in harness.fake.transactions.values() if t["code"] == key]) == 1  # nothing re-sent


def test_find_charge_finds_nothing_for_a_charge_never_made_or_not_yet_indexed(processor, harness, customer):
    method = vault(harness, customer)
    assert processor.find_charge(keyed(customer, method, "order-never-sent")) is None
    harness.fake.search_lag = 60.0  # indexed a minute later
    key = f"order-{uuid.uuid4().hex[:10]}"
    processor.charge(keyed(customer, method, key))
    assert processor.find_charge(keyed(customer, method, key)) is None
    assert processor.charge_lookup_settle_seconds >= 3600  # "nothing" is believed only much later
    harness.fake.search_lag = 0.0
    assert processor.find_charge(keyed(customer, method, key)).status == base.CHARGE_CAPTURED


def test_find_charge_matches_customer_amount_and_kind(processor, harness, customer):
    method = vault(harness, customer)
    other = processor.create_customer(CustomerData(reference_id=f"ref-{uuid.uuid4().hex[:12]}"))
    other = CustomerRef(id=other.id)
    other_method = vault(harness, other, "5555555555554444")
    key = f"order-{uuid.uuid4().hex[:10]}"
    processor.charge(keyed(other, other_method, key))  # another customer used the same key
    assert processor.find_charge(keyed(customer, method, key)) is None
    mine = processor.charge(keyed(customer, method, key, amount=2500, capture=False))
    processor.capture(mine.reference)  # the capture carries the same code: not a candidate
    assert processor.find_charge(keyed(customer, method, key, amount=1999)) is None  # wrong amount
    found = processor.find_charge(keyed(customer, method, key, amount=2500, capture=False))
    assert (found.reference, found.status, found.amount_captured) == (mine.reference, base.CHARGE_CAPTURED, 2500)


def test_find_charge_refuses_what_it_cannot_tell_apart(processor, harness, customer):
    method = vault(harness, customer)
    with pytest.raises(base.UnsupportedOperation):  # an order reference is shared by every attempt
        processor.find_charge(keyed(customer, method, "k-1", reference="order-7"))
    with pytest.raises(base.UnsupportedOperation):
        processor.find_charge(keyed(customer, method, ""))
    with pytest.raises(base.UnsupportedOperation):  # not something a search query can hold as is
        processor.find_charge(keyed(customer, method, "order 7 OR id:x"))
    key = f"order-{uuid.uuid4().hex[:10]}"
    processor.charge(keyed(customer, method, key))
    processor.charge(keyed(customer, method, key))  # CyberSource has no idempotency: two payments
    with pytest.raises(base.UnsupportedOperation) as info:
        processor.find_charge(keyed(customer, method, key))
    assert "staff" in info.value.message


def test_a_declined_lost_charge_is_found_declined(processor, harness, customer):
    method = vault(harness, customer, "4000000000000002")
    key = f"order-{uuid.uuid4().hex[:10]}"
    harness.fake.faults.drop_next(path="/pts/v2/payments")
    with pytest.raises(ProcessorUnavailable):
        processor.charge(keyed(customer, method, key))
    found = processor.find_charge(keyed(customer, method, key))
    assert found.status == base.CHARGE_DECLINED and found.amount_captured == 0 and found.failure_code


def test_fetch_charge_reads_captures_refunds_and_voids(harness, customer):
    method = vault(harness, customer)
    processor = harness.processor
    auth = pay(processor, customer, method, amount=5000, capture=False)
    fresh = lambda: CyberSourceHarness(harness.fake).processor  # noqa: E731 - no memo: the processor's state
    assert (fresh().fetch_charge(auth.reference).status, fresh().fetch_charge(auth.reference).amount_captured) == (
        base.CHARGE_AUTHORIZED, 0)
    processor.capture(auth.reference, 3000)
    state = fresh().fetch_charge(auth.reference)
    assert (state.status, state.amount, state.amount_captured, state.amount_refunded) == (
        base.CHARGE_CAPTURED, 5000, 3000, 0)
    processor.refund(auth.reference, 1000)  # a refund of the capture: related to the capture
    state = fresh().fetch_charge(auth.reference)
    assert (state.status, state.amount_captured, state.amount_refunded) == (base.CHARGE_REFUNDED, 3000, 1000)
    sale = pay(processor, customer, method, amount=800)
    assert fresh().fetch_charge(sale.reference).amount_captured == 800
    processor.void(sale.reference)
    assert fresh().fetch_charge(sale.reference).status == base.CHARGE_VOIDED
    other = pay(processor, customer, method, amount=900, capture=False)
    processor.void(other.reference)  # a reversal of the authorization
    assert fresh().fetch_charge(other.reference).status == base.CHARGE_VOIDED
