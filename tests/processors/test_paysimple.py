"""PaySimple API v4: the shared conformance suite plus PaySimple's own rules, over real HTTP to the fake."""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests

from vault_wallets.processors import base
from vault_wallets.processors.base import (
    AuthenticationError,
    ChargeRequest,
    CheckoutRequest,
    CustomerData,
    CustomerRef,
    InvalidRequestError,
    NotFoundError,
    ProcessorUnavailable,
    TemporaryTokenError,
    UnsupportedOperation,
    VaultRequest,
    WebhookParseError,
    WebhookRequest,
    WebhookVerificationError,
)
from vault_wallets.processors.paysimple import (
    PaySimpleProcessor,
    basic_authorization,
    customer_account_value,
    format_timestamp,
    parse_timestamp,
    psserver_authorization,
    psserver_signature,
    to_cents,
    to_dollars,
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
from vault_wallets.testing.fakes import paysimple as paysimple_fakes
from vault_wallets.testing.fakes.paysimple import PaySimpleFake

paysimple_fake = paysimple_fakes.paysimple_fake  # the fixture

FUTURE_YEAR = datetime.now(timezone.utc).year + 3
SIGNATURE_HEADER = "paysimple-hmac-sha256"


def make_processor(fake: PaySimpleFake, **options) -> PaySimpleProcessor:
    settings = {
        "API_USERNAME": fake.API_USERNAME,
        "API_KEY": fake.API_KEY,
        "BASE_URL": fake.url,
        "WEBHOOK_SECRET": fake.WEBHOOK_SECRET,
        "TIMEOUT": (2, 0.5),
        "RETRIES": 1,
    }
    settings.update(options)
    return PaySimpleProcessor("paysimple-test", settings)


class PaySimpleHarness(ConformanceHarness):
    supports_authorize = False  # a v4 payment is a sale: no authorization-only payment, no capture
    supports_refund = True
    supports_charge_default = True
    CARDS = {CARD_OK: "4111111111111111", CARD_OK_OTHER: "5454545454545454", CARD_DECLINE: "4000000000000002"}

    def __init__(self, fake: PaySimpleFake, **options):
        self.fake = fake
        self.processor = make_processor(fake, **options)

    browser_token_is_vaulted = True

    def temporary_token(self, card: str = CARD_OK) -> str:
        raise NotImplementedError("PaySimpleJS vaults for one customer: use browser_token")

    def browser_token(self, customer, card: str = CARD_OK) -> str:
        """PaySimpleJS under the customer token ``prepare_checkout`` issued: accountRetrieved's account.id."""
        session = self.processor.prepare_checkout(CheckoutRequest(customer=customer))
        return self.fake.tokenize_card(self.CARDS[card], 12, FUTURE_YEAR, "996",
                                       auth_token=session.client["auth"]["token"])

    def network_update(self, customer, method, update: NetworkUpdate) -> None:
        self.fake.network_update(method.method_id, update.exp_month, update.exp_year, update.last4,
                                 update.closed)

    def signed_update_webhook(self, customer, method) -> WebhookRequest:
        headers, body = self.fake.customer_updated_delivery(customer.id)
        return WebhookRequest(headers=headers, body=body)

    def tamper(self, request: WebhookRequest) -> WebhookRequest:
        signature = request.header(SIGNATURE_HEADER)
        flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
        return WebhookRequest(headers={**request.headers, SIGNATURE_HEADER: flipped}, body=request.body)


class TestPaySimpleConformance(ProcessorConformance):
    @pytest.fixture(params=["basic", "psserver"])
    def harness(self, request, paysimple_fake):
        return PaySimpleHarness(paysimple_fake, AUTH_SCHEME=request.param)


# --------------------------------------------------------------------------------------
# Fixtures and helpers for PaySimple's own tests
# --------------------------------------------------------------------------------------


@pytest.fixture
def fake(paysimple_fake):
    return paysimple_fake


@pytest.fixture
def processor(fake):
    return make_processor(fake)


@pytest.fixture
def customer(processor):
    created = processor.create_customer(CustomerData(reference_id=f"cus_{uuid.uuid4().hex[:20]}",
                                                     name="Alex Morales", email="alex@example.com"))
    return CustomerRef(id=created.id)


def vault(processor, fake, customer, number="4111111111111111", **kwargs):
    """PaySimpleJS under this customer's token, then the server keeps accountRetrieved's account.id."""
    token = fake.tokenize_card(number, 12, FUTURE_YEAR, "996", customer_id=customer.id)
    return processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=token, **kwargs))


def charge(processor, customer, method, amount=1999, currency="USD", **kwargs):
    return processor.charge(ChargeRequest(customer=customer, method=method.ref if method else None,
                                          amount=amount, currency=currency, **kwargs))


def last_request(fake, method, path_pattern):
    matching = [r for r in fake.requests if r.method == method and re.fullmatch(path_pattern, r.path)]
    return matching[-1]


