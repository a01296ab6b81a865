"""ProcessOut backend against recorded pairs from ProcessOut's own material (not our fake).

Sources (read at these commits):

* [DOCS] GitHub ``processout/documentation`` @ 0001a650: ``source/_projectID.erb`` (the docs'
  project id ``proj_gAO1Uu0ysZJvDuUpOGPkUBeE3pGalk3x``), ``source/_header-curl.erb`` (every curl
  example authenticates with ``-u test-<projectID>:<secret>``: the sandbox credential is the
  project id with ``test-``), ``source/refs/content/payments/_events.md.erb`` (the ``data`` of a
  ``transaction.captured`` event, GET ``/events/{id}``), ``_tokens.md.erb``, ``_invoices.md.erb``
  (ids and calls), ``source/refs/content/payments/_webhooks.md.erb`` (invoice creation example).
* [SDK] GitHub ``processout/processout-python`` @ ced6192c: ``processout/networking/request.py``
  (JSON bodies, ``API-Version: 1.4.0.0``, ``Idempotency-Key``; ``expand`` is put in the body),
  ``processout/customer.py`` (``POST /customers`` → ``body["customer"]``, list → ``body["customers"]``),
  ``processout/token.py`` (``POST /customers/{id}/tokens`` → ``body["token"]``),
  ``processout/invoice.py`` (``capture``/``void`` → ``body["transaction"]``, ``fetch_transaction``
  → ``GET /invoices/{id}/transactions``), ``processout/event.py`` (``GET /events/{id}`` →
  ``body["event"]``).
* [REF] docs.processout.com/reference/void-an-invoice: the documented answer to a void is
  ``{"success": true, "transaction": {}}``.
* [GUIDE] seed 001 (docs.processout.com/docs/saving-a-token-to-capture-future-payments): customer
  ``first_name=John, last_name=Smith, currency=USD``; token ``source=card_Tpu6…``.

ProcessOut publishes no complete JSON answers for customers, tokens or invoices in these sources
(only field lists); those answers are assembled from the SDK's parsing and the documented fields,
with the docs' ids, and say so.  No official example exists for refunds
(``POST /transactions/{id}/refunds``): refund is not covered here.
"""

from __future__ import annotations

import base64
import json

import pytest

from vault_wallets.processors import base
from vault_wallets.processors.base import (
    ChargeRequest,
    CustomerData,
    CustomerRef,
    MethodRef,
    VaultRequest,
    WebhookRequest,
    WebhookVerificationError,
)
from vault_wallets.processors.processout import ProcessOutProcessor

from .harness import Exchange, Match, Responder

PROJECT = "proj_gAO1Uu0ysZJvDuUpOGPkUBeE3pGalk3x"  # [DOCS] source/_projectID.erb
CREDENTIAL = f"test-{PROJECT}"  # [DOCS] source/_header-curl.erb: -u test-<projectID>:<secret>
SECRET = "key_sandbox_mah31RDFqcDxmaS7MvhDbJfDJvjtsFTB"  # [GUIDE] curl examples
BASIC = "Basic " + base64.b64encode(f"{CREDENTIAL}:{SECRET}".encode()).decode()
SDK_HEADERS = {"Authorization": BASIC, "API-Version": "1.4.0.0", "Accept": "application/json"}

