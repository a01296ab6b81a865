"""CyberSource backend against recorded pairs from CyberSource's own material (not our fake).

Sources:

* [CUST] developer.cybersource.com/docs/cybs/en-us/tms/developer/ctv/rest/tms/tms-cust-tkn/
  tms-cust-tkn-create-intro.html — "REST Example: Creating a Customer", request and response.
* [AUTH-TT] developer.cybersource.com/docs/cybs/en-us/digital-accept-flex/developer/all/rest/
  digital-accept-flex/da-payments/da-auth-token-create-tms-task.html — "Authorization and Creating
  TMS Tokens with a Transient Token": the request (billTo, transient token) and its required
  fields (billTo firstName, lastName, address1, locality, administrativeArea, postalCode, country,
  email).
* [AUTH-RESP] .../da-payments/da-auth-token-task/da-auth-token-ex-rest.html — the answer to an
  authorization with a transient token (its stored copy ends after ``processorInformation``;
  ``status`` and ``tokenInformation`` are added with the field names of the SDK's
  ``PtsV2PaymentsPost201ResponseTokenInformation`` and the ids of [PI]).
* [PI] developer.cybersource.com/docs/cybs/en-us/tms/developer/ctv/rest/tms/tms-pi-tkn/
  tms-pi-tkn-retrieve-intro.html — "REST Example: Retrieving a Payment Instrument", response
  (the customer-scoped route answers the same payment-instrument object).
* [CAPTURE] developer.cybersource.com/docs/cybs/en-us/payments/developer/ctv/rest/payments/
  payment-l2-intro/l23-l2-processing-capture-intro-payments/l23-l2-processing-capture-ex-rest-ctv.html
  — capture request and response.
* [SDK] GitHub ``CyberSource/cybersource-rest-client-python`` @ a9dde299: ``CyberSource/api/
  transaction_details_api.py`` (``GET /tss/v2/transactions/{id}`` with ``Accept:
  application/hal+json;charset=utf-8``), ``payments_api.py``/``capture_api.py`` (HAL Accept),
  ``customer_api.py``/``customer_payment_instrument_api.py`` (``application/json;charset=utf-8``),
  ``docs/TssV2TransactionsGet200Response*.md`` (transaction details fields: the stored docs have no
  card example, so that answer is assembled from these fields and the ids above).

* [LCM] developer.cybersource.com .../tms-net-tkn-onboard/tms-lcm/tms-lcm-ex-rest.html — the
  ``tms.networktoken.updated`` notification body (the signature scheme is the webhooks guide's; its
  worked vector is checked in ``tests/processors/test_cybersource.py``).

* [TSS] ``CyberSource/cybersource-rest-client-python`` ``CyberSource/api/search_transactions_api.py``
  (``create_search``: ``POST /tss/v2/searches``, Accept and Content-Type
  ``application/json;charset=utf-8``, answer ``TssV2TransactionsPost201Response``), its models
  ``tss_v2_transactions_post201_response.py`` / ``..._embedded.py`` (JSON keys ``_embedded``,
  ``transactionSummaries``, ``totalCount``) and ``docs/TssV2TransactionsPost201ResponseEmbedded*.md``;
  the request as in ``CyberSource/cybersource-rest-samples-php``
  ``Samples/TransactionSearch/CoreServices/CreateSearchRequest.php`` (save, name, timezone, query
  ``clientReferenceInformation.code:12345``, offset 0, limit 100, sort). No stored source shows a
  search answer: it is assembled from those model fields and the ids above.

No official example in these sources covers reversals or refunds: they are not covered here.
"""

from __future__ import annotations

import base64

from vault_wallets.processors import base
from vault_wallets.processors.base import AddressData, CustomerData, CustomerRef, VaultRequest
from vault_wallets.processors.cybersource import CyberSourceProcessor

from .harness import Exchange, Match, Responder

MERCHANT = "testrest"
KEY_ID = "08c94330-f618-42a3-b09d-e1e43be5efda"
SECRET = "yBJxy6LjM2TmcPGu+GaJrHtkke25fPpUX+UY6/L/1tE="
TMS_JSON = "application/json;charset=utf-8"  # [SDK] customer_api.py, customer_payment_instrument_api.py
HAL_JSON = "application/hal+json;charset=utf-8"  # [SDK] payments_api.py, transaction_details_api.py