def raw_get(fake, path, authorization):
    return requests.get(fake.url + path, headers={"Authorization": authorization}, timeout=5)


# --------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------

# The sample merchant key from PaySimple's authorization page.
DOCS_KEY = ("YhLB81Vofv6Zndxc6QLkdmbaKwdKPawyoKOJ6eWrBJYmDPIKNWTDtwbvkcDIbVR0pVR8RYJKOfIskjBiDt"
            "dSV4d1R2FzEv3hmCtlTjdmgpQg41vhscg5juCO0tqTE6r0")


def test_psserver_header_matches_independently_computed_vector():
    # Expected values computed with `openssl dgst -sha256 -hmac KEY -binary | base64`, not with this code.
    assert psserver_signature(DOCS_KEY, "2017-07-20T20:45:44.0973928Z") == (
        "CI9SKkHJns1C2O8jgxiA+LvP33FEwDYvItPB4+NsLjc=")
    assert psserver_authorization("APIUser1000", DOCS_KEY, "2018-04-19T10:04:50.6882019-06:00") == (
        "PSSERVER accessid=APIUser1000; timestamp=2018-04-19T10:04:50.6882019-06:00; "
        "signature=awf7BPyMivE6aR4kA+2ywCWzt/23DbPLbUU0W2CsKCk=")


def test_basic_header_is_literal_not_base64():
    assert basic_authorization("APIUser1225", "abc:def") == "basic APIUser1225:abc:def"


def test_timestamps_use_seven_fraction_digits_and_parse_offsets():
    moment = datetime(2018, 4, 19, 16, 4, 59, 914859, tzinfo=timezone.utc)
    assert format_timestamp(moment) == "2018-04-19T16:04:59.9148590Z"
    parsed = parse_timestamp("2018-04-19T10:04:50.6882019-06:00")
    assert parsed == datetime(2018, 4, 19, 16, 4, 50, 688201, tzinfo=timezone.utc)
    assert parse_timestamp("2018-06-20T21:42:31Z").tzinfo is not None
    with pytest.raises(ValueError):
        parse_timestamp("20 June 2018")


@pytest.mark.parametrize("scheme", ["basic", "psserver"])
def test_each_scheme_sends_the_documented_header(fake, scheme):
    processor = make_processor(fake, AUTH_SCHEME=scheme)
    processor.create_customer(CustomerData(reference_id=f"ref-{scheme}-{uuid.uuid4().hex[:8]}", name="A B"))
    header = last_request(fake, "POST", "/v4/customer").header("Authorization")
    if scheme == "basic":
        assert header == f"basic {fake.API_USERNAME}:{fake.API_KEY}"
    else:
        match = re.fullmatch(r"PSSERVER accessid=(\S+); timestamp=(\S+); signature=(\S+)", header)
        assert match and match.group(1) == fake.API_USERNAME
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", match.group(2))
        assert match.group(3) == psserver_signature(fake.API_KEY, match.group(2))
        assert abs(parse_timestamp(match.group(2)) - datetime.now(timezone.utc)) < timedelta(seconds=30)


def _psserver_at(fake, moment, key=None, user=None):
    stamp = format_timestamp(moment)
    return psserver_authorization(user or fake.API_USERNAME, key or fake.API_KEY, stamp)


@pytest.mark.parametrize("case", ["stale", "future", "wrong_key", "wrong_user", "garbled", "base64_basic",
                                  "wrong_basic_key", "missing"])
def test_fake_rejects_bad_credentials_with_a_bodiless_401(fake, case):
    now = datetime.now(timezone.utc)
    header = {
        "stale": _psserver_at(fake, now - timedelta(minutes=6)),
        "future": _psserver_at(fake, now + timedelta(minutes=6)),
        "wrong_key": _psserver_at(fake, now, key="not-the-key"),
        "wrong_user": _psserver_at(fake, now, user="APIUser9999"),
        "garbled": "PSSERVER accessid=APIUser1225; timestamp=yesterday; signature=x",
        "base64_basic": "Basic QVBJVXNlcjEyMjU6ZmFrZQ==",
        "wrong_basic_key": f"basic {fake.API_USERNAME}:wrong",
        "missing": "",
    }[case]
    response = raw_get(fake, "/v4/customer", header)
    assert response.status_code == 401
    assert response.content == b""  # PaySimple: "A JSON response will not be returned"


def test_fake_accepts_psserver_within_the_window_and_local_offsets(fake):
    now = datetime.now(timezone.utc)
    assert raw_get(fake, "/v4/customer", _psserver_at(fake, now - timedelta(minutes=4))).status_code == 200
    local = now.astimezone(timezone(timedelta(hours=-6))).isoformat(timespec="microseconds")
    header = psserver_authorization(fake.API_USERNAME, fake.API_KEY, local)
    assert raw_get(fake, "/v4/customer", header).status_code == 200


