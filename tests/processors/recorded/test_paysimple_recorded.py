"""PaySimple backend against recorded pairs from PaySimple's own material (not our fake).

Sources:

* [SDK] GitHub ``PaySimple/PaySimpleSDK`` @ 74c00bdc: ``src/PaySimpleSdk/Helpers/Endpoints.cs``
  (routes), ``Helpers/SignatureGenerator.cs`` (``PSSERVER accessid=…; timestamp=…; signature=…``),
  ``Payments/Payment.cs`` (the payment's fields), ``Helpers/Enumerations.cs`` (``Status``:
  Authorized, …, Voided), ``Payments/CheckoutToken.cs`` (``JwtToken``, ``Expiration``,
  ``IsValid``), ``Payments/CheckoutTokenRequest.cs`` (an empty request), ``Customers/
  CustomerService.cs`` (``GET /v4/customer/{id}/token``).
* [EXISTING] documentation.paysimple.com/docs/paysimplejs-working-with-existing-customers (stored
  copy: ../shared/seeds/000): ``GET /customer/{customer_id}/token`` → ``{"JwtToken": "<Customer
  Token>"}``, customer id 12345 in its server sample.
* [NEW-PAYMENT] documentation.paysimple.com/reference/new-payment: ``AccountId`` (required),
  ``Amount`` (decimal dollars), ``OrderId``/``PurchaseOrderNumber`` (≤ 50), ``Description``.
* [ENVELOPE] every v4 answer is ``{"Meta": {Errors, HttpStatusCode, PagingDetails}, "Response": …}``
  (../shared/PROCESSORS.md PaySimple, from the API guide).

PaySimple publishes no complete JSON payment answers in these sources: the payment answers are
assembled from ``Payment.cs``'s fields, with the account/customer ids of the PaySimpleJS example
(../shared/BROWSER-SDKS.md §1.4).  Vaulting from PaySimpleJS (``accountRetrieved``) is wire fault 1,
handled elsewhere; the old ``POST /v4/paymenttoken`` exchange is deliberately not recorded here.
* [EVENTS] documentation.paysimple.com/docs/payment-events: webhook message fields and the payment
  statuses (no JSON example is published: the messages are assembled from the field list).
"""

from __future__ import annotations

import json

import pytest

from vault_wallets.processors import base
from vault_wallets.processors.base import ChargeRequest, CustomerRef, MethodRef, WebhookRequest
from vault_wallets.processors.paysimple import PaySimpleProcessor

from .harness import Exchange, Match, Responder

PSSERVER = Match(r"^PSSERVER accessid=apiuser; timestamp=[0-9T:.\-+Z]+; signature=[A-Za-z0-9+/]{43}=$",
                 note="[SDK] SignatureGenerator.cs")
META = {"Errors": None, "HttpStatusCode": 200, "PagingDetails": None}
ACCOUNT_ID, CUSTOMER_ID = 7313702, 8041997  # the PaySimpleJS accountRetrieved example


def envelope(response, status: int = 200) -> dict:
    return {"Meta": {**META, "HttpStatusCode": status}, "Response": response}


def payment(**fields) -> dict:
    """A payment with ``Payment.cs``'s fields (assembled; see the module docstring)."""
    return {"Id": 5001234, "AccountId": ACCOUNT_ID, "Amount": 10.5, "IsDebit": False, "CustomerId": CUSTOMER_ID,
            "CustomerFirstName": "Alex", "CustomerLastName": "Morales", "OrderId": "order-17",
            "PurchaseOrderNumber": "order-17", "Description": "Order 17", "Status": "Authorized",
            "PaymentType": "CC", "ProviderAuthCode": "Approved", "TraceNumber": "8f3c9a",
            "PaymentDate": "2026-12-01T00:00:00Z", "CanVoidUntil": "2026-12-01T23:59:59Z",
            "FailureData": {"Code": "", "Description": "", "MerchantActionText": ""}, "IsDecline": False,
            "CreatedOn": "2026-12-01T00:00:00Z", "LastModified": "2026-12-01T00:00:00Z", **fields}


def processor(responder: Responder) -> PaySimpleProcessor:
    return PaySimpleProcessor("ps-recorded", {"API_USERNAME": "apiuser", "API_KEY": "apikey-recorded",
                                              "AUTH_SCHEME": "psserver", "BASE_URL": responder.url,
                                              "WEBHOOK_SECRET": "s" * 32, "TIMEOUT": (2, 2), "RETRIES": 0})