# [DOCS] _events.md.erb: "an example of the content of the data field of an event" (verbatim).
EVENT_DATA = {
    "name": "transaction.captured",
    "sandbox": False,
    "transaction": {
        "id": "tr_WZIEktoQtzflmfv4aJA645Qwj3JzaVGa",
        "invoice_id": "iv_CKL1LOXGZ71wYAqGCyfDFhDTR3MGPkLY",
        "invoice": {
            "id": PROJECT, "name": "T-Shirt Size M", "price": "22.99", "total": "22.99", "currency": "USD",
            "request_email": True, "request_shipping": False, "return_url": "https://sales.appgrouplimited.com",
            "cancel_url": None, "sandbox": False, "url": "https://checkout.processout.com/iv_...",
            "created_at": "2016-11-05T13:05:27.136003Z",
        },
        "customer_id": "cust_74qLxAbCpEYOxiBBwXTPKTP4QgTstude",
        "customer": {
            "id": "cust_74qLxAbCpEYOxiBBwXTPKTP4QgTstude", "balance": "0", "currency": "USD",
            "email": "john@gmail.com", "first_name": "", "last_name": "", "address1": "", "address2": "",
            "city": "", "state": "", "zip": "", "country_code": "", "metadata": {}, "sandbox": False,
            "created_at": "2016-11-05T13:05:47.963398Z", "transactions_count": 1, "subscriptions_count": 0,
            "mrr_local": 0, "total_revenues_local": 22.99,
        },
        "card_id": "card_knolIrMhVyZXLyYwZ56o6jxgYslH0Sqy",
        "card": {
            "address1": None, "address2": None, "avs_check": "unknown", "cvc_check": "passed", "bank_name": "",
            "brand": "", "city": None, "country_code": "US", "created_at": "2017-03-17T17:05:08.675622Z",
            "exp_month": 10, "exp_year": 2018, "expires_soon": False, "id": "card_knolIrMhVyZXLyYwZ56o6jxgYslH0Sqy",
            "iin": "424242", "last_4_digits": "4242", "metadata": {}, "name": None,
            "project_id": "9b66d6da-45e7-489f-bf91-0a012fe60490", "sandbox": False, "scheme": "visa",
            "state": None, "type": "credit", "zip": None,
        },
        "refunds": [],
        "status": "completed",
        "created_at": "2017-03-17T17:04:55.813311Z",
        "amount": "22.99",
        "authorized": True,
        "authorized_amount": "22.99",
        "available_amount": "22.99",
        "captured": True,
        "captured_amount": "22.99",
        "refunded_amount": "0",
        "currency": "EUR",
        "details": {"country": None},
        "error_code": None,
        "estimated_fee": "0.57",
        "gateway_fee": "0.51",
        "gateway_fee_details": {"exchange_fee": "0", "processing_fee": "0.51", "refund_fee": "0"},
        "gateway_name": "stripe",
        "metadata": {},
        "name": "T-Shirt Size M",
        "sandbox": False,
    },
}
TRANSACTION = EVENT_DATA["transaction"]
CARD = TRANSACTION["card"]

CUSTOMER_ID = "cust_C4hZXQTU0aWoYeenHYC0DektYDqf8ocj"  # [DOCS] _tokens.md.erb
TOKEN_ID = "tok_fKK4btSG7wd13ZZaevzhMcuNbpjcu1Zy"  # [DOCS] _tokens.md.erb
CARD_TOKEN = "card_Tpu6ZOCDu1tnDKp0kTnPOcVDMUbW7dTU"  # [GUIDE] "Without verification"
INVOICE_ID = "iv_MgeLS2Rr3ZGwjqOvDvYSuWx7ce88luXl"  # [DOCS] _invoices.md.erb capture/void

# Assembled from the documented token fields (docs.processout.com/reference/tokens; [SDK] token.py).
TOKEN = {
    "id": TOKEN_ID, "customer_id": CUSTOMER_ID, "card_id": CARD["id"], "type": "card", "is_default": False,
    "is_chargeable": True, "verification_status": "not-requested", "summary": "**** **** **** 4242",
    "metadata": {}, "created_at": "2017-03-17T17:05:08.675622Z", "card": CARD,
}


def processor(responder: Responder) -> ProcessOutProcessor:
    return ProcessOutProcessor("po-recorded", {
        "PROJECT_ID": CREDENTIAL, "PROJECT_SECRET": SECRET, "BASE_URL": responder.url,
        "TIMEOUT": (2, 2), "RETRIES": 0,
    })


def test_create_customer_sends_the_documented_fields():
    with Responder([
        Exchange(
            source="[SDK] customer.py Customer.all (body['customers']); [DOCS] _pagination.md.erb (limit, order)",
            method="GET", path="/customers", query={"order": "desc"}, headers=SDK_HEADERS,
            response={"success": True, "customers": [], "has_more": False},
        ),
        Exchange(
            source="[GUIDE] Step 1 create a customer; [SDK] customer.py Customer.create (body['customer'])",
            method="POST", path="/customers",
            headers={**SDK_HEADERS, "Content-Type": "application/json",
                     "Idempotency-Key": Match(r"^vw-customer-[0-9a-f]{48}$", note="derived from the reference")},
            json={"first_name": "John", "last_name": "Smith", "currency": "USD"},
            required=("first_name", "last_name", "currency"),
            allow_extra={"metadata": "documented customer field (string → string), sent by the SDK as "
                                     "'metadata'; it carries vault_wallets' reference id"},
            response={"success": True, "customer": {
                "id": "cust_WtaVdUjAGpOlbLiYWYXBR67whr91Rlks", "project_id": PROJECT, "first_name": "John",
                "last_name": "Smith", "currency": "USD", "sandbox": True,
                "metadata": {"vault_wallets_reference_id": "ref-1", "vault_wallets_account": "po-recorded"},
                "created_at": "2017-03-17T17:04:55.813311Z"}},
        ),
    ]) as responder:
        customer = processor(responder).create_customer(
            CustomerData(reference_id="ref-1", name="John Smith", currency="USD"))
        responder.verify()
    assert customer.id == "cust_WtaVdUjAGpOlbLiYWYXBR67whr91Rlks"
    assert customer.currency == "USD"
    assert responder.body(1)["metadata"]["vault_wallets_reference_id"] == "ref-1"