def test_bad_credentials_become_authentication_error_without_the_key(fake):
    processor = make_processor(fake, API_KEY="wrong-key-123456", AUTH_SCHEME="psserver")
    with pytest.raises(AuthenticationError) as info:
        processor.list_payment_methods(CustomerRef(id="1"))
    assert info.value.http_status == 401
    assert "credentials" in info.value.message
    assert "wrong-key-123456" not in str(info.value) + repr(info.value)


def test_options_are_checked(fake):
    assert PaySimpleProcessor("x", {}).check_options() == ["OPTIONS is missing 'API_USERNAME'",
                                                             "OPTIONS is missing 'API_KEY'"]
    problems = make_processor(fake, AUTH_SCHEME="hmac", TIMEOUT="soon").check_options()
    assert problems == ["AUTH_SCHEME must be one of basic, psserver",
                        "TIMEOUT must be seconds or a (connect, read) pair of seconds"]
    assert make_processor(fake, TIMEOUT=7)._http.timeout == (7.0, 7.0)
    assert set(PaySimpleProcessor.secret_options) == {"API_KEY", "WEBHOOK_SECRET"}


# --------------------------------------------------------------------------------------
# Amounts
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cents", "dollars"), [(1999, "19.99"), (1, "0.01"), (10, "0.10"), (100, "1.00"),
                                                (123456789, "1234567.89"), (200000000, "2000000.00")])
def test_amounts_convert_exactly(cents, dollars):
    assert to_dollars(cents) == Decimal(dollars)
    assert str(to_dollars(cents)) == dollars
    assert to_cents(dollars) == cents
    assert to_cents(float(dollars)) == cents


def test_fractions_of_a_cent_are_refused():
    with pytest.raises(ValueError):
        to_cents("0.105")
    with pytest.raises(TypeError):
        to_dollars(19.99)


def test_the_wire_carries_decimal_dollars(processor, fake, customer):
    method = vault(processor, fake, customer)
    result = charge(processor, customer, method, amount=1999, reference="order-7", description="Order 7")
    raw = json.loads(last_request(fake, "POST", "/v4/payment").body)
    assert raw["Amount"] == 19.99 and b'"Amount": 19.99' in last_request(fake, "POST", "/v4/payment").body
    assert fake.payments[int(result.reference)]["Amount"] == Decimal("19.99")
    assert raw["PurchaseOrderNumber"] == "order-7" and raw["Description"] == "Order 7"
    assert result.amount == 1999 and result.amount_captured == 1999 and result.currency == "USD"


def test_only_usd_and_sane_amounts(processor, fake, customer):
    method = vault(processor, fake, customer)
    with pytest.raises(InvalidRequestError) as info:
        charge(processor, customer, method, currency="EUR")
    assert info.value.code == "unsupported_currency"
    for amount in (0, -5, 200000001):
        with pytest.raises(InvalidRequestError):
            charge(processor, customer, method, amount=amount)
    assert not fake.payments


# --------------------------------------------------------------------------------------
# Customers
# --------------------------------------------------------------------------------------


def test_reference_is_kept_in_customer_account(processor, fake):
    created = processor.create_customer(CustomerData(
        reference_id="cus_0123456789abcdefghijklmn", name="Mary Ann  Evans", email="m@example.com",
        phone="+1 (303) 555-0100", address=base.AddressData(line1="1 Main St", city="Denver", state="co",
                                                            postal_code="80202", country="us")))
    stored = fake.customers[int(created.id)]
    assert stored["CustomerAccount"] == "cus_0123456789abcdefghijklmn"
    assert (stored["FirstName"], stored["LastName"]) == ("Mary", "Ann Evans")
    assert stored["Phone"] == "3035550100"
    assert stored["BillingAddress"] == {"StreetAddress1": "1 Main St", "City": "Denver", "ZipCode": "80202",
                                        "StateCode": "CO", "Country": "US"}


def test_long_references_are_hashed_to_28_characters():
    value = customer_account_value("x" * 40)
    assert len(value) == 28 and value.startswith("vw-") and value == customer_account_value("x" * 40)
    assert customer_account_value("short") == "short"


def test_recreate_finds_the_customer_beyond_the_first_page(processor, fake):
    for n in range(230):  # fill past one page of 200
        fake.customers[10_000 + n] = {"Id": 10_000 + n, "CustomerAccount": f"other-{n}", "FirstName": "F",
                                      "LastName": "L"}
    data = CustomerData(reference_id="ref-late", name="Late Comer")
    first = processor.create_customer(data)
    assert processor.create_customer(data).id == first.id
    assert sum(1 for c in fake.customers.values() if c["CustomerAccount"] == "ref-late") == 1
    assert any(r.query.get("page") == "2" for r in fake.requests if r.path == "/v4/customer")


