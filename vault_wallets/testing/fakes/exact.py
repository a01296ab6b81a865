"""A loopback fake of Exact Payments' Customer Vault and Payments API.

Plays what ``ExactProcessor`` talks to, over real HTTP: raw-token auth (and the older
``Basic base64("{API_KEY}:")``), Exact's error shape, ``$limit``/``$skip``/``$sort[field]``
paging, partner routes under ``/account/{accountId}``, customers with their secret
``token``, payment methods linked to customers (the temporary token is consumed and a
permanent one issued), payments with capture/refund/void as transactions of their own,
the sandbox's 5000.xx amounts, and events delivered as unsigned webhooks carrying a
custom secret header.  Approved payments carry ``exactResponse.code`` ``"0000"`` and a
``reference`` whose ``referenceNo``/``customerRef`` exceed 20 characters or whose
``correlationId`` exceeds 60 is refused with a 400, as Exact's OpenAPI documents.  See
``docs/processors/exact.md`` for what is inferred.

Run it standalone::

    python -m vault_wallets.testing.fakes.exact --port 8101
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from datetime import date, datetime, timezone
from typing import Any

from ..cards import AMEX, DISCOVER, MASTERCARD, UNKNOWN, VISA, card_brand, luhn_ok
from ..server import (
    FakeRequest,
    FakeResponse,
    FakeServer,
    fake_fixture,
    json_response,
    route,
    serve,
    standin_response,
)

# Exact's sandbox cards, the project-wide ones, and one fake-only card that Exact refuses to link.
TEST_CARDS = {
    "4111111111111111": "ok",
    "5500000000000004": "ok",
    "2223000148400010": "ok",
    "340000000000009": "ok",
    "6011000000000004": "ok",
    "4242424242424242": "ok",
    "5555555555554444": "ok",
    "4000000000000002": "decline",  # links; payments are declined by the bank
    "4000000000001216": "fail",  # links; payments fail inside Exact's network (exactResponse 61)
    "4000000000000127": "refuse",  # fake-only: linking answers 422 (the card could not be verified)
}

# $5000.xx: "gateway failures" answer HTTP 400 {"messages": [...]} (Exact's testing page) ...
GATEWAY_ERRORS = {
    22: "Invalid Credit Card Number",
    25: "Invalid Expiry Date",
    26: "Invalid Amount",
    27: "Invalid Card Holder",
    28: "Invalid Authorization Number",
    37: "Payment Type Not Supported by Merchant",
    57: "Invalid Reference No - Blank invoice number",
    58: "Invalid AVS String",
    60: "Invalid Customer Reference No",
}
# ... and these record a failed payment with an ``exactResponse`` (Exact's response codes page).
EXACT_FAILURES = {
    8: "CVV2/CID/CVC2 Data not Verified",
    12: "Message Timed-out at Host",
    44: "Address not Verified",
    61: "Internal Network Error",
    95: "Invalid Currency Requested",
}
TEST_AMOUNT_BASE = 500000
REFERENCE_LIMITS = {"referenceNo": 20, "customerRef": 20, "correlationId": 60}

_ERROR_TYPES = {400: "invalid-request-error", 401: "authentication-error", 403: "authorization-error",
                422: "invalid-request-error"}
_ERROR_CODES = {400: "validation-error", 401: "unauthorized", 403: "payments-forbidden-error",
                404: "not-found", 405: "method-not-allowed", 422: "payments-validation-error"}
_PARTNER_RE = re.compile(r"^/account/(?P<account>[^/]+)(?P<rest>/.+)$")
_SORT_RE = re.compile(r"^\$sort\[(?P<field>[A-Za-z_.]+)\]$")


class _NotFound(Exception):
    """Answered as Exact's 404 with this message."""