def test_customer_token_for_paysimplejs():
    with Responder([
        Exchange(source="[EXISTING] Step 2; [SDK] CustomerService.GetCustomerTokenAsync, Endpoints.CustomerToken",
                 method="GET", path="/v4/customer/12345/token", headers={"Authorization": PSSERVER},
                 response=envelope({"JwtToken": "<Customer Token>"})),
    ]) as responder:
        token = processor(responder).get_client_token(CustomerRef(id="12345"))
        responder.verify()
    assert token.token == "<Customer Token>" and token.expires_at is not None


def test_checkout_token_request_is_empty():
    with Responder([
        Exchange(source="[SDK] PaymentService.GetCheckoutTokenAsync, CheckoutTokenRequest (empty), CheckoutToken",
                 method="POST", path="/v4/checkouttoken", headers={"Authorization": PSSERVER}, json={},
                 mode="exact",
                 response=envelope({"JwtToken": "<Checkout Token>", "Expiration": "2026-12-01T00:05:00Z",
                                    "IsValid": True})),
    ]) as responder:
        token = processor(responder).get_checkout_token()
        responder.verify()
    assert token.token == "<Checkout Token>"
    assert token.expires_at is not None and token.expires_at.isoformat().startswith("2026-12-01T00:05")


def test_charge_and_void_a_payment():
    with Responder([
        Exchange(source="[NEW-PAYMENT]; [SDK] Payment.cs, PaymentService.CreatePaymentAsync",
                 method="POST", path="/v4/payment", headers={"Authorization": PSSERVER},
                 json={"AccountId": ACCOUNT_ID, "Amount": 10.5, "OrderId": "order-17",
                       "PurchaseOrderNumber": "order-17", "Description": "Order 17"},
                 mode="exact", status=201, response=envelope(payment(), 201)),
        Exchange(source="[SDK] PaymentService.VoidPaymentAsync (PUT /v4/payment/{id}/void)",
                 method="PUT", path="/v4/payment/5001234/void", headers={"Authorization": PSSERVER},
                 response=envelope(payment(Status="Voided"))),
    ]) as responder:
        paysimple = processor(responder)
        charged = paysimple.charge(ChargeRequest(customer=CustomerRef(id=str(CUSTOMER_ID)), amount=1050,
                                                 currency="USD", method=MethodRef(token=str(ACCOUNT_ID)),
                                                 reference="order-17", description="Order 17"))
        voided = paysimple.void(charged.reference)
        responder.verify()
    assert (charged.reference, charged.status, charged.amount, charged.amount_captured) == (
        "5001234", base.CHARGE_CAPTURED, 1050, 1050)
    assert voided.status == base.CHARGE_VOIDED and voided.amount == 1050


# [EVENTS] documentation.paysimple.com/docs/payment-events: the webhook message object (event_type,
# event_id, merchant_id, created_at, data) and the payment event properties, with every documented
# payment_status.  The page gives field lists, not a JSON example: the message is assembled from them.
PAYMENT_STATUSES = {
    "authorized": base.EVENT_CHARGE_SUCCEEDED, "pending": base.EVENT_CHARGE_SUCCEEDED,
    "posted": base.EVENT_CHARGE_SUCCEEDED, "settled": base.EVENT_CHARGE_SUCCEEDED,
    "chargeback": base.EVENT_CHARGE_FAILED, "failed": base.EVENT_CHARGE_FAILED,
    "returned": base.EVENT_CHARGE_FAILED, "reverse_n_s_f": base.EVENT_CHARGE_FAILED,
    "reversed": base.EVENT_CHARGE_REFUNDED, "reverse_posted": base.EVENT_CHARGE_REFUNDED,
    "refund_settled": base.EVENT_CHARGE_REFUNDED, "voided": base.EVENT_CHARGE_VOIDED,
}