def test_update_keeps_fields_we_do_not_manage_and_delete_is_idempotent(processor, fake, customer):
    fake.customers[int(customer.id)]["Notes"] = "VIP"
    processor.update_customer(customer, CustomerData(reference_id="ref-upd", name="Alex Smith",
                                                     email="new@example.com"))
    stored = fake.customers[int(customer.id)]
    assert (stored["LastName"], stored["Email"], stored["Notes"]) == ("Smith", "new@example.com", "VIP")
    processor.delete_customer(customer)
    processor.delete_customer(customer)
    assert int(customer.id) not in fake.customers


def test_validation_errors_carry_paysimples_messages(processor):
    with pytest.raises(InvalidRequestError) as info:
        processor.create_customer(CustomerData(reference_id="ref-bad", name="A B", email="not-an-email"))
    assert info.value.code == "InvalidInput" and info.value.http_status == 400
    assert "Email: Email must be a valid email address." in info.value.message


def test_server_errors_are_unavailable_with_the_trace_code(processor, fake, customer):
    fake.faults.fail_next(500, count=2)
    with pytest.raises(ProcessorUnavailable) as info:
        processor.list_payment_methods(customer)
    assert "trace code" in info.value.message and info.value.code == "UnexpectedError"


# --------------------------------------------------------------------------------------
# Vaulting
# --------------------------------------------------------------------------------------


def test_vault_checks_the_account_is_our_customers_and_sanitizes(processor, fake, customer):
    method = vault(processor, fake, customer, "371449635398456")
    read_back = last_request(fake, "GET", r"/v4/account/creditcard/\d+")
    assert read_back.path == f"/v4/account/creditcard/{method.method_id}"
    assert (method.brand, method.last4, method.exp_month) == ("amex", "8456", 12)
    assert method.exp_year == FUTURE_YEAR
    assert method.verification_status == base.VERIFICATION_NOT_REQUESTED
    assert method.raw == {"Issuer": "Amex", "ExpirationDate": f"12/{FUTURE_YEAR}", "IsDefault": True,
                          "AccountType": "creditcard"}
    assert fake.accounts[int(method.method_id)]["CustomerId"] == int(customer.id)


def test_the_same_card_twice_matches_the_existing_account(processor, fake, customer):
    one = vault(processor, fake, customer, "6011000995504101")
    two = vault(processor, fake, customer, "6011000995504101")
    assert one.method_id == two.method_id and one.brand == "discover"
    assert len(processor.list_payment_methods(customer)) == 1


@pytest.mark.parametrize("problem", ["not-an-id", "unknown", "another-customer", "payment-token"])
def test_bad_browser_results_are_refused(processor, fake, customer, problem):
    """Only an account of *this* shopper's PaySimple customer is kept, whatever the browser sends."""
    if problem == "not-an-id":
        token = "7313702; DROP"
    elif problem == "unknown":
        token = "99999999"
    elif problem == "another-customer":
        other = processor.create_customer(CustomerData(reference_id="ref-someone-else", name="S E"))
        token = fake.tokenize_card("4111111111111111", 12, FUTURE_YEAR, customer_id=other.id)
    else:
        token = fake.tokenize_card("4111111111111111", 12, FUTURE_YEAR)  # a bare payment token (UUID)
    with pytest.raises(TemporaryTokenError):
        processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=token))
    assert processor.list_payment_methods(customer) == []


def test_vaulting_never_redeems_a_token_at_paymenttoken(processor, fake, customer):
    """Wire fault 1: POST /v4/paymenttoken takes {CustomerAccountId, CustomerId, Cvv} (official SDK,
    PaySimple/PaySimpleSDK src/PaySimpleSdk/Payments/PaymentTokenRequest.cs): it issues a token for an
    existing account.  Vaulting reads the PaySimpleJS account back instead."""
    method = vault(processor, fake, customer)
    assert not any(r.path == "/v4/paymenttoken" for r in fake.requests)
    assert last_request(fake, "GET", r"/v4/account/creditcard/\d+")
    assert method.method_id == method.token and method.brand == "visa"
    # The fake answers the old body the way the SDK's request model does: PaymentToken is not a member.
    old = processor._http.request("POST", "/v4/paymenttoken", allow_statuses=(400,), json={
        "PaymentToken": fake.tokenize_card("4111111111111111", 12, FUTURE_YEAR), "CustomerId": int(customer.id)})
    assert old.status_code == 400
    issued = processor._call("POST", "/v4/paymenttoken",
                             json={"CustomerAccountId": int(method.method_id), "CustomerId": int(customer.id)})
    assert issued["CustomerAccountId"] == int(method.method_id)


