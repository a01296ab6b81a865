"""Caselle backend against recorded pairs from Caselle's own documentation (not our fake).

Caselle publishes no SDK or OpenAPI file; its docs are the only official source:

* [WALLETS] paymentapi-docs.casellelab.com/platform/wallets/ "Customers & wallets" (stored copy:
  ../shared/seeds/004): ``POST /api/customers`` with ``X-Payment-Account-Uid`` and
  ``{reference_id, name, email}``; ``POST /api/customers/{customerUid}/payment-methods`` request and
  answer (``{saved_payment_method_uid: "spm_…", payment_method: {credit: {fingerprint:
  <permanent token>, …}}}``); the wallet payment body (``base_amount`` 12345, ``currency`` USD,
  ``reference_id``, ``payment_method: {payment_method_type: "wallet_credit", wallet:
  {saved_payment_method_uid}}}``).  The placeholders ``{proxynized_token}``, ``{permanent_token}``
  and ``spm_…`` are kept as written.
* [PAYMENTS] paymentapi-docs.casellelab.com/platform/payments/ ([CA-1] in ../shared/BROWSER-SDKS.md):
  the validate call takes ``base_amount, tax_amount, currency, reference_id, payment_method`` and
  answers ``{uid: "pay_…", processing_fee_amount, total_amount}`` (names only: the values below are
  assembled).
* [AUTH] "Platform API — overview & authentication" (../shared/PROCESSORS.md Caselle):
  ``POST {auth-domain}/oauth2/token`` with Basic ``client_id:client_secret`` and
  ``grant_type=client_credentials&scope=com.govineer.payments/admin`` →
  ``{access_token, expires_in: 3600, token_type: "Bearer"}``.

The docs show no answer to ``POST /api/customers`` (the ``uid`` field is the one the payment
account and payment answers use) and no conflict answer: the conflict handling (wire fault 8) is
tested against the fake in ``tests/processors/test_wire_faults.py``.  No example exists for
refunds, the payment-method list or webhook deliveries: they are not covered here.
"""

from __future__ import annotations

import base64

from vault_wallets.processors import base
from vault_wallets.processors.base import ChargeRequest, CustomerData, CustomerRef, MethodRef, VaultRequest
from vault_wallets.processors.caselle import CaselleProcessor, encode_browser_token

from .harness import Exchange, Match, Responder

ACCOUNT_UID = "pa_recorded"
BEARER = "eyJraWQiOiJyZWNvcmRlZCJ9.e30.c2ln"
API_HEADERS = {"Authorization": f"Bearer {BEARER}", "X-Payment-Account-Uid": ACCOUNT_UID}
CREDIT = {"fingerprint": "{proxynized_token}", "last4": "4242", "exp_month": 12, "exp_year": 2027,
          "bin": "411111", "card_brand": "VISA", "holder_name": "Alex Morales"}  # [WALLETS], verbatim
CUSTOMER_UID = "cus_alexmorales"  # assembled: the docs write {customerUid}


def token_exchange() -> Exchange:
    return Exchange(
        source="[AUTH] client credentials", method="POST", path="/oauth2/token",
        headers={"Authorization": "Basic " + base64.b64encode(b"client-id:client-secret").decode(),
                 "Content-Type": "application/x-www-form-urlencoded"},
        form={"grant_type": "client_credentials", "scope": "com.govineer.payments/admin"},
        response={"access_token": BEARER, "expires_in": 3600, "token_type": "Bearer"},
    )


def processor(responder: Responder) -> CaselleProcessor:
    return CaselleProcessor("caselle-recorded", {
        "CLIENT_ID": "client-id", "CLIENT_SECRET": "client-secret", "PAYMENT_ACCOUNT_UID": ACCOUNT_UID,
        "AUTH_URL": responder.url, "BASE_URL": responder.url, "IDEMPOTENCY_HEADER": "", "TIMEOUT": (2, 2),
        "RETRIES": 0, "WEBHOOK_SECRET": "w" * 32})


def test_create_customer_and_save_a_card_as_documented():
    with Responder([
        token_exchange(),
        Exchange(source="[WALLETS] POST /api/customers", method="POST", path="/api/customers", headers=API_HEADERS,
                 json={"reference_id": "{yourUserId}", "name": "Alex Morales", "email": "alex@example.com"},
                 mode="exact", status=201,
                 response={"uid": CUSTOMER_UID, "reference_id": "{yourUserId}", "name": "Alex Morales",
                           "email": "alex@example.com"}),
        Exchange(source="[WALLETS] POST /api/customers/{customerUid}/payment-methods", method="POST",
                 path=f"/api/customers/{CUSTOMER_UID}/payment-methods", headers=API_HEADERS,
                 json={"payment_method": {"payment_method_type": "credit", "credit": CREDIT}}, mode="exact",
                 status=201,
                 response={"saved_payment_method_uid": "spm_…",
                           "payment_method": {"credit": {"fingerprint": "{permanent_token}"}}}),
    ]) as responder:
        caselle = processor(responder)
        customer = caselle.create_customer(CustomerData(reference_id="{yourUserId}", name="Alex Morales",
                                                        email="alex@example.com"))
        method = caselle.vault_payment_method(VaultRequest(
            customer=CustomerRef(id=customer.id), temporary_token=encode_browser_token("credit", CREDIT)))
        responder.verify()
    assert customer.id == CUSTOMER_UID
    assert method.method_id == "spm_…" and method.token == "{permanent_token}"
    # The documented answer repeats only the permanent token; "show the customer last4 + brand only":
    # the display data the browser gave (and Caselle stored) fills the rest.
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == ("VISA", "4242", 12, 2027)
    assert method.holder_name == "Alex Morales"
    assert "{proxynized_token}" not in str(dict(method.raw)) and "{permanent_token}" not in str(dict(method.raw))


def test_validate_a_wallet_payment_as_documented():
    with Responder([
        token_exchange(),
        Exchange(source="[WALLETS] wallet payment body; [PAYMENTS] validate phase", method="POST",
                 path="/api/payments", headers=API_HEADERS,
                 json={"base_amount": 12345, "currency": "USD",
                       "reference_id": Match(regex=r"^order-9$", note="the docs leave it empty; ours is the order"),
                       "payment_method": {"payment_method_type": "wallet_credit",
                                          "wallet": {"saved_payment_method_uid": "spm_…"}}},
                 required=("base_amount", "currency", "payment_method.wallet.saved_payment_method_uid"),
                 allow_extra={"tax_amount": "[PAYMENTS] the validate call's documented tax_amount (0 here)"},
                 response={"uid": "pay_recorded", "processing_fee_amount": 370, "total_amount": 12715}),
    ]) as responder:
        result = processor(responder).charge(ChargeRequest(
            customer=CustomerRef(id=CUSTOMER_UID), amount=12345, currency="USD", capture=False,
            method=MethodRef(token="{permanent_token}", method_id="spm_…"), reference="order-9"))
        responder.verify()
    assert (result.reference, result.status, result.amount) == ("pay_recorded", base.CHARGE_AUTHORIZED, 12345)
    assert result.raw["processing_fee_amount"] == 370 and result.raw["total_amount"] == 12715
