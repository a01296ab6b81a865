"""Exact backend against recorded pairs from Exact's own material (not our fake).

Sources:

* [VAULT] developer.exactpay.com/docs/Customer-Vault (stored copy: ../shared/seeds/003): the
  ``POST /customer`` request and 201 answer, the ``POST /customer/{id}/payment-method`` request and
  answer, verbatim (the stored page shows the e-mail addresses as Cloudflare's "[email protected]"
  placeholder; it is kept as stored).
* [OPENAPI] Exact's OpenAPI, as recorded in ../shared/PROCESSORS.md "Corrections" (checked against
  the OpenAPI file and docs examples): an approved payment answers ``approved: true`` with
  ``exactResponse.code`` ``"0000"``; ``NewPayment.reference.referenceNo`` and ``customerRef`` are at
  most 20 characters, ``correlationId`` at most 60.  The stored material has no complete payment
  answer, so the payment answers below are assembled from the documented fields (id, status,
  approved, captured, authorization, amount, bankResponse, exactResponse, paymentMethodDetails).
* [TOKENIZATION] developer.exactpay.com/docs/Tokenization (../shared/BROWSER-SDKS.md [EX-11]):
  ``POST /payments`` with ``{paymentMethod: {token}, amount, capture}``.
* [AUTH] developer.exactpay.com/docs/Authentication ([EX-4]): ``Authorization: <application token>``.

No official example exists in these sources for list answers (``GET /customer``), refunds, voids or
webhook deliveries: they are not covered here.
"""

from __future__ import annotations

import uuid

from vault_wallets.processors import base
from vault_wallets.processors import exact as exact_module
from vault_wallets.processors.base import ChargeRequest, CustomerData, CustomerRef, MethodRef, VaultRequest
from vault_wallets.processors.exact import ExactProcessor

from .harness import Exchange, Match, Responder, compare

TOKEN = "app-token-recorded"
AUTH = {"Authorization": TOKEN}

# [VAULT] "Create a Customer" — request and answer, verbatim.
CUSTOMER_REQUEST = {
    "name": "John Doe", "email": "[email protected]", "phone": "5551234567",
    "addresses": [{"label": "Work", "city": "Scottsdale", "country": "USA", "postalCode": "85251",
                   "state": "AZ", "line1": "7272 Indian School Dr", "isDefault": True}],
}
CUSTOMER_ANSWER = {
    "id": "64af8f090674c4d267779e4d", "token": "619afa6c-7f24-4c4b-89c6-3d47c4738b5e",
    "createdAt": "2023-07-13T05:28:11.139Z", "updatedAt": "2023-07-13T05:28:11.139Z",
    "name": "John Doe", "email": "[email protected]", "phone": "5551234567",
    "addresses": [{"label": "Work", "city": "Scottsdale", "country": "USA", "line1": "7272 Indian School Dr",
                   "postalCode": "85251", "state": "AZ", "isDefault": True}],
}
# [VAULT] "Linking Payment Methods" — request and answer, verbatim.
LINK_REQUEST = {"token": "054f3ce9-ad96-4306-abcc-5722e5313a71", "isDefault": True, "label": "My Visa Card"}
LINK_ANSWER = {
    "type": "card", "token": "37e773f6-218a-475c-ba6e-1bb5330b151e",
    "updatedAt": "2023-07-13T05:44:45.189Z", "createdAt": "2023-07-11T23:08:34.291Z",
    "billingDetails": {"email": "[email protected]", "name": "John Doe", "phone": "5551234567",
                       "address": {"city": "Scottsdale", "country": "USA", "line1": "7272 E Indian School Rd",
                                   "postalCode": "85251", "state": "AZ"}},
    "label": "My Visa Card", "isDefault": True,
    "card": {"brand": "visa", "lastFour": "1111", "checks": {"cvcCheck": "full-match", "addressCheck": "not-verified"},
             "expiry": {"month": 9, "year": 2024}, "tokenType": "platform"},
}
PAYMENT_ID = "64b0123456789abcdef01234"