def signed(accept: str, *, body: bool) -> dict:
    """The HTTP Signature headers every request carries, and the Accept the SDK declares."""
    names = "host date request-target digest v-c-merchant-id" if body else "host date request-target v-c-merchant-id"
    headers = {
        "Accept": accept,
        "v-c-merchant-id": MERCHANT,
        "Date": Match(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$", note="RFC 7231"),
        "Signature": Match(rf'^keyid="{KEY_ID}", algorithm="HmacSHA256", headers="{names}", signature="[^"]+"$',
                           note="HTTP Signature"),
    }
    if body:
        headers["Content-Type"] = TMS_JSON
        headers["Digest"] = Match(r"^SHA-256=[A-Za-z0-9+/]{43}=$", note="base64 of the raw SHA-256")
    return headers


CUSTOMER_ID = "F2F3ADA770102B51E053A2598D0A9078"
PAYMENT_CUSTOMER = "AAE3DD3DED844001E05341588E0AD0D6"  # [AUTH-RESP] paymentInformation.customer.id
PAYMENT_ID = "6826225725096718703955"  # [AUTH-RESP]
INSTRUMENT_ID = "F39763E8CFDF2354E053AF598E0AF684"  # [PI]
IDENTIFIER_ID = "7010000000016241111"  # [PI]
TRANSIENT = (  # [AUTH-TT] tokenInformation.transientTokenJwt, verbatim
    "eyJraWQiOiIwMFN2SWFHSWZ5YXc4OTdyRGVHOWVGZE9ES2FDS2MxcSIsImFsZyI6IlJTMjU2In0.eyJpc3MiOiJGbGV4LzAwIiwiZXhwIj"
    "oxNjE0NzkyNTQ0LCJ0eXBlIjoiYXBpLTAuMS4wIiwiaWF0IjoxNjE0NzkxNjQ0LCJqdGkiOiIxRDBWMzFQMUtMRTNXN1NWSkJZVE04VUcx"
    "WE0yS0lPRUhJVldBSURPkhLNjJJSFQxUVE1NjAzRkM3NjA2MDlDIn0.FrN1ytYcpQkn8TtafyFZnJ3dV3uu1XecDJ4TRIVZN-jpNbamcluA"
    "KVZ1zfdhbkrB6aNVWECSvjZrbEhDKCkHCG8IjChzl7Kg642RWteLkWz3oiofgQqFfzTuq41sDhlIqB-UatveU_2ukPxLYl87EX9ytpx4zCJ"
    "Vmj6zGqdNP3q35Q5y59cuLQYxhRLk7WVx9BUgW85tl2OHaajEc25tS1FwH3jDOfjAC8mu2MEk-Ew0-ukZ70Ce7Zaq4cibg_UTRx7_S2c4IU"
    "mRFS3wikS1Vm5bpvcKLr9k_8b9YnddIzp0p0JOCjXC_nuofQT7_x_-CQayx2czE0kD53HeNYC5hQ"
)
BILL_TO = {  # [AUTH-TT] orderInformation.billTo, verbatim
    "firstName": "John", "lastName": "Doe", "address1": "1 Market St", "locality": "san francisco",
    "administrativeArea": "CA", "postalCode": "94105", "country": "US", "email": "test@cybs.com",
    "phoneNumber": "4158880000",
}
INSTRUMENT = {  # [PI] response, verbatim
    "_links": {"self": {"href": "https://apitest.cybersource.comtms/v1/paymentinstruments/F39763E8CFDF2354E053AF598E0AF684"}},
    "id": INSTRUMENT_ID, "object": "paymentInstrument", "state": "ACTIVE",
    "card": {"expirationMonth": "12", "expirationYear": "2031", "type": "visa"},
    "billTo": {"firstName": "John", "lastName": "Doe", "company": "Company Name", "address1": "1 Market St",
               "locality": "San Francisco", "administrativeArea": "CA", "postalCode": "94105", "country": "US",
               "email": "test@cybs.com", "phoneNumber": "4158880000"},
    "metadata": {"creator": "testrest"},
    "_embedded": {"instrumentIdentifier": {
        "_links": {"self": {"href": "https://apitest.cybersource.com/tms/v1/instrumentidentifiers/7010000000016241111"},
                   "paymentInstruments": {"href": "https://apitest.cybersource.comtms/v1/instrumentidentifiers/"
                                                  "7010000000016241111/paymentinstruments"}},
        "id": IDENTIFIER_ID, "object": "instrumentIdentifier", "state": "ACTIVE",
        "card": {"number": "411111XXXXXX1111"},
        "processingInformation": {"authorizationOptions": {"initiator": {"merchantInitiatedTransaction": {
            "previousTransactionId": "123456789619999"}}}},
        "metadata": {"creator": "testrest"}}},
}


def processor(responder: Responder) -> CyberSourceProcessor:
    return CyberSourceProcessor("cs-recorded", {"MERCHANT_ID": MERCHANT, "KEY_ID": KEY_ID, "SHARED_SECRET": SECRET,
                                                "BASE_URL": responder.url, "TIMEOUT": (2, 2), "RETRIES": 0})


def test_create_customer_as_documented():
    with Responder([
        Exchange(
            source="[CUST] REST Example: Creating a Customer", method="POST", path="/tms/v2/customers",
            headers=signed(TMS_JSON, body=True),
            json={"buyerInformation": {"merchantCustomerID": "Your customer identifier", "email": "test@cybs.com"},
                  "clientReferenceInformation": {"code": "123456"},
                  "merchantDefinedInformation": [{"name": "data1", "value": "Your customer data"}]},
            required=("buyerInformation.merchantCustomerID",),
            status=201,
            response={
                "_links": {"self": {"href": f"/tms/v2/customers/{CUSTOMER_ID}"},
                           "paymentInstruments": {"href": f"/tms/v2/customers/{CUSTOMER_ID}/payment-instruments"},
                           "shippingAddresses": {"href": f"/tms/v2/customers/{CUSTOMER_ID}/shipping-addresses"}},
                "id": CUSTOMER_ID,
                "buyerInformation": {"merchantCustomerID": "Your customer identifier", "email": "test@cybs.com"},
                "clientReferenceInformation": {"code": "TC50171_3"},
                "merchantDefinedInformation": [{"name": "data1", "value": "Your customer data"}],
                "metadata": {"creator": "testrest"},
            },
        ),
    ]) as responder:
        customer = processor(responder).create_customer(CustomerData(
            reference_id="Your customer identifier", email="test@cybs.com", metadata={"data1": "Your customer data"}))
        responder.verify()
    assert customer.id == CUSTOMER_ID
    assert customer.raw["buyerInformation"]["merchantCustomerID"] == "Your customer identifier"


def test_vaulting_sends_bill_to_from_what_the_shop_knows():
    """Wire fault 6: without relaxed address requirements the authorization needs billTo; the
    backend sends the shop's name, email and default address."""
    auth_answer = {  # [AUTH-RESP], plus status and tokenInformation (see the module docstring)
        "_links": {"authReversal": {"method": "POST", "href": f"/pts/v2/payments/{PAYMENT_ID}/reversals"},
                   "self": {"method": "GET", "href": f"/pts/v2/payments/{PAYMENT_ID}"},
                   "capture": {"method": "POST", "href": f"/pts/v2/payments/{PAYMENT_ID}/captures"}},
        "clientReferenceInformation": {"code": "TC50171_3"},
        "id": PAYMENT_ID,
        "orderInformation": {"amountDetails": {"authorizedAmount": "0.00", "currency": "USD"}},
        "paymentAccountInformation": {"card": {"type": "001"}},
        "paymentInformation": {"tokenizedCard": {"type": "001"}, "card": {"type": "001"},
                               "customer": {"id": PAYMENT_CUSTOMER}},
        "pointOfSaleInformation": {"terminalId": "111111"},
        "processorInformation": {"approvalCode": "888888", "networkTransactionId": "123456789619999",
                                 "transactionId": "123456789619999", "responseCode": "100",
                                 "avs": {"code": "X", "codeRaw": "I1"}},
        "status": "AUTHORIZED",
        "tokenInformation": {"instrumentIdentifierNew": False,
                             "instrumentIdentifier": {"state": "ACTIVE", "id": IDENTIFIER_ID},
                             "paymentInstrument": {"id": INSTRUMENT_ID}},
    }
    with Responder([
        Exchange(
            source="[AUTH-TT] request; paymentInformation.customer.id per 'Authorizing a Payment with a "
                   "Customer Token' (../shared/seeds/002)",
            method="POST", path="/pts/v2/payments", headers=signed(HAL_JSON, body=True),
            json={
                "clientReferenceInformation": {"code": "TC50171_3"},
                "processingInformation": {
                    "actionList": ["TOKEN_CREATE"],
                    "actionTokenTypes": Match(items_in=("customer", "paymentInstrument", "shippingAddress",
                                                        "instrumentIdentifier"),
                                              note="documented actionTokenTypes; the customer exists already"),
                },
                "paymentInformation": {"customer": {"id": PAYMENT_CUSTOMER}},
                "orderInformation": {
                    "amountDetails": {"totalAmount": Match(r"^0\.00$", note="a zero-amount verification, "
                                                                          "not the example's 102.21"),
                                      "currency": "USD"},
                    "billTo": BILL_TO,
                },
                "tokenInformation": {"transientTokenJwt": TRANSIENT},
            },
            required=tuple(f"orderInformation.billTo.{name}" for name in (
                "firstName", "lastName", "address1", "locality", "administrativeArea", "postalCode", "country",
                "email")) + ("tokenInformation.transientTokenJwt",),
            allow_extra={"processingInformation.capture": "documented boolean (SDK Ptsv2paymentsProcessingInformation);"
                                                          " false: authorize only"},
            status=201, response=auth_answer,
        ),
        Exchange(
            source="[PI] REST Example: Retrieving a Payment Instrument (customer-scoped route)",
            method="GET", path=f"/tms/v2/customers/{PAYMENT_CUSTOMER}/payment-instruments/{INSTRUMENT_ID}",
            headers=signed(TMS_JSON, body=False), response=INSTRUMENT,
        ),
    ]) as responder:
        method = processor(responder).vault_payment_method(VaultRequest(
            customer=CustomerRef(id=PAYMENT_CUSTOMER), temporary_token=TRANSIENT, idempotency_key="TC50171_3",
            billing_address=AddressData(line1="1 Market St", city="san francisco", state="CA", postal_code="94105",
                                        country="US"),
            email="test@cybs.com", customer_name="John Doe"))
        responder.verify()
    assert method.token == INSTRUMENT_ID and method.fingerprint == IDENTIFIER_ID
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == ("visa", "1111", 12, 2031)
    assert method.holder_name == "John Doe"
    assert method.verification_status == base.VERIFICATION_SUCCESS
    assert method.raw["bin"] == "411111"


def test_capture_reads_transaction_details_with_the_declared_accept():
    """Wire fault 7: ``GET /tss/v2/transactions/{id}`` accepts ``application/hal+json;charset=utf-8``."""
    details = {  # assembled from [SDK] docs/TssV2TransactionsGet200Response*.md with the ids above
        "id": PAYMENT_ID, "rootId": PAYMENT_ID, "reconciliationId": "6807035882136830803954",
        "merchantId": MERCHANT, "submitTimeUTC": "2023-04-05T14:10:21Z",
        "applicationInformation": {"status": "AUTHORIZED", "reasonCode": 100, "rCode": "1", "rFlag": "SOK",
                                   "applications": [{"name": "ics_auth", "status": "AUTHORIZED", "reasonCode": "100",
                                                     "rCode": "1", "rFlag": "SOK", "rMessage": "Request was processed "
                                                                                               "successfully."}]},
        "clientReferenceInformation": {"code": "TC50171_3"},
        "orderInformation": {"amountDetails": {"totalAmount": "102.21", "currency": "USD",
                                               "authorizedAmount": "102.21"}},
        "_links": {"self": {"href": f"https://apitest.cybersource.com/tss/v2/transactions/{PAYMENT_ID}",
                            "method": "GET"}},
    }
    with Responder([
        Exchange(source="[SDK] transaction_details_api.py get_transaction (Accept declared there)",
                 method="GET", path=f"/tss/v2/transactions/{PAYMENT_ID}", headers=signed(HAL_JSON, body=False),
                 response=details, response_headers={"Content-Type": HAL_JSON}),
        Exchange(source="[CAPTURE] REST Example: Capturing a Payment", method="POST",
                 path=f"/pts/v2/payments/{PAYMENT_ID}/captures", headers=signed(HAL_JSON, body=True),
                 json={"clientReferenceInformation": {"code": "TC50171_3"},
                       "orderInformation": {"amountDetails": {"totalAmount": "102.21", "currency": "USD"}}},
                 mode="exact", status=201,
                 response={"_links": {"void": {"method": "POST",
                                               "href": "/pts/v2/captures/6807039415896954303954/voids"},
                                      "self": {"method": "GET", "href": "/pts/v2/captures/6807039415896954303954"}},
                           "clientReferenceInformation": {"code": "TC50171_3"}, "id": "6807039415896954303954",
                           "orderInformation": {"amountDetails": {"totalAmount": "102.21", "currency": "USD"}},
                           "reconciliationId": "6807035882136830803954", "status": "PENDING",
                           "submitTimeUtc": "2023-04-05T14:12:21Z"},
                 response_headers={"Content-Type": HAL_JSON}),
    ]) as responder:
        result = processor(responder).capture(PAYMENT_ID)
        responder.verify()
    assert result.status == base.CHARGE_CAPTURED and result.reference == PAYMENT_ID
    assert (result.amount, result.amount_captured, result.currency) == (10221, 10221, "USD")
    assert result.raw["id"] == "6807039415896954303954"


def test_signing_vector_from_the_official_sdk_still_holds():
    """The request signing the harness only pattern-matches is pinned to the SDK-derived vector."""
    from vault_wallets.processors.cybersource import body_digest, sign_request

    body = b'{"clientReferenceInformation":{"code":"TC50171_3"}}'
    assert body_digest(body) == "SHA-256=8/r3xgd0zzJf7lzdmDJ0phW/UOyPt23n++R+PbYNQeU="
    headers = sign_request(method="POST", target="/pts/v2/payments", host="apitest.cybersource.com",
                           date="Thu, 18 Jul 2019 00:18:03 GMT", merchant_id=MERCHANT, key_id=KEY_ID,
                           secret=base64.b64decode(SECRET), body=body)
    assert headers["Signature"].endswith('signature="0FHxkKDumzZiBpkzKJ1BHQJYo1r1hD84c7774apzrJU="')


# [LCM] developer.cybersource.com/docs/cybs/en-us/tms/developer/ctv/rest/tms/tms-net-tkn-onboard/tms-lcm/
# tms-lcm-ex-rest.html — "Network Token Update Notification", verbatim (the docs' own instrument
# identifier link has an href ending …829123 and an id …829870; the id is what a client reads).
NETWORK_TOKEN_UPDATED = {
    "eventType": "tms.networktoken.updated", "webhookId": "261d2616-xxxx-9ba8-q3456-8b588d0a5f2a",
    "productId": "tokenManagement", "organizationId": "mid", "eventDate": "2025-02-24T16:46:27",
    "transactionTraceId": "234234234234234c14e374c2b5a31e26c4316f0dc-0", "retryNumber": 0,
    "payload": {"data": {
        "reason": "TOKEN_STATUS_UPDATED", "id": "2EE7067B2F015632E0631E588E0A1987", "type": "tokenizedCardUpdates",
        "version": "1.0",
        "_links": {"tokenized-cards": [{"href": "/tms/v2/tokenized-cards/2E8B371F931C4B9BE0631D588D0AF123",
                                        "id": "2E8B371F931C4B9BE0631D588D0AF123", "state": "DELETED"}],
                   "instrumentIdentifiers": [{"href": "/tms/v1/instrumentidentifiers/7045450003485829123",
                                              "id": "7045450003485829870"}]}},
        "organizationId": "mid"},
    "requestType": "NEW",
}


def test_network_token_update_names_the_instruments_of_its_identifier():
    """Webhook: the documented notification, signed as the webhooks guide describes
    (``v-c-signature: t=…;keyId=…;sig=base64(HMAC-SHA256(base64-decoded key, t + "." + body))``)."""
    import hashlib
    import hmac
    import json as jsonlib
    import time
    from datetime import datetime, timezone

    from vault_wallets.processors.base import WebhookRequest

    key = base64.b64encode(b"recorded-webhook-key").decode()
    body = jsonlib.dumps(NETWORK_TOKEN_UPDATED).encode()
    stamp = str(int(time.time() * 1000))
    sig = base64.b64encode(hmac.new(base64.b64decode(key), stamp.encode() + b"." + body, hashlib.sha256).digest())
    request = WebhookRequest(
        headers={"content-type": "application/json", "v-c-event-type": "tms.networktoken.updated",
                 "v-c-signature": f"t={stamp};keyId=kid-1;sig={sig.decode()}",
                 "v-c-transaction-trace-id": '"234234234234234c14e374c2b5a31e26c4316f0dc-0"'},
        body=body, received_at=datetime.now(timezone.utc))
    collection = {  # "Retrieve an Instrument Identifier's Payment Instruments" (collection fields), holding [PI]
        "_links": {"self": {"href": "/tms/v1/instrumentidentifiers/7045450003485829870/paymentinstruments"
                                    "?offset=0&limit=100"}},
        "object": "collection", "offset": 0, "limit": 100, "count": 1, "total": 1,
        "_embedded": {"paymentInstruments": [INSTRUMENT]},
    }
    with Responder([
        Exchange(source="developer.cybersource.com tms-ii-tkn-retrieve-pi-intro (offset/limit paging); "
                        "[SDK] instrument_identifier_api.py get_instrument_identifier_payment_instruments_list",
                 method="GET", path="/tms/v1/instrumentidentifiers/7045450003485829870/paymentinstruments",
                 query={"offset": "0", "limit": "100"}, headers=signed(TMS_JSON, body=False), response=collection),
    ]) as responder:
        cybersource = CyberSourceProcessor("cs-recorded", {
            "MERCHANT_ID": MERCHANT, "KEY_ID": KEY_ID, "SHARED_SECRET": SECRET, "BASE_URL": responder.url,
            "TIMEOUT": (2, 2), "RETRIES": 0, "WEBHOOK_KEYS": {"kid-1": key}})
        cybersource.verify_webhook(request)
        assert cybersource.webhook_event_id(request) == ("234234234234234c14e374c2b5a31e26c4316f0dc-0",
                                                          "tms.networktoken.updated")
        [event] = cybersource.parse_webhook(request)
        responder.verify()
    assert event.type == base.EVENT_PAYMENT_METHOD_UPDATED
    assert event.payment_method_ids == (INSTRUMENT_ID,)
    assert event.data == {"reason": "TOKEN_STATUS_UPDATED", "network_token_states": ["DELETED"]}


def test_set_default_and_delete_a_payment_instrument():
    """``PATCH``/``DELETE /tms/v2/customers/{id}/payment-instruments/{id}`` ([SDK]
    customer_payment_instrument_api.py; ``default`` is the documented field "Create a Customer Payment
    Instrument" lists: developer.cybersource.com .../tms-cust-pi-tkn/tms-cust-pi-tkn-create-intro.html)."""
    path = f"/tms/v2/customers/{PAYMENT_CUSTOMER}/payment-instruments/{INSTRUMENT_ID}"
    with Responder([
        Exchange(source="[SDK] patch_customers_payment_instrument", method="PATCH", path=path,
                 headers=signed(TMS_JSON, body=True), json={"default": True}, mode="exact",
                 response={**INSTRUMENT, "default": True}),
        Exchange(source="[SDK] delete_customer_payment_instrument", method="DELETE", path=path,
                 headers=signed(TMS_JSON, body=False), status=204, response=None),
    ]) as responder:
        cybersource = processor(responder)
        ref = base.MethodRef(token=INSTRUMENT_ID)
        cybersource.set_default_payment_method(CustomerRef(id=PAYMENT_CUSTOMER), ref)
        cybersource.delete_payment_method(CustomerRef(id=PAYMENT_CUSTOMER), ref)
        responder.verify()


def test_a_lost_charge_is_found_with_transaction_search():
    """[TSS] then [SDK] transaction details: the charge whose answer was lost is found by its code."""
    summary = {  # [TSS] TssV2TransactionsPost201ResponseEmbeddedTransactionSummaries fields
        "id": PAYMENT_ID, "submitTimeUtc": "2023-04-05T14:10:21Z", "merchantId": MERCHANT,
        "applicationInformation": {"reasonCode": "100", "rCode": "1", "rFlag": "SOK",
                                   "applications": [{"name": "ics_auth", "reasonCode": "100", "rCode": "1",
                                                     "rFlag": "SOK", "reconciliationId": "6807035882136830803954"}]},
        "clientReferenceInformation": {"code": "TC50171_3"},
        "orderInformation": {"amountDetails": {"totalAmount": "102.21", "currency": "USD"}},
        "paymentInformation": {"customer": {"customerId": CUSTOMER_ID}},
        "_links": {"transactionDetail": {"href": f"/tss/v2/transactions/{PAYMENT_ID}", "method": "GET"}},
    }
    details = {  # as in test_capture_reads_transaction_details_with_the_declared_accept
        "id": PAYMENT_ID, "rootId": PAYMENT_ID, "merchantId": MERCHANT,
        "applicationInformation": {"status": "AUTHORIZED", "reasonCode": 100, "rCode": "1", "rFlag": "SOK",
                                   "applications": [{"name": "ics_auth", "status": "AUTHORIZED", "reasonCode": "100",
                                                     "rCode": "1", "rFlag": "SOK"}]},
        "clientReferenceInformation": {"code": "TC50171_3"},
        "orderInformation": {"amountDetails": {"totalAmount": "102.21", "currency": "USD",
                                               "authorizedAmount": "102.21"}},
        "_links": {"self": {"href": f"/tss/v2/transactions/{PAYMENT_ID}", "method": "GET"}},
    }
    with Responder([
        Exchange(source="[TSS] create_search; body as CreateSearchRequest.php", method="POST",
                 path="/tss/v2/searches", headers=signed(TMS_JSON, body=True),
                 json={"save": Match(check=lambda v: v in (False, "false"), note="the sample sends false"),
                       "name": Match(max_len=100, note="a free name for the search"),
                       "timezone": Match(r"^[A-Za-z_]+(/[A-Za-z_]+)?$", note="a TZ database name"),
                       "query": "clientReferenceInformation.code:TC50171_3",
                       "offset": 0, "limit": 100,
                       "sort": Match(r"^submitTimeUtc:(asc|desc)$", note="TssV2TransactionsPost201Response.sort")},
                 required=("query", "sort"), status=201,
                 response={"searchId": "87e1e4bd-cac2-49b1-919a-4d5e29a2e55d", "save": False, "name": "TSS search",
                           "timezone": "UTC", "query": "clientReferenceInformation.code:TC50171_3", "offset": 0,
                           "limit": 100, "sort": "submitTimeUtc:desc", "count": 1, "totalCount": 1,
                           "submitTimeUtc": "2023-04-05T14:20:00Z", "_embedded": {"transactionSummaries": [summary]}},
                 response_headers={"Content-Type": TMS_JSON}),
        Exchange(source="[SDK] transaction_details_api.py get_transaction", method="GET",
                 path=f"/tss/v2/transactions/{PAYMENT_ID}", headers=signed(HAL_JSON, body=False),
                 response=details, response_headers={"Content-Type": HAL_JSON}),
    ]) as responder:
        found = processor(responder).find_charge(base.ChargeRequest(
            customer=CustomerRef(id=CUSTOMER_ID), method=None, amount=10221, currency="USD", capture=False,
            idempotency_key="TC50171_3"))
        responder.verify()
    assert (found.reference, found.status, found.amount, found.amount_captured) == (
        PAYMENT_ID, base.CHARGE_AUTHORIZED, 10221, 0)