@pytest.mark.parametrize("status", sorted(PAYMENT_STATUSES))
def test_payment_event_with_each_documented_status(status):
    message = {
        "event_type": "payment_created" if status == "authorized" else "payment_status_changed",
        "event_id": f"evt-{status}", "merchant_id": 1234, "created_at": "2026-12-01T10:00:00Z",
        "data": {"payment_id": 5001234, "order_id": "ord-1", "customer_id": CUSTOMER_ID, "account_id": ACCOUNT_ID,
                 "payment_status": status, "amount": 10.5, "payment_type": "credit_card",
                 "payment_token": "9f0d5c1e-4a8b-4c55-9b1e-2f1c3d4e5a6b", "order_external_id": "order-17",
                 "payment_source": "api4", "estimated_deposit_date": "2026-12-03"},
    }
    request = WebhookRequest(headers={"content-type": "application/json"}, body=json.dumps(message).encode())
    with Responder([]) as responder:
        paysimple = processor(responder)
        assert paysimple.webhook_event_id(request) == (f"evt-{status}", message["event_type"])
        [event] = paysimple.parse_webhook(request)
        responder.verify()
    assert event.type == PAYMENT_STATUSES[status]
    assert event.charge_reference == "5001234" and event.customer_id == str(CUSTOMER_ID)
    assert event.data["amount"] == 1050 and event.data["account_id"] == str(ACCOUNT_ID)


def test_create_customer_with_the_sdk_fields():
    """[SDK] ``Customers/Customer.cs`` and ``Customers/Address.cs`` (field names), ``Endpoints.Customer``;
    paging ``page``/``pagesize`` and ``Meta.PagingDetails`` per [ENVELOPE].  The request is the
    SDK's field set with the values the backend is given; the answer echoes it with an ``Id``."""
    customer = {"FirstName": "Alex", "LastName": "Morales", "CustomerAccount": "ref-1", "ShippingSameAsBilling": True,
                "Email": "alex@example.com", "Phone": "5551234567",
                "BillingAddress": {"StreetAddress1": "1 Main St", "City": "Denver", "StateCode": "CO",
                                   "ZipCode": "80202", "Country": "US"}}
    with Responder([
        Exchange(source="[SDK] CustomerService.GetCustomersAsync (page, pagesize)", method="GET", path="/v4/customer",
                 query={"page": "1", "pagesize": "200"}, headers={"Authorization": PSSERVER},
                 response={"Meta": {**META, "PagingDetails": {"TotalItems": 0, "Page": 1, "ItemsPerPage": 200}},
                           "Response": []}),
        Exchange(source="[SDK] CustomerService.CreateCustomerAsync (Customer.cs)", method="POST", path="/v4/customer",
                 headers={"Authorization": PSSERVER}, json=customer, mode="exact", status=201,
                 response=envelope({**customer, "Id": CUSTOMER_ID, "CreatedOn": "2026-12-01T00:00:00Z"}, 201)),
    ]) as responder:
        created = processor(responder).create_customer(base.CustomerData(
            reference_id="ref-1", name="Alex Morales", email="alex@example.com", phone="(555) 123-4567",
            address=base.AddressData(line1="1 Main St", city="Denver", state="co", postal_code="80202", country="us")))
        responder.verify()
    assert created.id == str(CUSTOMER_ID)


def test_fetch_a_credit_card_account():
    """[SDK] ``AccountService.GetCreditCardAccountAsync`` (``/v4/account/creditcard/{id}``),
    ``Accounts/CreditCard.cs`` + ``Account.cs`` fields, ``Issuer`` = 12 for Visa (``Enumerations.cs``)."""
    account = {"Id": ACCOUNT_ID, "CustomerId": CUSTOMER_ID, "IsDefault": True, "CreditCardNumber": "************1111",
               "ExpirationDate": "12/2031", "Issuer": 12, "BillingZipCode": "80202",
               "CreatedOn": "2026-12-01T00:00:00Z", "LastModified": "2026-12-01T00:00:00Z"}
    with Responder([
        Exchange(source="[SDK] AccountService.GetCreditCardAccountAsync", method="GET",
                 path=f"/v4/account/creditcard/{ACCOUNT_ID}", headers={"Authorization": PSSERVER},
                 response=envelope(account)),
    ]) as responder:
        method = processor(responder).fetch_payment_method(CustomerRef(id=str(CUSTOMER_ID)),
                                                           MethodRef(token=str(ACCOUNT_ID)))
        responder.verify()
    assert (method.method_id, method.brand, method.last4, method.exp_month, method.exp_year) == (
        str(ACCOUNT_ID), "visa", "1111", 12, 2031)
    assert method.is_default and "CreditCardNumber" not in method.raw