def test_prepare_checkout_gives_the_browser_a_customer_token_only(processor, fake, customer):
    session = processor.prepare_checkout(CheckoutRequest(customer=customer, customer_data=CustomerData(
        reference_id="r", name="Alex Morales", email="alex@example.com")))
    assert session.sdk_url == fake.url.replace(fake.url, "https://sandbox-api.paysimple.com") + \
        "/paysimplejs/v1/scripts/client.js"
    assert session.client["customer"] == {"firstName": "Alex", "lastName": "Morales", "email": "alex@example.com"}
    assert last_request(fake, "GET", rf"/v4/customer/{customer.id}/token")
    text = json.dumps(dict(session.client))
    assert fake.API_KEY not in text and str(customer.id) not in text.replace(session.client["auth"]["token"], "")
    override = make_processor(fake, JS_SDK_URL="https://cdn.example/ps.js", JS_SDK_INTEGRITY="sha384-x")
    assert override.sdk_script() == ("https://cdn.example/ps.js", "sha384-x")


def test_ach_vaults_and_a_bad_routing_number_is_refused_by_paysimplejs(processor, fake, customer):
    good = fake.tokenize_ach("021000021", "000123456789", checking=False, bank_name="First Test Bank",
                             customer_id=customer.id)
    method = processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=good,
                                                         method_type=base.METHOD_ACH))
    assert (method.method_type, method.last4, method.account_type, method.bank_name) == (
        base.METHOD_ACH, "6789", "savings", "First Test Bank")
    assert processor.fetch_payment_method(customer, method.ref).last4 == "6789"
    with pytest.raises(paysimple_fakes._Invalid):  # PaySimpleJS answers httpError; nothing to vault
        fake.tokenize_ach("123456789", "000123456789", customer_id=customer.id)


def test_vaulting_for_an_unknown_customer_is_refused(processor, fake, customer):
    token = fake.tokenize_card("4111111111111111", 12, FUTURE_YEAR, customer_id=customer.id)
    with pytest.raises(TemporaryTokenError):
        processor.vault_payment_method(VaultRequest(customer=CustomerRef(id="999"), temporary_token=token))


def test_accounts_of_another_customer_are_not_found(processor, fake, customer):
    method = vault(processor, fake, customer)
    other = CustomerRef(id=processor.create_customer(CustomerData(reference_id="ref-other", name="O T")).id)
    with pytest.raises(NotFoundError):
        processor.fetch_payment_method(other, method.ref)
    processor.delete_payment_method(other, method.ref)
    assert int(method.method_id) in fake.accounts


def test_make_default_and_one_default_across_types(processor, fake, customer):
    card = vault(processor, fake, customer)
    ach_token = fake.tokenize_ach("021000021", "55554444", customer_id=customer.id)
    ach = processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=ach_token,
                                                      method_type=base.METHOD_ACH))
    # PaySimple keeps a default card and a default ACH account; we report one default, the card.
    assert fake.accounts[int(ach.method_id)]["IsDefault"] is True
    assert defaults(processor, customer) == [card.method_id]
    other = vault(processor, fake, customer, "5454545454545454", make_default=True)
    assert other.is_default
    assert defaults(processor, customer) == [other.method_id]


def defaults(processor, customer):
    return [m.method_id for m in processor.list_payment_methods(customer) if m.is_default]


def test_charging_the_default_falls_back_to_ach(processor, fake, customer):
    ach_token = fake.tokenize_ach("021000021", "55554444", customer_id=customer.id)
    ach = processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=ach_token))
    result = charge(processor, customer, None, amount=500)
    assert result.status == base.CHARGE_CAPTURED
    assert fake.payments[int(result.reference)]["AccountId"] == int(ach.method_id)
    empty = CustomerRef(id=processor.create_customer(CustomerData(reference_id="ref-empty", name="E M")).id)
    with pytest.raises(InvalidRequestError) as info:
        charge(processor, empty, None)
    assert info.value.code == "no_default_method"


def test_closed_card_is_removed_by_the_account_updater(processor, fake, customer):
    method = vault(processor, fake, customer)
    fake.network_update(method.method_id, 1, FUTURE_YEAR, closed=True)
    with pytest.raises(NotFoundError):
        processor.fetch_payment_method(customer, method.ref)


def test_an_expired_card_is_reported_expired(processor, fake, customer):
    method = vault(processor, fake, customer)
    fake.network_update(method.method_id, 1, 2020, last4="0005")
    fresh = processor.fetch_payment_method(customer, method.ref)
    assert (fresh.status, fresh.last4, fresh.exp_year) == (base.METHOD_EXPIRED, "0005", 2020)
    assert fresh.fingerprint != method.fingerprint


# --------------------------------------------------------------------------------------
# Money
# --------------------------------------------------------------------------------------


def test_authorization_only_and_capture_are_unsupported(processor, fake, customer):
    method = vault(processor, fake, customer)
    with pytest.raises(UnsupportedOperation):
        charge(processor, customer, method, capture=False)
    with pytest.raises(UnsupportedOperation):
        processor.capture("2500001")
    assert not fake.payments