def test_vault_and_fetch_a_customer_token():
    with Responder([
        Exchange(
            source="[GUIDE] Step 2 'Without verification' (source=card_…); [SDK] token.py Token.create",
            method="POST", path=f"/customers/{CUSTOMER_ID}/tokens",
            headers={**SDK_HEADERS, "Content-Type": "application/json"},
            json={"source": CARD_TOKEN}, required=("source",),
            allow_extra={"expand": "[SDK] networking/request.py _get_data puts options['expand'] in the body"},
            response={"success": True, "token": TOKEN},
        ),
        Exchange(
            source="[DOCS] _tokens.md.erb 'Fetch a token'; [SDK] token.py Token.find (body['token'])",
            method="GET", path=f"/customers/{CUSTOMER_ID}/tokens/{TOKEN_ID}", query={"expand": "card"},
            headers=SDK_HEADERS, response={"success": True, "token": TOKEN},
        ),
    ]) as responder:
        po = processor(responder)
        vaulted = po.vault_payment_method(VaultRequest(customer=CustomerRef(id=CUSTOMER_ID),
                                                       temporary_token=CARD_TOKEN))
        fetched = po.fetch_payment_method(CustomerRef(id=CUSTOMER_ID), MethodRef(token=TOKEN_ID))
        responder.verify()
    for method in (vaulted, fetched):
        assert method.token == TOKEN_ID and method.method_type == base.METHOD_CARD
        assert (method.brand, method.last4, method.exp_month, method.exp_year) == ("visa", "4242", 10, 2018)
        assert method.status == base.METHOD_EXPIRED  # the docs' card expired in 10/2018
        assert method.verification_status == base.VERIFICATION_NOT_REQUESTED
        assert TOKEN_ID not in json.dumps(dict(method.raw)) and CARD["id"] not in json.dumps(dict(method.raw))


def test_charge_creates_an_invoice_and_captures_it_with_the_token():
    invoice = {"id": INVOICE_ID, "name": "Amazing item", "amount": "4.99", "currency": "USD",
               "customer_id": "cust_LvjCcLOVe6iWn2aeCNhNmK7RbbG6K8XF", "sandbox": True}
    with Responder([
        Exchange(
            source="[DOCS] _webhooks.md.erb invoice creation (customer_id, name, amount, currency); "
                   "[SDK] invoice.py Invoice.create (body['invoice'])",
            method="POST", path="/invoices",
            headers={**SDK_HEADERS, "Idempotency-Key": "order-7:invoice"},
            json={"customer_id": "cust_LvjCcLOVe6iWn2aeCNhNmK7RbbG6K8XF", "name": "Amazing item",
                  "amount": "4.99", "currency": "USD"},
            required=("customer_id", "name", "amount", "currency"),
            response={"success": True, "invoice": invoice},
        ),
        Exchange(
            source="[DOCS] _invoices.md.erb 'Capture an invoice' (source; a token tok_… may be the source); "
                   "[SDK] invoice.py Invoice.capture (body['transaction'])",
            method="POST", path=f"/invoices/{INVOICE_ID}/capture",
            headers={**SDK_HEADERS, "Idempotency-Key": "order-7:capture"},
            json={"source": TOKEN_ID}, mode="exact",
            response={"success": True, "transaction": TRANSACTION},
        ),
    ]) as responder:
        result = processor(responder).charge(ChargeRequest(
            customer=CustomerRef(id="cust_LvjCcLOVe6iWn2aeCNhNmK7RbbG6K8XF"), amount=499, currency="USD",
            method=MethodRef(token=TOKEN_ID), description="Amazing item", idempotency_key="order-7"))
        responder.verify()
    assert result.reference == INVOICE_ID
    assert result.status == base.CHARGE_CAPTURED
    # The docs' transaction example is 22.99 EUR (its own invoice says USD): what ProcessOut answers is kept.
    assert (result.amount, result.amount_captured, result.currency) == (2299, 2299, "EUR")