def payment(**fields):
    """An approved authorization as [OPENAPI] documents it (assembled; see the module docstring)."""
    return {"id": PAYMENT_ID, "paymentId": PAYMENT_ID, "type": "payment", "status": "authorized",
            "approved": True, "captured": False, "voided": False, "refunded": False,
            "authorization": "ET123456", "amount": 1000, "currencyCode": "USD",
            "bankResponse": {"code": "AA", "message": "Approved"},
            "exactResponse": {"code": "0000", "message": "Transaction Normal"},
            "paymentMethodDetails": {"cardBrand": "visa", "last4": "1111"}, **fields}


def processor(responder: Responder) -> ExactProcessor:
    return ExactProcessor("exact-recorded", {"API_TOKEN": TOKEN, "BASE_URL": responder.url,
                                             "WEBHOOK_SECRET": "w" * 32, "TIMEOUT": (2, 2), "RETRIES": 0})


def _first_address_is_the_documented_one(addresses) -> bool:
    """The first address is the example's; a second, labelled one marks vault_wallets' reference."""
    return (isinstance(addresses, list) and len(addresses) == 2
            and not compare(addresses[0], CUSTOMER_REQUEST["addresses"][0], mode="exact")
            and addresses[1] == {"label": "vault_wallets:ref-1", "isDefault": False})


def test_create_customer_sends_the_documented_body():
    with Responder([
        Exchange(source="Exact paging ($limit ≤ 100, $skip, $sort[field]; ../shared/PROCESSORS.md Exact)",
                 method="GET", path="/customer", query={"$limit": "100", "$skip": "0", "$sort[createdAt]": "-1"},
                 headers=AUTH, response=[]),
        Exchange(source="[VAULT] Create a Customer", method="POST", path="/customer", headers=AUTH,
                 json={**CUSTOMER_REQUEST, "addresses": Match(
                     check=_first_address_is_the_documented_one,
                     note="the documented address, then vault_wallets' labelled reference marker")},
                 required=("name", "email", "phone", "addresses"),
                 status=201, response=CUSTOMER_ANSWER),
    ]) as responder:
        customer = processor(responder).create_customer(CustomerData(
            reference_id="ref-1", name="John Doe", email="[email protected]", phone="5551234567",
            address=base.AddressData(label="Work", line1="7272 Indian School Dr", city="Scottsdale", state="AZ",
                                     postal_code="85251", country="US")))
        responder.verify()
    assert customer.id == "64af8f090674c4d267779e4d"
    assert customer.secret == "619afa6c-7f24-4c4b-89c6-3d47c4738b5e"  # the customer token charges the default
    assert "619afa6c" not in repr(customer) and "token" not in customer.raw


def test_link_a_payment_method_exactly_as_documented():
    with Responder([
        Exchange(source="[VAULT] Linking Payment Methods", method="POST",
                 path="/customer/64af8f090674c4d267779e4d/payment-method", headers=AUTH,
                 json=LINK_REQUEST, mode="exact", response=LINK_ANSWER),
    ]) as responder:
        method = processor(responder).vault_payment_method(VaultRequest(
            customer=CustomerRef(id="64af8f090674c4d267779e4d"), temporary_token=LINK_REQUEST["token"],
            label="My Visa Card", make_default=True))
        responder.verify()
    assert method.token == "37e773f6-218a-475c-ba6e-1bb5330b151e"
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == ("visa", "1111", 9, 2024)
    assert method.holder_name == "John Doe" and method.is_default
    assert method.verification_status == base.VERIFICATION_SUCCESS  # cvcCheck full-match
    assert method.status == base.METHOD_EXPIRED  # the docs' card expired in 09/2024
    assert "37e773f6" not in str(dict(method.raw))


LONG_ORDER = "ORDER-2026-12-01-0000123456"  # 27 characters
LONG_CUSTOMER = "customer-reference-0000000000042"  # 32 characters