def test_processor_failure_and_forced_declines_are_results(processor, fake, customer):
    failing = vault(processor, fake, customer, "4000000000001216")
    result = charge(processor, customer, failing)
    assert (result.status, result.failure_code, result.failure_message) == (base.CHARGE_FAILED, "4006",
                                                                           "General Error")
    good = vault(processor, fake, customer, "5555555555554444")
    fake.faults.decline_all = True
    result = charge(processor, customer, good)
    assert (result.status, result.failure_code, result.failure_message) == (base.CHARGE_DECLINED, "4005",
                                                                           "Do Not Honor")
    with pytest.raises(InvalidRequestError) as info:
        processor.refund(result.reference)
    assert info.value.code == "not_refundable"


def test_void_twice_is_voided(processor, fake, customer):
    paid = charge(processor, customer, vault(processor, fake, customer))
    assert processor.void(paid.reference).status == base.CHARGE_VOIDED
    again = processor.void(paid.reference)
    assert again.status == base.CHARGE_VOIDED and again.amount == 1999
    assert fake.payments[int(paid.reference)]["Status"] == "Voided"
    with pytest.raises(NotFoundError):
        processor.void("999999")


def test_refund_before_settlement_voids(processor, fake, customer):
    paid = charge(processor, customer, vault(processor, fake, customer), amount=3000)
    refunded = processor.refund(paid.reference)
    assert (refunded.status, refunded.amount_refunded) == (base.CHARGE_REFUNDED, 3000)
    assert fake.payments[int(paid.reference)]["Status"] == "Voided"
    assert processor.refund(paid.reference).status == base.CHARGE_REFUNDED  # a retry is harmless


def test_refund_after_settlement_reverses_in_full_only(processor, fake, customer):
    paid = charge(processor, customer, vault(processor, fake, customer), amount=3000)
    fake.settle(paid.reference)
    with pytest.raises(UnsupportedOperation):
        processor.refund(paid.reference, 1000)
    refunded = processor.refund(paid.reference, 3000)
    assert (refunded.status, refunded.amount_refunded) == (base.CHARGE_REFUNDED, 3000)
    assert fake.payments[int(paid.reference)]["Status"] == "Reversed"
    assert last_request(fake, "PUT", r"/v4/payment/\d+/reverse")


def test_refund_between_void_window_and_settlement_is_refused(processor, fake, customer):
    paid = charge(processor, customer, vault(processor, fake, customer))
    fake.close_void_window(paid.reference)
    with pytest.raises(InvalidRequestError) as info:
        processor.refund(paid.reference)
    assert info.value.code == "not_settled"
    with pytest.raises(InvalidRequestError):
        processor.void(paid.reference)


def test_sandbox_mark_payment_status_settles(processor, fake, customer):
    paid = charge(processor, customer, vault(processor, fake, customer))
    processor._http.request("PUT", "/v4/MarkPaymentStatus", json={"PaymentId": int(paid.reference)})
    assert fake.payments[int(paid.reference)]["Status"] == "Settled"


# --------------------------------------------------------------------------------------
# Retries and idempotency
# --------------------------------------------------------------------------------------


def test_a_post_is_never_retried(processor, fake, customer):
    method = vault(processor, fake, customer)
    fake.faults.fail_next(503, count=1)
    with pytest.raises(ProcessorUnavailable):
        charge(processor, customer, method)
    assert [c for c in fake.calls if c[:2] == ("POST", "/v4/payment")] == [("POST", "/v4/payment", 503)]
    assert not fake.payments


def test_a_get_is_retried(processor, fake, customer):
    fake.faults.fail_next(503, count=1)
    assert processor.list_payment_methods(customer) == []
    path = f"/v4/customer/{customer.id}/accounts"
    assert [c[2] for c in fake.calls if c[1] == path] == [503, 200]


def test_the_same_idempotency_key_pays_once(processor, fake, customer):
    method = vault(processor, fake, customer)
    key = uuid.uuid4().hex
    first = charge(processor, customer, method, idempotency_key=key, reference="order-9")
    second = charge(processor, customer, method, idempotency_key=key, reference="order-9")
    assert second.reference == first.reference and len(fake.payments) == 1
    assert fake.payments[int(first.reference)]["OrderId"] == key
    assert charge(processor, customer, method, idempotency_key=uuid.uuid4().hex).reference != first.reference


def test_a_lost_answer_is_recovered_by_the_idempotency_key(processor, fake, customer):
    method = vault(processor, fake, customer)
    key = uuid.uuid4().hex
    fake.slow_response("POST", "/v4/payment", 1.5)
    with pytest.raises(ProcessorUnavailable):
        charge(processor, customer, method, idempotency_key=key)
    assert len(fake.payments) == 1  # PaySimple made the payment; only the answer was lost
    again = charge(processor, customer, method, idempotency_key=key)
    assert again.reference == str(next(iter(fake.payments))) and len(fake.payments) == 1