class _Invalid(Exception):
    """A request body or query failed validation: answered as Exact's 400 with ``pathIssues``."""

    def __init__(self, field: str, detail: str, kind: str = "invalid"):
        super().__init__(f"{field}: {detail}")
        self.issue = {"field": field, "type": kind, "details": [detail]}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _object_id() -> str:
    return secrets.token_hex(12)  # Exact's ids are 24-hex Mongo ObjectIds


_BRANDS = frozenset({VISA, MASTERCARD, AMEX, DISCOVER})


def _brand(number: str) -> str:
    brand = card_brand(number)
    return brand if brand in _BRANDS else UNKNOWN


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def _require_int(body: dict[str, Any], field: str) -> int:
    value = body.get(field)
    if value is None:
        raise _Invalid(field, "Required", "required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(field, "Amount must be an integer" if field == "amount" else "Expected integer")
    if value <= 0:
        raise _Invalid(field, "Must be greater than 0")
    return value


def _require_str(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if value is None or value == "":
        raise _Invalid(field, "Required", "required")
    if not isinstance(value, str):
        raise _Invalid(field, "Expected string")
    return value


def _optional(body: dict[str, Any], field: str, kind: type, name: str) -> Any:
    value = body.get(field)
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise _Invalid(field, f"Expected {name}")
    return value


class ExactFake(FakeServer):
    """Exact Payments on loopback; credentials are the class attributes below."""

    name = "exact"
    title = "Exact Payments API"

    API_TOKEN = "exact-fake-application-token-7d3f9a2c41b8"
    ACCOUNT_ID = "6151ffdbefd963001c6c9d2d"
    ORGANIZATION_ID = "6151ffdbefd963001c6c9d00"
    WEBHOOK_HEADER = "X-Exact-Webhook-Secret"
    WEBHOOK_SECRET = "exact-fake-webhook-secret-3e91c07d"
    CURRENCY = "USD"
    TEMPORARY_TOKEN_TTL = 900.0  # seconds a tokenized card may wait to be linked

    processor_path = "vault_wallets.processors.exact.ExactProcessor"
    standin_path = "/js/v1/exact.js"  # the real library: https://api.exactpaysandbox.com/js/v1/exact.js
    standin_file = "exact.js"
    ORDER_TOKEN_TTL = 900.0  # "the access token lets the browser call Exact's APIs for 15 minutes"

    def account_options(self, **extra: Any) -> dict[str, Any]:
        return {"API_TOKEN": self.API_TOKEN, "BASE_URL": self.url, "WEBHOOK_HEADER": self.WEBHOOK_HEADER,
                "WEBHOOK_SECRET": self.WEBHOOK_SECRET, **extra}

    def describe(self) -> list[str]:
        options = self.account_options()
        return [
            f"Authorization: {self.API_TOKEN}   (or Basic base64('{self.API_TOKEN}:'))",
            f"partner routes: {self.url}/account/{self.ACCOUNT_ID}/...",
            f"webhook header: {self.WEBHOOK_HEADER}: {self.WEBHOOK_SECRET}",
            f"OPTIONS: {options!r}",
        ]

    def reset(self) -> None:
        super().reset()
        self.customers: dict[str, dict[str, Any]] = {}
        self.temporary: dict[str, dict[str, Any]] = {}
        self.methods: dict[str, dict[str, Any]] = {}  # permanent token -> method record
        self.payments: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.orders: dict[str, dict[str, Any]] = {}  # the checkout's orders (ExactJS access tokens)
        self._seq = 0

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    # -- protocol ------------------------------------------------------------------------
    def authenticate(self, request: FakeRequest) -> FakeResponse | None:
        header = request.header("authorization").strip()
        if header and hmac.compare_digest(header.encode(), self.API_TOKEN.encode()):
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                decoded = b""
            if hmac.compare_digest(decoded, f"{self.API_TOKEN}:".encode()):
                return None
        return self.error(401, "Missing or invalid authorization token")

    def error(self, status: int, message: str, code: str = "", issues: list | None = None) -> FakeResponse:
        if code in ("", "invalid_request", "not_found", "method_not_allowed", "simulated_fault"):
            code = _ERROR_CODES.get(status, "unhandled" if status >= 500 else "api-error")
        body: dict[str, Any] = {
            "code": code,
            "type": _ERROR_TYPES.get(status, "system-error" if status >= 500 else "api-error"),
            "message": message,
            "requestId": str(uuid.uuid4()),
        }
        if status == 400:
            body["pathIssues"] = issues or []
        return json_response(body, status)

    def handle(self, request: FakeRequest) -> FakeResponse:
        partner = _PARTNER_RE.match(request.path)
        if partner:  # an organization acting for a merchant: the same API under /account/{accountId}
            denied = self.authenticate(request)
            if denied is not None:
                return denied
            if partner["account"] != self.ACCOUNT_ID:
                return self.error(403, "Account not found")
            request = dataclasses.replace(request, path=partner["rest"])
        try:
            return super().handle(request)
        except _Invalid as exc:
            return self.error(400, "Client request body failed validation", issues=[exc.issue])
        except _NotFound as exc:
            return self.error(404, str(exc))

    def _body(self, request: FakeRequest) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise _Invalid("body", "Expected object")
        return body

    def _page(self, request: FakeRequest, records: list[dict[str, Any]]) -> FakeResponse:
        try:
            limit = int(request.query.get("$limit", 100))
            skip = int(request.query.get("$skip", 0))
        except ValueError:
            raise _Invalid("$limit", "Expected integer") from None
        if not 1 <= limit <= 100:
            raise _Invalid("$limit", "Must be between 1 and 100")
        if skip < 0:
            raise _Invalid("$skip", "Must be 0 or more")
        records = sorted(records, key=lambda r: r["_seq"])
        for key, direction in request.query.items():
            sort = _SORT_RE.match(key)
            if sort:
                if direction not in ("1", "-1"):
                    raise _Invalid(key, "Expected 1 or -1")
                records.sort(key=lambda r, f=sort["field"]: (str(r.get(f, "")), r["_seq"]),
                             reverse=direction == "-1")
        return json_response([self._view(r) for r in records[skip:skip + limit]])

    def _view(self, record: dict[str, Any]) -> dict[str, Any]:
        return self._method_view(record) if "_card" in record else _public(record)

    def record_event(self, name: str, **resources: str) -> dict[str, Any]:
        """Record an event as Exact would (status "success") and return it."""
        when = _now()
        event = {"id": _object_id(), "event": name, "status": "success", "accountId": self.ACCOUNT_ID,
                 "organizationId": self.ORGANIZATION_ID, "tokenType": "application", "userId": None,
                 "resources": resources, "startedAt": when, "finishedAt": when, "duration": 1}
        self.events.append(event)
        return event

    # -- tokenization (what Exact's browser library and POST /payment-method do) -----------
    def tokenize_card(self, number: str, exp_month: int, exp_year: int, cvc: str = "",
                      holder_name: str = "") -> str:
        number = re.sub(r"[\s-]", "", number)
        if not (number.isdigit() and 13 <= len(number) <= 19 and luhn_ok(number)):
            raise ValueError("Invalid Credit Card Number")
        exp_year = exp_year + 2000 if exp_year < 100 else exp_year
        if not 1 <= exp_month <= 12:
            raise ValueError("Invalid Expiry Date")
        today = date.today()
        if (exp_year, exp_month) < (today.year, today.month):
            raise ValueError("card is expired")
        token = str(uuid.uuid4())
        with self.lock:
            self.temporary[token] = {
                "created": time.monotonic(),
                "behaviour": TEST_CARDS.get(number, "ok"),
                "holder": holder_name,
                # Only what Exact keeps: never the number.
                "card": {"brand": _brand(number), "lastFour": number[-4:],
                         "checks": {"cvcCheck": "full-match" if cvc else "not-verified",
                                    "addressCheck": "not-verified"},
                         "expiry": {"month": exp_month, "year": exp_year}, "tokenType": "platform"},
                "bin": number[:6],
                "fingerprint": hashlib.sha256(number.encode()).hexdigest(),
            }
        return token

    # -- orders and the ExactJS stand-in -----------------------------------------------------------
    @route("POST", "/orders")
    def create_order(self, request: FakeRequest) -> FakeResponse:
        """``POST /account/{accountId}/orders`` ``{amount, reference: {referenceNo}}`` → ``{id, accessToken}``."""
        body = self._body(request)
        amount = body.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise _Invalid("amount", "Expected a non-negative integer amount in cents")
        reference = body.get("reference") if isinstance(body.get("reference"), dict) else {}
        reference_no = reference.get("referenceNo")
        if reference_no is not None and (not isinstance(reference_no, str) or len(reference_no) > 20):
            raise _Invalid("reference.referenceNo", "Expected a string of at most 20 characters")
        order_id = _object_id()
        token = "exact_order_" + uuid.uuid4().hex
        expires = time.time() + self.ORDER_TOKEN_TTL
        self.orders[order_id] = {"id": order_id, "amount": amount, "reference": reference, "token": token,
                                 "expires": expires, "status": "open"}
        return json_response({"id": order_id, "amount": amount, "reference": reference, "status": "open",
                              "accessToken": {"token": token, "expiresAt": _iso(expires)}}, 201)

    @route("POST", "/_fake/standin/exact/tokenize")
    def _standin_tokenize(self, request: FakeRequest) -> FakeResponse:
        """ExactJS's ``tokenize()`` (stand-in wire): the order's access token, never the API key."""
        def failed(status: int, *messages: str) -> FakeResponse:
            return standin_response({"messages": list(messages)}, status)

        try:
            body = json.loads(request.body.decode("utf-8") or "{}")
        except ValueError:
            return failed(400, "Invalid request")
        order = self.orders.get(str(body.get("orderId", ""))) if isinstance(body, dict) else None
        sent = request.header("Authorization").removeprefix("Bearer ").strip()
        if order is None or not hmac.compare_digest(sent.encode(), order["token"].encode()):
            return failed(401, "Invalid access token")
        if order["expires"] < time.time():
            return failed(401, "The access token has expired")
        month, _, year = str(body.get("expiry", "")).partition("/")
        try:
            token = self.tokenize_card(str(body.get("number", "")), int(month or 0), int(year or 0),
                                       str(body.get("cvc", "")), str(body.get("name", "")))
        except ValueError as exc:
            return failed(400, str(exc))
        card = self.temporary[token]["card"]
        return standin_response({"token": token, "card_brand": card["brand"], "last4": card["lastFour"],
                                 "expiry_month": card["expiry"]["month"], "expiry_year": card["expiry"]["year"]})

    @route("POST", "/payment-method")
    def create_payment_method(self, request: FakeRequest) -> FakeResponse:
        body = self._body(request)
        if body.get("type") != "card":
            raise _Invalid("type", "Only card payment methods are supported by this fake")
        card = body.get("card") if isinstance(body.get("card"), dict) else {}
        expiry = card.get("expiry") if isinstance(card.get("expiry"), dict) else {}
        billing = body.get("billingDetails") if isinstance(body.get("billingDetails"), dict) else {}
        number = _require_str(card, "number")
        _require_str(billing, "name")
        try:
            token = self.tokenize_card(number, int(expiry.get("month") or 0), int(expiry.get("year") or 0),
                                       str(card.get("cvc") or ""), billing["name"])
        except ValueError as exc:
            raise _Invalid("card", str(exc)) from None
        pending = self.temporary[token]
        return json_response({"type": "card", "token": token, "billingDetails": billing,
                              "card": pending["card"], "createdAt": _now(), "updatedAt": _now()}, 201)

    # -- customers ------------------------------------------------------------------------------
    def _customer_or_404(self, customer_id: str) -> dict[str, Any]:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise _NotFound("Customer not found")
        return customer

    @staticmethod
    def _customer_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if creating or "name" in body:
            fields["name"] = _require_str(body, "name")
        for key in ("email", "phone"):
            value = _optional(body, key, str, "string")
            if value is not None:
                if key == "email" and "@" not in value:
                    raise _Invalid("email", "Invalid email")
                fields[key] = value
        addresses = _optional(body, "addresses", list, "array")
        if addresses is not None:
            for index, address in enumerate(addresses):
                if not isinstance(address, dict):
                    raise _Invalid(f"addresses.{index}", "Expected object")
                _require_str(address, "label")
                country = address.get("country")
                if country is not None and not (isinstance(country, str) and len(country) == 3):
                    raise _Invalid(f"addresses.{index}.country", "Expected an ISO 3166-1 alpha-3 code")
            fields["addresses"] = addresses
        return fields

    @route("POST", "/customer")
    def create_customer(self, request: FakeRequest) -> FakeResponse:
        fields = self._customer_fields(self._body(request), creating=True)
        now = _now()
        customer = {"id": _object_id(), "token": str(uuid.uuid4()), "createdAt": now, "updatedAt": now,
                    "email": "", "phone": "", "addresses": [], **fields, "_seq": self._next()}
        self.customers[customer["id"]] = customer
        self.record_event("customers.create", customer=customer["id"])
        return json_response(_public(customer), 201)

    @route("GET", "/customer")
    def list_customers(self, request: FakeRequest) -> FakeResponse:
        return self._page(request, list(self.customers.values()))

    @route("GET", "/customer/{customer_id}")
    def get_customer(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        return json_response(_public(self._customer_or_404(customer_id)))

    @route("PUT", "/customer/{customer_id}")
    def update_customer(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        customer = self._customer_or_404(customer_id)
        customer.update(self._customer_fields(self._body(request), creating=False), updatedAt=_now())
        self.record_event("customers.update", customer=customer_id)
        return json_response(_public(customer))

    @route("DELETE", "/customer/{customer_id}")
    def delete_customer(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        self._customer_or_404(customer_id)
        del self.customers[customer_id]
        for token in [t for t, m in self.methods.items() if m["customerId"] == customer_id]:
            del self.methods[token]
        self.record_event("customers.delete", customer=customer_id)
        return FakeResponse(204)

    # -- payment methods linked to customers ---------------------------------------------------
    def _method_view(self, method: dict[str, Any]) -> dict[str, Any]:
        return {"type": "card", **_public(method), "card": json.loads(json.dumps(method["_card"]))}

    def _customer_methods(self, customer_id: str) -> list[dict[str, Any]]:
        return [m for m in self.methods.values() if m["customerId"] == customer_id]

    def _make_default(self, method: dict[str, Any]) -> None:
        for other in self._customer_methods(method["customerId"]):
            other["isDefault"] = other is method

    @route("POST", "/customer/{customer_id}/payment-method")
    def link_payment_method(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        customer = self._customer_or_404(customer_id)
        body = self._body(request)
        token = _require_str(body, "token")
        label = _optional(body, "label", str, "string")
        is_default = _optional(body, "isDefault", bool, "boolean")
        existing = self.methods.get(token)
        if existing is not None and existing["customerId"] == customer_id:  # linking again updates it
            existing.update({"updatedAt": _now()}, **({"label": label} if label is not None else {}))
            if is_default:
                self._make_default(existing)
            return json_response(self._method_view(existing))
        pending = self.temporary.pop(token, None)
        if pending is None or time.monotonic() - pending["created"] > self.TEMPORARY_TOKEN_TTL:
            raise _Invalid("token", "Payment method token is invalid, expired or already used")
        if pending["behaviour"] == "refuse":
            return self.error(422, "The card could not be verified", "payment-method-verification-error")
        now = _now()
        method = {"token": str(uuid.uuid4()), "customerId": customer_id, "label": label or "",
                  "isDefault": False, "createdAt": now, "updatedAt": now,
                  "billingDetails": {"name": pending["holder"] or customer.get("name", "")},
                  "_card": pending["card"], "_bin": pending["bin"], "_fingerprint": pending["fingerprint"],
                  "_behaviour": pending["behaviour"], "_seq": self._next()}
        first = not self._customer_methods(customer_id)
        self.methods[method["token"]] = method
        if is_default or (is_default is None and first):
            self._make_default(method)
        self.record_event("payment-methods.create", customer=customer_id, paymentMethod=method["token"])
        return json_response(self._method_view(method), 201)

    @route("GET", "/customer/{customer_id}/payment-method")
    def list_payment_methods(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        self._customer_or_404(customer_id)
        return self._page(request, self._customer_methods(customer_id))

    @route("GET", "/customer-token/{customer_token}/payment-method")
    def list_payment_methods_by_token(self, request: FakeRequest, customer_token: str) -> FakeResponse:
        for customer in self.customers.values():
            if hmac.compare_digest(customer["token"].encode(), customer_token.encode()):
                return self._page(request, self._customer_methods(customer["id"]))
        raise _NotFound("Customer not found")

    def _linked(self, customer_id: str, token: str) -> dict[str, Any]:
        self._customer_or_404(customer_id)
        if token == "default":
            method = next((m for m in self._customer_methods(customer_id) if m["isDefault"]), None)
        else:
            method = self.methods.get(token)
        if method is None or method["customerId"] != customer_id:
            raise _NotFound("Payment method not found")
        return method

    @route("GET", "/customer/{customer_id}/payment-method/{token}")
    def get_payment_method(self, request: FakeRequest, customer_id: str, token: str) -> FakeResponse:
        return json_response(self._method_view(self._linked(customer_id, token)))

    @route("DELETE", "/customer/{customer_id}/payment-method/{token}")
    def unlink_payment_method(self, request: FakeRequest, customer_id: str, token: str) -> FakeResponse:
        method = self._linked(customer_id, token)
        del self.methods[method["token"]]  # the default is not moved to another method
        self.record_event("payment-methods.delete", customer=customer_id, paymentMethod=method["token"])
        return FakeResponse(204)

    # -- what the card network does ----------------------------------------------------------
    def network_update(self, customer_id: str, token: str, exp_month: int, exp_year: int,
                       last4: str | None = None, closed: bool = False) -> dict[str, Any]:
        """Change (or close) a linked card as an account updater would; return the event Exact records.

        A closed card is unlinked (Exact has no "closed" state): the event is
        ``payment-methods.delete``; otherwise ``payment-methods.update``.
        """
        with self.lock:
            method = self.methods[token]
            if method["customerId"] != customer_id:
                raise KeyError("the payment method is not linked to this customer")
            if closed:
                del self.methods[token]
                return self.record_event("payment-methods.delete", customer=customer_id, paymentMethod=token)
            method["_card"]["expiry"] = {"month": exp_month, "year": exp_year}
            if last4:
                method["_card"]["lastFour"] = last4
            method["updatedAt"] = _now()
            return self.record_event("payment-methods.update", customer=customer_id, paymentMethod=token)

    def webhook_delivery(self, event: dict[str, Any],
                         secret: str | None = None) -> tuple[dict[str, str], bytes]:
        """``(headers, body)`` of the POST Exact makes for ``event`` to a webhook registered with the
        custom header ``WEBHOOK_HEADER: WEBHOOK_SECRET`` (Exact signs nothing)."""
        headers = {"Content-Type": "application/json", self.WEBHOOK_HEADER: secret or self.WEBHOOK_SECRET}
        return headers, json.dumps(event).encode()

    @route("GET", "/event")
    def list_events(self, request: FakeRequest) -> FakeResponse:
        return self._page(request, [{**e, "_seq": i} for i, e in enumerate(self.events)])

    # -- payments --------------------------------------------------------------------------------
    def _charge_source(self, token: str) -> dict[str, Any]:
        """The method a payment token charges: a linked method, a tokenized card, or a customer's default."""
        if token in self.methods:
            return {"card": self.methods[token]["_card"], "behaviour": self.methods[token]["_behaviour"],
                    "holder": self.methods[token]["billingDetails"]["name"]}
        if token in self.temporary:
            return self.temporary[token]
        customer = next((c for c in self.customers.values() if c["token"] == token), None)
        if customer is None:
            raise _Invalid("paymentMethod.token", "Payment method not found")
        default = next((m for m in self._customer_methods(customer["id"]) if m["isDefault"]), None)
        if default is None:
            raise _Invalid("paymentMethod.token", "Customer has no default payment method")
        return self._charge_source(default["token"])

    def _record(self, kind: str, amount: int, *, approved: bool = True, **fields: Any) -> dict[str, Any]:
        record = {
            "id": _object_id(), "accountId": self.ACCOUNT_ID, "type": kind, "status": "completed",
            "approved": approved, "captured": False, "voided": False, "refunded": False,
            "settled": False, "funded": False,
            "authorization": f"ET{secrets.randbelow(10**6):06d}" if approved else "",
            "amount": amount, "currencyCode": self.CURRENCY, "createdAt": _now(), "sentToBank": True,
            "bankResponse": {"code": "AA", "message": "Approved Transaction"} if approved else None,
            # Exact's documented approved payment: approved true, exactResponse.code "0000".
            "exactResponse": {"code": "0000", "message": "Transaction Normal"},
            "refundDetails": {"refunds": [], "remaining": amount},
            "voidDetails": {"voids": []},
            **fields,
        }
        record["paymentId"] = record["id"]
        self.payments[record["id"]] = record
        return record

    @route("POST", "/payments")
    def create_payment(self, request: FakeRequest) -> FakeResponse:
        body = self._body(request)
        amount = _require_int(body, "amount")
        capture = _optional(body, "capture", bool, "boolean")
        capture = True if capture is None else capture
        method = body.get("paymentMethod") if isinstance(body.get("paymentMethod"), dict) else {}
        token = method.get("token")
        if not isinstance(token, str) or not token:
            raise _Invalid("paymentMethod.token", "Required", "required")
        reference = _optional(body, "reference", dict, "object")
        if reference is not None:
            _require_str(reference, "referenceNo")
            # OpenAPI NewPayment: referenceNo and customerRef at most 20 characters, correlationId 60.
            for field, limit in REFERENCE_LIMITS.items():
                value = reference.get(field)
                if value is not None and (not isinstance(value, str) or len(value) > limit):
                    raise _Invalid(f"reference.{field}", f"String must contain at most {limit} character(s)",
                                   "too_big")
        source = self._charge_source(token)
        test_code = amount - TEST_AMOUNT_BASE if 0 <= amount - TEST_AMOUNT_BASE < 100 else None
        if test_code in GATEWAY_ERRORS:
            return json_response({"messages": [GATEWAY_ERRORS[test_code]]}, 400)
        card = source["card"]
        details = {"cardBrand": card["brand"], "cardholder": source.get("holder", ""),
                   "last4": card["lastFour"], "expiryMonth": card["expiry"]["month"],
                   "expiryYear": card["expiry"]["year"]}
        kind = "payment" if capture else "authorization"
        fields: dict[str, Any] = {"reference": reference, "paymentMethodDetails": details}
        if test_code in EXACT_FAILURES or source["behaviour"] == "fail":
            code = test_code if test_code in EXACT_FAILURES else 61
            exact = {"code": f"{code:02d}", "message": EXACT_FAILURES[code]}
            record = self._record(kind, amount, approved=False, status="failed", sentToBank=False,
                                  exactResponse=exact, **fields)
        elif source["behaviour"] == "decline" or self.faults.decline_all:
            record = self._record(kind, amount, approved=False, status="declined",
                                  bankResponse={"code": "ND", "message": "Declined"}, **fields)
        else:
            if not capture:
                fields.update(status="authorized", captureDetails={"captures": [], "remaining": amount})
            record = self._record(kind, amount, captured=capture, **fields)
        self.record_event("payments.create", payment=record["id"])
        return json_response(record, 201)

    @route("GET", "/payments")
    def list_payments(self, request: FakeRequest) -> FakeResponse:
        return self._page(request, [{**r, "_seq": i} for i, r in enumerate(self.payments.values())])

    @route("GET", "/payments/{payment_id}")
    def get_payment(self, request: FakeRequest, payment_id: str) -> FakeResponse:
        return json_response(self._payment(payment_id))

    def _payment(self, payment_id: str) -> dict[str, Any]:
        record = self.payments.get(payment_id)
        if record is None:
            raise _NotFound("Payment not found")
        return record

    def _referenced(self, request: FakeRequest, payment_id: str) -> tuple[dict[str, Any], int]:
        """The original payment and amount of a ``ReferencedPayment`` body (amount + authorization)."""
        original = self._payment(payment_id)
        body = self._body(request)
        amount = _require_int(body, "amount")
        authorization = _require_str(body, "authorization")
        if not (original["authorization"]
                and hmac.compare_digest(authorization.encode(), original["authorization"].encode())):
            raise _Invalid("authorization", "Does not match the original payment")
        return original, amount

    def _refused(self, action: str) -> FakeResponse:
        return self.error(422, f"Payment cannot be {action}")

    @route("POST", "/payments/{payment_id}/capture")
    def capture_payment(self, request: FakeRequest, payment_id: str) -> FakeResponse:
        original, amount = self._referenced(request, payment_id)
        if original["type"] != "authorization" or original["captured"] or original["voided"]:
            return self._refused("captured")
        record = self._record("capture", amount, captured=True,
                              paymentMethodDetails=original["paymentMethodDetails"])
        original.update(captured=True, status="completed",
                        captureDetails={"captures": [record["id"]], "remaining": 0})
        self.record_event("payments.capture", payment=record["id"])
        return json_response(record)

    @route("POST", "/payments/{payment_id}/refund")
    def refund_payment(self, request: FakeRequest, payment_id: str) -> FakeResponse:
        original, amount = self._referenced(request, payment_id)
        if original["type"] not in ("payment", "capture") or not original["captured"] or original["voided"]:
            return self._refused("refunded")
        details = original["refundDetails"]
        if amount > details["remaining"]:
            return self.error(422, "Refund amount exceeds the remaining amount")
        record = self._record("refund", amount, paymentMethodDetails=original["paymentMethodDetails"])
        details.update(refunds=[*details["refunds"], record["id"]], remaining=details["remaining"] - amount)
        original["refunded"] = True
        self.record_event("payments.refund", payment=record["id"])
        return json_response(record)

    @route("POST", "/payments/{payment_id}/void")
    def void_payment(self, request: FakeRequest, payment_id: str) -> FakeResponse:
        original, amount = self._referenced(request, payment_id)
        voidable = original["type"] == "payment" or (
            original["type"] == "authorization" and not original["captured"])
        if not voidable or original["voided"] or original["refunded"]:
            return self._refused("voided")
        record = self._record("void", amount, paymentMethodDetails=original["paymentMethodDetails"])
        original.update(voided=True, status="voided", voidDetails={"voids": [record["id"]]})
        self.record_event("payments.void", payment=record["id"])
        return json_response(record)


FAKE = ExactFake  # the fake of this module (used by VAULT_FAKE in the example shop)

exact_fake = fake_fixture(ExactFake)


def main(argv: list[str] | None = None) -> None:
    serve(ExactFake, argv)


if __name__ == "__main__":
    main()