def test_void_accepts_the_documented_answer():
    """Wire fault 3: ``{"success": true, "transaction": {}}`` was reported as a failed void."""
    voided = {**TRANSACTION, "status": "voided", "voided": True, "captured": False, "captured_amount": "0",
              "available_amount": "0"}  # [REF]: "returns an updated Transaction object with its status … voided"
    with Responder([
        Exchange(source="[REF] void-an-invoice (documented answer); [SDK] invoice.py Invoice.void",
                 method="POST", path=f"/invoices/{INVOICE_ID}/void", headers=SDK_HEADERS, json={},
                 mode="exact", response={"success": True, "transaction": {}}),
        Exchange(source="[SDK] invoice.py Invoice.fetch_transaction (body['transaction'])",
                 method="GET", path=f"/invoices/{INVOICE_ID}/transactions", headers=SDK_HEADERS,
                 response={"success": True, "transaction": voided}),
    ]) as responder:
        result = processor(responder).void(INVOICE_ID)
        responder.verify()
    assert result.status == base.CHARGE_VOIDED
    assert not result.failure_code
    assert (result.amount, result.currency) == (2299, "EUR")


def _event(project_id: str) -> dict:
    # [DOCS] _events.md.erb: event fields id, name, data, sandbox, fired_at (+ project_id, [SDK] event.py).
    return {"success": True, "event": {
        "id": "ev_T3wg9169RyGLnf1BIgTjLhrolEZU1DSb", "project_id": project_id, "name": "transaction.captured",
        "data": EVENT_DATA, "sandbox": True, "fired_at": "2017-03-17T17:05:08.675622Z"}}


DELIVERY = WebhookRequest(headers={"content-type": "application/json"},
                          body=b'{"event_id": "ev_T3wg9169RyGLnf1BIgTjLhrolEZU1DSb", '
                               b'"event_type": "transaction.captured"}')


def test_webhook_refetch_accepts_the_sandbox_project():
    """Wire fault 2: events carry ``proj_X`` while the sandbox credential is ``test-proj_X``."""
    with Responder([
        Exchange(source="[DOCS] _events.md.erb 'Fetch an event'; [SDK] event.py Event.find (body['event']); "
                        "project id per [DOCS] _projectID.erb",
                 method="GET", path="/events/ev_T3wg9169RyGLnf1BIgTjLhrolEZU1DSb", headers=SDK_HEADERS,
                 response=_event(PROJECT)),
    ]) as responder:
        po = processor(responder)
        po.verify_webhook(DELIVERY)
        [event] = po.parse_webhook(DELIVERY)
        responder.verify()
    assert event.type == base.EVENT_CHARGE_SUCCEEDED
    assert event.charge_reference == "iv_CKL1LOXGZ71wYAqGCyfDFhDTR3MGPkLY"
    assert event.customer_id == "cust_74qLxAbCpEYOxiBBwXTPKTP4QgTstude"
    assert event.data["amount"] == 2299 and event.data["status"] == base.CHARGE_CAPTURED


@pytest.mark.parametrize("other", ["proj_someoneElse0000000000000000000", "test-" + PROJECT + "x"])
def test_webhook_refetch_still_refuses_another_project(other):
    with Responder([
        Exchange(source="as above, with another project's id", method="GET",
                 path="/events/ev_T3wg9169RyGLnf1BIgTjLhrolEZU1DSb", response=_event(other)),
    ]) as responder:
        with pytest.raises(WebhookVerificationError) as info:
            processor(responder).parse_webhook(DELIVERY)
        responder.verify()
    assert info.value.reason == "the event belongs to another ProcessOut project"


def test_set_default_and_delete_a_token():
    """[SDK] token.py ``Token.save`` (``PUT …/tokens/{id}`` with ``set_default``; only ``success`` is
    read) and ``Token.delete`` (``DELETE …/tokens/{id}``; only ``success`` is read)."""
    with Responder([
        Exchange(source="[SDK] token.py Token.save", method="PUT", path=f"/customers/{CUSTOMER_ID}/tokens/{TOKEN_ID}",
                 headers=SDK_HEADERS, json={"set_default": True}, mode="exact", response={"success": True}),
        Exchange(source="[SDK] token.py Token.delete; [GUIDE] 'Listing and deleting customers' tokens'",
                 method="DELETE", path=f"/customers/{CUSTOMER_ID}/tokens/{TOKEN_ID}", headers=SDK_HEADERS,
                 response={"success": True}),
    ]) as responder:
        po = processor(responder)
        po.set_default_payment_method(CustomerRef(id=CUSTOMER_ID), MethodRef(token=TOKEN_ID))
        po.delete_payment_method(CustomerRef(id=CUSTOMER_ID), MethodRef(token=TOKEN_ID))
        responder.verify()