# --------------------------------------------------------------------------------------
# Tokens for the browser
# --------------------------------------------------------------------------------------


def test_customer_and_checkout_tokens(processor, fake, customer):
    token = processor.get_client_token(customer)
    assert token.token.count(".") == 2 and token.token not in repr(token)
    claims = json.loads(_b64url(token.token.split(".")[1]))
    assert claims["sub"] == customer.id
    assert timedelta(minutes=14) < token.expires_at - datetime.now(timezone.utc) <= timedelta(minutes=15)
    checkout = processor.get_checkout_token()
    assert checkout.token.count(".") == 2
    assert checkout.expires_at - datetime.now(timezone.utc) <= timedelta(minutes=5)


def _b64url(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_the_browser_tokenizer_stand_in(fake):
    ok = requests.post(fake.url + "/_fake/tokens", json={"number": "4111 1111 1111 1111", "exp_month": 12,
                                                         "exp_year": FUTURE_YEAR}, timeout=5)
    assert ok.status_code == 201 and ok.json()["token"] in fake.payment_tokens
    assert ok.headers["Access-Control-Allow-Origin"] == "*"
    assert "4111111111111111" not in repr(fake.payment_tokens)
    bad = requests.post(fake.url + "/_fake/tokens", json={"number": "4111111111111112", "exp_month": 12,
                                                          "exp_year": FUTURE_YEAR}, timeout=5)
    assert bad.status_code == 400


# --------------------------------------------------------------------------------------
# Webhooks
# --------------------------------------------------------------------------------------

DOC_BODY = b'{"event_type":"customer_updated","event_id":"evt_5b2aca473b6325b3b4d22ed1"}'


def delivery(body: bytes = DOC_BODY, signature: str | None = None, header: str = SIGNATURE_HEADER):
    headers = {} if signature is None else {header: signature}
    return WebhookRequest(headers=headers, body=body)


def test_webhook_signature_matches_an_independent_vector(fake):
    # openssl dgst -sha256 -hmac whsec-test over DOC_BODY
    expected = "611d9667032b0fa51e099a1a28e94a9106e6065d51be75f73c112aec4c257eba"
    assert webhook_signature("whsec-test", DOC_BODY) == expected
    processor = make_processor(fake, WEBHOOK_SECRET="whsec-test")
    processor.verify_webhook(delivery(signature=expected))
    processor.verify_webhook(delivery(signature=expected.upper()))


@pytest.mark.parametrize(("signature", "reason"), [
    (None, "missing signature"),
    ("", "missing signature"),
    ("sha256=" + "0" * 64, "malformed signature"),
    ("zz" * 32, "malformed signature"),
    ("0" * 63, "malformed signature"),
    ("é" * 64, "malformed signature"),
    ("0" * 64, "bad signature"),
])
def test_webhook_rejections(fake, signature, reason):
    processor = make_processor(fake, WEBHOOK_SECRET="whsec-test")
    with pytest.raises(WebhookVerificationError) as info:
        processor.verify_webhook(delivery(signature=signature))
    assert info.value.reason == reason


def test_webhook_body_tamper_wrong_secret_and_no_secret(fake):
    signature = webhook_signature("whsec-test", DOC_BODY)
    with pytest.raises(WebhookVerificationError, match="bad signature"):
        make_processor(fake, WEBHOOK_SECRET="whsec-test").verify_webhook(delivery(DOC_BODY + b" ", signature))
    with pytest.raises(WebhookVerificationError, match="bad signature"):
        make_processor(fake, WEBHOOK_SECRET="other").verify_webhook(delivery(signature=signature))
    with pytest.raises(WebhookVerificationError, match="not configured"):
        make_processor(fake, WEBHOOK_SECRET="").verify_webhook(delivery(signature=signature))


def test_webhook_secret_rotation_and_header_option(fake):
    signature = webhook_signature("new-secret", DOC_BODY)
    rotated = make_processor(fake, WEBHOOK_SECRET=["old-secret", "new-secret"])
    rotated.verify_webhook(delivery(signature=signature))
    custom = make_processor(fake, WEBHOOK_SECRET="new-secret",
                            WEBHOOK_SIGNATURE_HEADER="X-PaySimple-Signature")
    custom.verify_webhook(delivery(signature=signature, header="x-paysimple-signature"))
    assert custom.webhook_secret_headers == ("x-paysimple-signature",)
    with pytest.raises(WebhookVerificationError, match="missing"):
        custom.verify_webhook(delivery(signature=signature))


def test_an_old_redelivery_still_verifies(fake):
    # The scheme signs no timestamp and PaySimple re-sends hourly for 72 hours: age is not a reason
    # to refuse; de-duplication on event_id is what stops replays.
    old = json.dumps({"event_type": "customer_updated", "event_id": "evt_old",
                      "created_at": format_timestamp(datetime.now(timezone.utc) - timedelta(hours=70)),
                      "data": {"customer_id": 1}}).encode()
    processor = make_processor(fake)
    request = delivery(old, webhook_signature(fake.WEBHOOK_SECRET, old))
    processor.verify_webhook(request)
    assert processor.webhook_event_id(request) == ("evt_old", "customer_updated")


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"event_type": "x"}', b'{"event_id": 5}',
                                  b'{"event_id": ""}'])