def test_approved_authorization_with_0000_is_captured_and_references_fit():
    """Wire faults 4 and 5: ``exactResponse.code`` "0000" is approved (an authorization, then a
    capture); referenceNo/customerRef ≤ 20 and correlationId ≤ 60 characters."""
    key = str(uuid.uuid4())
    with Responder([
        Exchange(source="[TOKENIZATION] POST /payments; [OPENAPI] NewPayment.reference limits",
                 method="POST", path="/payments", headers=AUTH,
                 json={"amount": 1000, "capture": False, "paymentMethod": {"token": LINK_ANSWER["token"]},
                       "reference": {"referenceNo": Match(max_len=20, note="OpenAPI NewPayment: ≤ 20"),
                                     "customerRef": Match(max_len=20, note="OpenAPI NewPayment: ≤ 20"),
                                     "correlationId": Match(max_len=60, note="OpenAPI NewPayment: ≤ 60")}},
                 mode="exact", status=201, response=payment()),
        Exchange(source="GET /payments/{id} (../shared/PROCESSORS.md Exact payments)", method="GET",
                 path=f"/payments/{PAYMENT_ID}", headers=AUTH, response=payment()),
        Exchange(source="POST /payments/{id}/capture with the amount and the authorization (ReferencedPayment)",
                 method="POST", path=f"/payments/{PAYMENT_ID}/capture", headers=AUTH,
                 json={"amount": 1000, "authorization": "ET123456"}, mode="exact",
                 response=payment(id="64b0123456789abcdef09999", type="capture", status="completed",
                                  captured=True)),
    ]) as responder:
        exact = processor(responder)
        authorized = exact.charge(ChargeRequest(
            customer=CustomerRef(id="64af8f090674c4d267779e4d", reference_id=LONG_CUSTOMER), amount=1000,
            currency="USD", method=MethodRef(token=LINK_ANSWER["token"]), capture=False,
            idempotency_key=key, reference=LONG_ORDER))
        captured = exact.capture(authorized.reference)
        responder.verify()
    assert authorized.status == base.CHARGE_AUTHORIZED and not authorized.failure_code
    assert authorized.reference == PAYMENT_ID
    assert captured.status == base.CHARGE_CAPTURED and captured.amount_captured == 1000
    sent = responder.body(0)["reference"]
    assert sent == exact_module.payment_reference(reference=LONG_ORDER, idempotency_key=key, customer_ref=LONG_CUSTOMER)
    assert sent["correlationId"] == key  # a UUID fits: it is sent as is


def test_references_are_derived_deterministically():
    fit_reference, payment_reference = exact_module.fit_reference, exact_module.payment_reference
    long_key = "k" * 80
    assert fit_reference("ORDER-1", 20) == "ORDER-1"  # short values are sent unchanged
    first, again = fit_reference(LONG_ORDER, 20), fit_reference(LONG_ORDER, 20)
    assert first == again and len(first) <= 20 and first.startswith("ORDER-2026-")
    assert fit_reference(LONG_ORDER + "7", 20) != first  # same prefix, different order: different reference
    assert len(fit_reference(long_key, 60)) == 60
    # Without an order reference the idempotency key is the referenceNo: a retry sends the same one.
    key = str(uuid.uuid4())
    one = payment_reference(reference="", idempotency_key=key, customer_ref="")
    assert one == payment_reference(reference="", idempotency_key=key, customer_ref="")
    assert len(one["referenceNo"]) == 20 and one["correlationId"] == key


def test_fetch_and_delete_a_linked_method():
    """Routes from Exact's Customer Vault reference (``GET|DELETE /customer/{id}/payment-method/{token}``,
    ../shared/PROCESSORS.md Exact); the method object is the [VAULT] link answer."""
    path = f"/customer/64af8f090674c4d267779e4d/payment-method/{LINK_ANSWER['token']}"
    with Responder([
        Exchange(source="GET /customer/{id}/payment-method/{token}", method="GET", path=path, headers=AUTH,
                 response=LINK_ANSWER),
        Exchange(source="DELETE /customer/{id}/payment-method/{token}", method="DELETE", path=path, headers=AUTH,
                 status=204, response=None),
    ]) as responder:
        exact = processor(responder)
        customer = CustomerRef(id="64af8f090674c4d267779e4d")
        method = exact.fetch_payment_method(customer, MethodRef(token=LINK_ANSWER["token"]))
        exact.delete_payment_method(customer, method.ref)
        responder.verify()
    assert (method.brand, method.last4) == ("visa", "1111")