def test_unparseable_deliveries(processor, body):
    with pytest.raises(WebhookParseError):
        processor.webhook_event_id(delivery(body))


def test_payment_events_become_charge_events(processor, fake, customer):
    paid = charge(processor, customer, vault(processor, fake, customer))
    headers, body = fake.payment_delivery(paid.reference)
    request = WebhookRequest(headers=headers, body=body)
    processor.verify_webhook(request)
    (event,) = processor.parse_webhook(request)
    assert (event.type, event.charge_reference, event.customer_id) == (
        base.EVENT_CHARGE_SUCCEEDED, paid.reference, customer.id)
    assert event.data["amount"] == 1999 and event.payment_method_ids == () and event.occurred_at
    fake.settle(paid.reference)
    processor.refund(paid.reference)
    refunded = payment_event(processor, fake, paid.reference, "payment_refunded")
    assert refunded.type == base.EVENT_CHARGE_REFUNDED
    voided = charge(processor, customer, vault(processor, fake, customer))
    processor.void(voided.reference)
    assert payment_event(processor, fake, voided.reference, "payment_voided").type == base.EVENT_CHARGE_VOIDED
    declined = charge(processor, customer, vault(processor, fake, customer, "4000000000000002"))
    failed = payment_event(processor, fake, declined.reference, "payment_failed")
    assert failed.type == base.EVENT_CHARGE_FAILED


def payment_event(processor, fake, reference, event_type):
    (event,) = processor.parse_webhook(WebhookRequest(*fake.payment_delivery(reference, event_type)))
    return event


def test_customer_updated_names_every_account_and_other_events_are_unknown(processor, fake, customer):
    one, two = vault(processor, fake, customer), vault(processor, fake, customer, "5454545454545454")
    events = processor.parse_webhook(WebhookRequest(*fake.customer_updated_delivery(customer.id)))
    assert [e.type for e in events] == [base.EVENT_CUSTOMER_UPDATED] + [base.EVENT_PAYMENT_METHOD_UPDATED] * 2
    assert {e.customer_id for e in events} == {customer.id}
    assert events[1].payment_method_ids == ()  # customer level: refresh every saved method
    assert set(events[2].payment_method_ids) == {one.method_id, two.method_id}
    (other,) = processor.parse_webhook(WebhookRequest(*fake.webhook_delivery("offering_created",
                                                                             {"offering_id": "5b2a"})))
    assert other.type == base.EVENT_UNKNOWN and other.processor_event_type == "offering_created"
    headers, body = fake.customer_updated_delivery(customer.id)
    processor.delete_customer(customer)
    events = processor.parse_webhook(WebhookRequest(headers, body))
    assert [(e.type, e.payment_method_ids) for e in events] == [(base.EVENT_CUSTOMER_UPDATED, ()),
                                                                (base.EVENT_PAYMENT_METHOD_UPDATED, ())]
    (deleted,) = processor.parse_webhook(WebhookRequest(*fake.webhook_delivery(
        "customer_deleted", {"customer_id": int(customer.id)})))
    assert (deleted.type, deleted.customer_id, deleted.payment_method_ids) == (
        base.EVENT_PAYMENT_METHOD_UPDATED, customer.id, ())


# --------------------------------------------------------------------------------------
# Nothing secret in logs or errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["basic", "psserver"])
def test_no_secret_or_id_in_logs(fake, caplog, scheme):
    caplog.set_level(logging.DEBUG)
    processor = make_processor(fake, AUTH_SCHEME=scheme)
    customer = CustomerRef(id=processor.create_customer(CustomerData(reference_id="ref-logs", name="L G")).id)
    token = fake.tokenize_card("4111111111111111", 12, FUTURE_YEAR, customer_id=customer.id)
    method = processor.vault_payment_method(VaultRequest(customer=customer, temporary_token=token))
    paid = charge(processor, customer, method)
    fake.faults.hang_next(1.5, count=2)  # a read timeout on a GET is retried: urllib3 logs a warning
    with pytest.raises(ProcessorUnavailable) as info:
        processor.fetch_payment_method(customer, method.ref)
    text = caplog.text + str(info.value) + repr(info.value)
    assert "/v4/account/creditcard/{account_id}" in caplog.text
    for secret in (fake.API_KEY, fake.WEBHOOK_SECRET, token, "4111111111111111", method.token,
                   paid.reference, f"/v4/customer/{customer.id}"):
        assert secret not in text
