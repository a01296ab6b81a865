"""A fake ProcessOut API on loopback, for tests and the example shop.

What it plays (see docs/processors/processout.md):

* HTTP Basic with ``PROJECT_ID`` / ``PROJECT_SECRET`` (wrong or missing → 401 in ProcessOut's
  shape ``{"success": false, "error_type": "…", "message": "…"}``); every answer carries
  ``"success"``;
* customers (currency immutable once set), customer tokens (``source`` = a ``card_…`` from
  ``/_fake/tokens``, single use; ``verify=true``; ``set_default``), invoices with
  ``/authorize``, ``/capture``, ``/void`` (answering ``{"success": true, "transaction": {}}`` as
  documented), ``/transactions``, refunds on transactions,
  events (``GET /events/{id}``), paging (``limit``/``order``/``start_after``/``end_before``,
  ``has_more``) and ``expand=card``;
* objects and events carry ``project_id`` ``proj_X`` while the credential is ``test-proj_X``;
* ``Idempotency-Key`` on POSTs: the first answer under a key (per path) is replayed;
* test cards: 4242424242424242, 5555555555554444, 378282246310005 succeed; 4000000000000002
  is declined (and fails verification); 4000000000001216 verifies but its payments fail at
  the gateway; 4000000000000101 needs 3-D Secure (a customer action).

Test helpers: ``tokenize_card`` (processout.js), ``update_card`` (a card network update),
``complete_verification`` (the customer finishing 3-D Secure), ``fire`` and ``delivery``
(the unsigned POST ProcessOut sends: only the event id and type).

Run standalone: ``python -m vault_wallets.testing.fakes.processout --port 8101``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import string
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from vault_wallets.processors.base import WebhookRequest
from vault_wallets.processors.money import currency_exponent, format_major
from vault_wallets.testing.cards import AMEX, DISCOVER, MASTERCARD, VISA, card_brand, luhn_ok
from vault_wallets.testing.server import (
    FakeRequest,
    FakeResponse,
    FakeServer,
    fake_fixture,
    json_response,
    route,
    serve,
    standin_response,
)

#: Card behaviours by test number; any other valid number succeeds.
TEST_CARDS = {
    "4242424242424242": "success",
    "5555555555554444": "success",
    "378282246310005": "success",
    "4000000000000002": "decline",
    "4000000000001216": "gateway_error",
    "4000000000000101": "three_d_s",
}

_BASE_CODES = {  # the FakeServer base's own codes → ProcessOut error types
    "not_found": "resource.not-found",
    "invalid_request": "request.validation.error",
    "method_not_allowed": "request.method.not-allowed",
}
_ALPHABET = string.ascii_letters + string.digits
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


def _new_id(prefix: str) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(32))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy without the fake's private ``_`` fields (answers must not change later)."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}


_SCHEMES = {VISA: "visa", MASTERCARD: "mastercard", AMEX: "american express", DISCOVER: "discover"}


def _scheme(number: str) -> str:
    return _SCHEMES.get(card_brand(number), "unknown")


class _Refused(Exception):
    """A request the fake refuses: becomes ProcessOut's error shape."""

    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


class ProcessOutFake(FakeServer):
    """In-memory ProcessOut: customers, tokens, invoices, transactions, refunds, events."""

    name = "processout"
    title = "ProcessOut API"
    PROJECT_ID = "test-proj_vaultwalletsFake0000000000001"
    PROJECT_SECRET = "key_sandbox_vaultwalletsFakeSecret000001"
    API_VERSION = "1.4.0.0"
    MAX_LIMIT = 100

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._fingerprint_key = secrets.token_bytes(32)  # fingerprints are stable for this fake's lifetime
        super().__init__(host, port)

    processor_path = "vault_wallets.processors.processout.ProcessOutProcessor"
    standin_path = "/processout.js"  # the real library: https://js.processout.com/processout.js
    standin_file = "processout.js"

    def account_options(self, **extra: Any) -> dict[str, Any]:
        return {"PROJECT_ID": self.PROJECT_ID, "PROJECT_SECRET": self.PROJECT_SECRET, "BASE_URL": self.url, **extra}

    def describe(self) -> list[str]:
        return [
            f"OPTIONS: BASE_URL={self.url!r}, PROJECT_ID={self.PROJECT_ID!r}, "
            f"PROJECT_SECRET={self.PROJECT_SECRET!r}",
            f"ProcessOut.js stand-in: {self.url}/processout.js (JS_SDK_URL)",
        ]

    def reset(self) -> None:
        super().reset()
        self.customers: dict[str, dict] = {}
        self.cards: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}
        self.invoices: dict[str, dict] = {}
        self.transactions: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.events: dict[str, dict] = {}
        self.idempotent: dict[tuple[str, str], FakeResponse] = {}
        #: Per request: method, path, and the headers tests look at (Authorization kept as sent).
        self.seen: list[dict[str, str]] = []
        self._seq = itertools.count(1)

    # -- protocol --------------------------------------------------------------------------
    def error(self, status: int, message: str, code: str = "") -> FakeResponse:
        error_type = _BASE_CODES.get(code, code)
        if not error_type or error_type == "simulated_fault":
            error_type = "processout.internal-error" if status >= 500 else "request.validation.error"
        return json_response({"success": False, "error_type": error_type, "message": message}, status)

    def authenticate(self, request: FakeRequest) -> FakeResponse | None:
        header = request.header("Authorization")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return self.error(401, "You must authenticate with your project ID and project secret.",
                              "request.authentication.required")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return self.error(401, "The Authorization header is malformed.", "request.authentication.invalid")
        if not (hmac.compare_digest(user.encode(), self.PROJECT_ID.encode())
                and hmac.compare_digest(password.encode(), self.PROJECT_SECRET.encode())):
            return self.error(401, "The project ID or project secret is invalid.",
                              "request.authentication.invalid")
        return None

    _SEEN_HEADERS = ("authorization", "api-version", "content-type", "accept", "idempotency-key")

    def handle(self, request: FakeRequest) -> FakeResponse:
        with self.lock:
            self.seen.append({"method": request.method, "path": request.path,
                              **{h: request.header(h) for h in self._SEEN_HEADERS}})
        key = request.header("Idempotency-Key")
        if request.method != "POST" or not key or request.path.startswith("/_fake/"):
            return self._answer(request)
        denied = self.authenticate(request)
        if denied is not None:
            return denied
        with self.lock:
            cached = self.idempotent.get((key, request.path))
            if cached is not None:
                return cached
            response = self._answer(request)
            if response.status < 500:
                self.idempotent[(key, request.path)] = response
            return response

    def _answer(self, request: FakeRequest) -> FakeResponse:
        try:
            return super().handle(request)
        except _Refused as exc:
            return self.error(exc.status, exc.message, exc.error_type)

    @staticmethod
    def _ok(status: int = 200, **payload: Any) -> FakeResponse:
        return json_response({"success": True, **payload}, status)

    @staticmethod
    def _body(request: FakeRequest) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise _Refused(400, "request.validation.error", "The request body must be a JSON object.")
        return body

    @staticmethod
    def _expand(request: FakeRequest, body: dict[str, Any] | None = None) -> set[str]:
        values = (body or {}).get("expand") or request.query.get("expand") or []
        return {values} if isinstance(values, str) else {str(v) for v in values}

    def _get(self, table: dict[str, dict], object_id: str, label: str) -> dict:
        obj = table.get(object_id)
        if obj is None:
            raise _Refused(404, "resource.not-found", f"The {label} could not be found.")
        return obj

    @property
    def object_project_id(self) -> str:
        """The ``project_id`` objects and events carry: the credential without its ``test-`` prefix
        (``test-proj_X`` authenticates, objects say ``proj_X``; ../shared/PROCESSORS.md Corrections)."""
        return self.PROJECT_ID.removeprefix("test-")

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj.update(project_id=self.object_project_id, sandbox=True, created_at=_now(), _seq=next(self._seq))
        return obj

    def _page(self, request: FakeRequest, items: list[dict], key: str, view) -> FakeResponse:
        """ProcessOut paging: ``limit`` (10), ``order`` (desc), ``start_after`` / ``end_before``."""
        try:
            limit = int(request.query.get("limit") or 10)
        except ValueError:
            raise _Refused(400, "request.validation.error", "The limit must be a number.") from None
        limit = min(max(limit, 1), self.MAX_LIMIT)
        order = request.query.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise _Refused(400, "request.validation.error", "The order must be asc or desc.")
        ordered = sorted(items, key=lambda o: o["_seq"], reverse=order == "desc")
        ids = [o["id"] for o in ordered]
        after, before = request.query.get("start_after"), request.query.get("end_before")
        for cursor in (after, before):
            if cursor and cursor not in ids:
                raise _Refused(400, "request.validation.error", "The pagination cursor is unknown.")
        if before:
            window = ordered[:ids.index(before)]
            page, has_more = window[-limit:], len(window) > limit
        else:
            window = ordered[ids.index(after) + 1:] if after else ordered
            page, has_more = window[:limit], len(window) > limit
        return self._ok(**{key: [view(o) for o in page]}, has_more=has_more)

    # -- money helpers -------------------------------------------------------------------------
    @staticmethod
    def _amount(value: Any, currency: str, field: str = "amount") -> Decimal:
        try:
            amount = Decimal(value) if isinstance(value, str) else None
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite() or amount <= 0:
            raise _Refused(400, "request.validation.error", f"The {field} must be a positive decimal string.")
        if -amount.as_tuple().exponent > currency_exponent(currency):
            raise _Refused(400, "request.validation.error",
                           f"The {field} has too many decimals for {currency}.")
        return amount

    # -- the browser library and the card network ---------------------------------------------
    def tokenize_card(self, number: str, exp_month: int, exp_year: int, cvc: str = "",
                      holder_name: str = "") -> str:
        """processout.js ``tokenize``: a single-use ``card_…`` id; only display data is kept."""
        if not luhn_ok(number):
            raise ValueError("the card number is invalid")
        if exp_year < 100:
            exp_year += 2000
        if not 1 <= exp_month <= 12:
            raise ValueError("the expiry month is invalid")
        today = date.today()
        if (exp_year, exp_month) < (today.year, today.month):
            raise ValueError("the card has expired")
        if cvc and not (cvc.isdigit() and len(cvc) in (3, 4)):
            raise ValueError("the CVC is invalid")
        card = self._stamp({
            "id": _new_id("card"), "scheme": _scheme(number), "co_scheme": None, "type": "credit",
            "bank_name": "ProcessOut Sandbox Bank", "brand": "classic", "iin": number[:6],
            "last_4_digits": number[-4:], "exp_month": exp_month, "exp_year": exp_year,
            "cvc_check": "passed" if cvc else "unavailable", "avs_check": "unavailable", "name": holder_name,
            "fingerprint": hmac.new(self._fingerprint_key, number.encode(), hashlib.sha256).hexdigest()[:40],
            "metadata": {}, "expires_soon": False,
            "_outcome": TEST_CARDS.get(number, "success"), "_used": False,
        })
        with self.lock:
            self.cards[card["id"]] = card
        return card["id"]

    # -- ProcessOut.js stand-in (standins/processout.js): the calls the library makes -------------
    def _standin_project(self, request: FakeRequest) -> bool:
        """ProcessOut.js authenticates with the public project id only: Basic base64(projectId + ":")."""
        header = request.header("Authorization")
        try:
            decoded = base64.b64decode(header.removeprefix("Basic ").strip()).decode()
        except ValueError:
            return False
        return decoded == f"{self.PROJECT_ID}:"

    @staticmethod
    def _standin_error(status: int, error_type: str, message: str) -> FakeResponse:
        return standin_response({"success": False, "error_type": error_type, "message": message}, status)

    @route("POST", "/_fake/standin/processout/cards")
    def _standin_cards(self, request: FakeRequest) -> FakeResponse:
        """``POST /cards`` as ProcessOut.js's ``tokenize`` sends it: the card, project id auth."""
        if not self._standin_project(request):
            return self._standin_error(401, "request.authentication.invalid", "The project ID is invalid.")
        try:
            body = self._body(request)
            card_id = self.tokenize_card(str(body.get("number", "")).replace(" ", ""), int(body.get("exp_month") or 0),
                                         int(body.get("exp_year") or 0), str(body.get("cvc2", "")),
                                         str(body.get("name", "")))
        except (ValueError, _Refused) as exc:
            message = str(exc)
            code = ("card.invalid-number" if "number" in message else "card.invalid-date" if "expir" in message
                    else "card.invalid-cvc" if "CVC" in message else "card.invalid")
            return self._standin_error(400, code, message)
        return standin_response({"success": True, "card": _public(self.cards[card_id])})

    @route("PUT", "/_fake/standin/processout/customers/{customer_id}/tokens/{token_id}")
    def _standin_make_card_token(self, request: FakeRequest, customer_id: str, token_id: str) -> FakeResponse:
        """``makeCardToken``'s ``PUT customers/{id}/tokens/{id}`` with ``source``: completes a pending
        (``verify=true``) customer token with the card and verifies it."""
        if not self._standin_project(request):
            return self._standin_error(401, "request.authentication.invalid", "The project ID is invalid.")
        try:
            body = self._body(request)
            token = self._customer_token(customer_id, token_id)
            if token.get("card_id"):
                raise _Refused(400, "request.token.already-completed", "This customer token already has a source.")
            card = self._take_card(body.get("source"))
        except _Refused as exc:
            return self._standin_error(exc.status, exc.error_type, exc.message)
        token["card_id"] = card["id"]
        if card["_outcome"] == "decline":
            token.update(verification_status="failed", is_chargeable=False)
        else:
            token.update(verification_status="success", is_chargeable=True)
        customer = self.customers[customer_id]
        if (body.get("set_default") or not customer.get("default_token_id")) and token["is_chargeable"]:
            customer["default_token_id"] = token["id"]
        self._token_event("customer_token.verified" if token["is_chargeable"]
                          else "customer_token.verification_failed", token)
        return standin_response({"success": True, "token": self._token_view(token, True), "customer_action": None})

    def update_card(self, token_id: str, exp_month: int, exp_year: int, last4: str | None = None,
                    closed: bool = False) -> dict:
        """What a card network update does to a vaulted card; fires ``customer_token.updated``."""
        with self.lock:
            token = self._get(self.tokens, token_id, "token")
            card = self.cards[token["card_id"]]
            card.update(exp_month=exp_month, exp_year=exp_year)
            if last4:
                card["last_4_digits"] = last4
            if closed:
                token["is_chargeable"] = False
            return self._token_event("customer_token.updated", token)

    def complete_verification(self, token_id: str, success: bool = True) -> dict:
        """The customer finished (or failed) 3-D Secure on a pending ``verify=true`` token."""
        with self.lock:
            token = self._get(self.tokens, token_id, "token")
            token["verification_status"] = "success" if success else "failed"
            token["is_chargeable"] = success
            return self._token_event("customer_token.verified" if success
                                     else "customer_token.verification_failed", token)

    # -- events and deliveries ------------------------------------------------------------------
    def fire(self, name: str, data: dict[str, Any], project_id: str | None = None) -> dict:
        event = {"id": _new_id("ev"), "project_id": project_id or self.object_project_id, "name": name,
                 "data": copy.deepcopy(data), "sandbox": True, "fired_at": _now(), "_seq": next(self._seq)}
        with self.lock:
            self.events[event["id"]] = event
        return event

    def _token_event(self, name: str, token: dict) -> dict:
        return self.fire(name, {"token": self._token_view(token, expand=True)})

    def _transaction_event(self, name: str, transaction: dict) -> dict:
        return self.fire(name, {"transaction": _public(transaction)})

    @staticmethod
    def delivery(event: dict) -> WebhookRequest:
        """The unsigned POST ProcessOut sends to a webhook endpoint: only the event id and type."""
        body = json.dumps({"event_id": event["id"], "event_type": event["name"]}).encode()
        return WebhookRequest(headers={"content-type": "application/json"}, body=body)

    def token_delivery(self, token_id: str) -> WebhookRequest:
        """The delivery of the latest event about ``token_id`` (one is fired from its state if none)."""
        with self.lock:
            events = [e for e in self.events.values() if (e["data"].get("token") or {}).get("id") == token_id]
            event = max(events, key=lambda e: e["_seq"]) if events else self._token_event(
                "customer_token.updated", self._get(self.tokens, token_id, "token"))
        return self.delivery(event)

    @route("GET", "/events/{event_id}")
    def get_event(self, request: FakeRequest, event_id: str) -> FakeResponse:
        return self._ok(event=_public(self._get(self.events, event_id, "event")))

    @route("GET", "/events")
    def list_events(self, request: FakeRequest) -> FakeResponse:
        return self._page(request, list(self.events.values()), "events", _public)

    # -- customers -------------------------------------------------------------------------------
    _CUSTOMER_FIELDS = ("first_name", "last_name", "email", "company_name", "address1", "address2", "city",
                        "state", "zip", "country_code", "phone_number", "ip_address")

    def _apply_customer(self, customer: dict, body: dict[str, Any]) -> None:
        for field in self._CUSTOMER_FIELDS:
            if field in body:
                if body[field] is not None and not isinstance(body[field], str):
                    raise _Refused(400, "request.validation.error", f"The {field} must be a string.")
                customer[field] = body[field] or ""
        if "metadata" in body:
            customer["metadata"] = self._metadata(body["metadata"])
        currency = body.get("currency")
        if currency:
            if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
                raise _Refused(400, "request.validation.error", "The currency must be an ISO 4217 code.")
            if customer.get("currency") and customer["currency"] != currency:
                raise _Refused(400, "request.validation.error",
                               "The customer currency cannot be changed once it is set.")
            customer["currency"] = currency

    @staticmethod
    def _metadata(value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in value.items()):
            raise _Refused(400, "request.validation.error", "The metadata must map strings to strings.")
        return dict(value)

    @route("POST", "/customers")
    def create_customer(self, request: FakeRequest) -> FakeResponse:
        customer = {"id": _new_id("cust"), "default_token_id": None, "currency": None, "balance": "0",
                    "metadata": {}, **{f: "" for f in self._CUSTOMER_FIELDS}}
        self._apply_customer(customer, self._body(request))
        self.customers[customer["id"]] = self._stamp(customer)
        return self._ok(customer=_public(customer))

    @route("GET", "/customers")
    def list_customers(self, request: FakeRequest) -> FakeResponse:
        return self._page(request, list(self.customers.values()), "customers", _public)

    @route("GET", "/customers/{customer_id}")
    def get_customer(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        return self._ok(customer=_public(self._get(self.customers, customer_id, "customer")))

    @route("PUT", "/customers/{customer_id}")
    def update_customer(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        customer = self._get(self.customers, customer_id, "customer")
        staged = copy.deepcopy(customer)
        self._apply_customer(staged, self._body(request))
        customer.update(staged)
        return self._ok(customer=_public(customer))

    @route("DELETE", "/customers/{customer_id}")
    def delete_customer(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        self._get(self.customers, customer_id, "customer")
        del self.customers[customer_id]
        for token_id in [t for t, token in self.tokens.items() if token["customer_id"] == customer_id]:
            del self.tokens[token_id]
        return self._ok()

    # -- customer tokens ---------------------------------------------------------------------------
    def _token_view(self, token: dict, expand: bool = False) -> dict:
        view = _public(token)
        customer = self.customers.get(token["customer_id"]) or {}
        view["is_default"] = customer.get("default_token_id") == token["id"]
        card = self.cards.get(token.get("card_id") or "")
        view["summary"] = f"**** **** **** {card['last_4_digits']}" if card else ""
        if expand and card:
            view["card"] = _public(card)
        return view

    @route("POST", "/customers/{customer_id}/tokens")
    def create_token(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        customer = self._get(self.customers, customer_id, "customer")
        body = self._body(request)
        source, verify = body.get("source"), bool(body.get("verify"))
        if not source and not verify:
            raise _Refused(400, "request.validation.error", "A source is required unless verify is true.")
        card = self._take_card(source) if source else None
        token = {"id": _new_id("tok"), "customer_id": customer_id, "card_id": card["id"] if card else None,
                 "type": "card", "metadata": self._metadata(body.get("metadata")),
                 "is_subscription_only": False, "description": str(body.get("description") or ""),
                 "is_chargeable": True, "verification_status": "not-requested"}
        customer_action = None
        if verify:
            outcome = card["_outcome"] if card else "three_d_s"
            if outcome == "decline":
                token.update(verification_status="failed", is_chargeable=False)
            elif outcome == "three_d_s":
                token.update(verification_status="pending", is_chargeable=False)
                customer_action = {"type": "url", "value": f"{self.url}/_fake/three-d-s/{token['id']}"}
            else:
                token["verification_status"] = "success"
        self.tokens[token["id"]] = self._stamp(token)
        if body.get("set_default") and token["is_chargeable"]:
            customer["default_token_id"] = token["id"]
        if token["verification_status"] in ("success", "failed"):
            self._token_event("customer_token.verified" if token["is_chargeable"]
                              else "customer_token.verification_failed", token)
        payload = {"token": self._token_view(token, "card" in self._expand(request, body))}
        if customer_action:
            payload["customer_action"] = customer_action
        return self._ok(**payload)

    def _take_card(self, source: Any) -> dict:
        card = self.cards.get(source) if isinstance(source, str) else None
        if card is None or card["_used"]:
            raise _Refused(400, "request.source.invalid",
                           "The source is invalid, expired or was already used.")
        card["_used"] = True
        return card

    def _customer_token(self, customer_id: str, token_id: str) -> dict:
        self._get(self.customers, customer_id, "customer")
        token = self._get(self.tokens, token_id, "token")
        if token["customer_id"] != customer_id:
            raise _Refused(404, "resource.not-found", "The token could not be found.")
        return token

    @route("GET", "/customers/{customer_id}/tokens")
    def list_tokens(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        self._get(self.customers, customer_id, "customer")
        expand = "card" in self._expand(request)
        tokens = [t for t in self.tokens.values() if t["customer_id"] == customer_id]
        return self._page(request, tokens, "tokens", lambda t: self._token_view(t, expand))

    @route("GET", "/customers/{customer_id}/tokens/{token_id}")
    def get_token(self, request: FakeRequest, customer_id: str, token_id: str) -> FakeResponse:
        token = self._customer_token(customer_id, token_id)
        return self._ok(token=self._token_view(token, "card" in self._expand(request)))

    @route("PUT", "/customers/{customer_id}/tokens/{token_id}")
    def update_token(self, request: FakeRequest, customer_id: str, token_id: str) -> FakeResponse:
        token = self._customer_token(customer_id, token_id)
        body = self._body(request)
        if "metadata" in body:
            token["metadata"] = self._metadata(body["metadata"])
        if body.get("set_default"):
            self.customers[customer_id]["default_token_id"] = token_id
        return self._ok()

    @route("DELETE", "/customers/{customer_id}/tokens/{token_id}")
    def delete_token(self, request: FakeRequest, customer_id: str, token_id: str) -> FakeResponse:
        self._customer_token(customer_id, token_id)
        del self.tokens[token_id]
        customer = self.customers[customer_id]
        if customer["default_token_id"] == token_id:
            customer["default_token_id"] = None
        return self._ok()

    @route("GET", "/cards/{card_id}")
    def get_card(self, request: FakeRequest, card_id: str) -> FakeResponse:
        return self._ok(card=_public(self._get(self.cards, card_id, "card")))

    # -- invoices and transactions ---------------------------------------------------------------
    @route("POST", "/invoices")
    def create_invoice(self, request: FakeRequest) -> FakeResponse:
        body = self._body(request)
        name, currency = body.get("name"), body.get("currency")
        if not isinstance(name, str) or not name:
            raise _Refused(400, "request.validation.error", "The invoice name is required.")
        if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
            raise _Refused(400, "request.validation.error", "The currency must be an ISO 4217 code.")
        amount = self._amount(body.get("amount"), currency)
        customer_id = body.get("customer_id") or None
        if customer_id:
            self._get(self.customers, customer_id, "customer")
        invoice = self._stamp({
            "id": _new_id("iv"), "transaction_id": None, "customer_id": customer_id, "name": name,
            "order_id": str(body.get("order_id") or ""), "amount": format_major(amount, currency),
            "currency": currency, "metadata": self._metadata(body.get("metadata")),
            "merchant_initiator_type": body.get("merchant_initiator_type"),
        })
        self.invoices[invoice["id"]] = invoice
        return self._ok(invoice=_public(invoice))

    @route("GET", "/invoices/{invoice_id}")
    def get_invoice(self, request: FakeRequest, invoice_id: str) -> FakeResponse:
        return self._ok(invoice=_public(self._get(self.invoices, invoice_id, "invoice")))

    @route("GET", "/invoices/{invoice_id}/transactions")
    def get_invoice_transaction(self, request: FakeRequest, invoice_id: str) -> FakeResponse:
        invoice = self._get(self.invoices, invoice_id, "invoice")
        return self._ok(transaction=_public(self._get(self.transactions, invoice["transaction_id"] or "",
                                                      "transaction")))

    @route("POST", "/invoices/{invoice_id}/authorize")
    def authorize_invoice(self, request: FakeRequest, invoice_id: str) -> FakeResponse:
        return self._pay(request, invoice_id, capture=False)

    @route("POST", "/invoices/{invoice_id}/capture")
    def capture_invoice(self, request: FakeRequest, invoice_id: str) -> FakeResponse:
        return self._pay(request, invoice_id, capture=True)

    def _pay(self, request: FakeRequest, invoice_id: str, capture: bool) -> FakeResponse:
        invoice = self._get(self.invoices, invoice_id, "invoice")
        body = self._body(request)
        previous = self.transactions.get(invoice["transaction_id"] or "")
        if previous is not None and previous["status"] not in ("failed", "pending"):
            if capture and previous["status"] == "authorized":
                return self._capture_authorization(previous, body)
            raise _Refused(400, "request.invoice.already-processed", "The invoice was already processed.")
        token, card = self._resolve_source(invoice, body.get("source"))
        transaction = self._stamp({
            "id": _new_id("tr"), "invoice_id": invoice_id, "customer_id": invoice["customer_id"],
            "token_id": token["id"] if token else None, "card_id": card["id"], "name": invoice["name"],
            "amount": invoice["amount"], "currency": invoice["currency"], "authorized_amount": "0",
            "captured_amount": "0", "refunded_amount": "0", "available_amount": "0", "status": "waiting",
            "authorized": False, "captured": False, "voided": False, "refunded": False, "chargedback": False,
            "error_code": None, "gateway_name": "sandbox", "three_d_s_status": None,
            "metadata": copy.deepcopy(invoice["metadata"]),
        })
        self.transactions[transaction["id"]] = transaction
        invoice["transaction_id"] = transaction["id"]
        refused = self.faults.decline_all or (token is not None and not token["is_chargeable"])
        outcome = "decline" if refused else card["_outcome"]
        if outcome == "three_d_s" and token and token["verification_status"] == "success":
            outcome = "success"  # authenticated when the token was verified
        if outcome in ("decline", "gateway_error"):
            code = "card.declined" if outcome == "decline" else "gateway.internal-error"
            transaction.update(status="failed", error_code=code)
            self._transaction_event("transaction.failed", transaction)
            message = ("The card was declined by the issuing bank." if outcome == "decline"
                       else "The payment gateway failed to process the payment.")
            raise _Refused(402, code, message)
        if outcome == "three_d_s":
            transaction.update(status="pending", three_d_s_status="pending")
            action = {"type": "url", "value": f"{self.url}/_fake/three-d-s/{transaction['id']}"}
            return self._ok(transaction=_public(transaction), customer_action=action)
        currency = invoice["currency"]
        transaction.update(status="authorized", authorized=True, authorized_amount=invoice["amount"])
        customer = self.customers.get(invoice["customer_id"] or "")
        if customer is not None and not customer["currency"]:
            customer["currency"] = currency  # set by the first payment
        self._transaction_event("transaction.authorized", transaction)
        if capture:
            return self._capture_authorization(transaction, body)
        return self._ok(transaction=_public(transaction))

    def _resolve_source(self, invoice: dict, source: Any) -> tuple[dict | None, dict]:
        """``tok_…`` (the invoice customer's token), ``cust_…`` (its default token) or a ``card_…``."""
        if not isinstance(source, str) or not source:
            raise _Refused(400, "request.validation.error", "A source is required.")
        if source.startswith("card_"):
            return None, self._take_card(source)
        if source.startswith("cust_"):
            customer = self._get(self.customers, source, "customer")
            if not customer["default_token_id"]:
                raise _Refused(400, "request.validation.error", "The customer has no default token.")
            source = customer["default_token_id"]
        token = self.tokens.get(source)
        if token is None or (invoice["customer_id"] and token["customer_id"] != invoice["customer_id"]):
            raise _Refused(400, "request.source.invalid", "The source is invalid for this invoice.")
        if token["card_id"] is None:
            raise _Refused(400, "request.source.invalid", "The token has no payment source attached.")
        return token, self.cards[token["card_id"]]

    def _capture_authorization(self, transaction: dict, body: dict) -> FakeResponse:
        currency = transaction["currency"]
        authorized = Decimal(transaction["authorized_amount"])
        amount = authorized
        if body.get("capture_amount") is not None:
            amount = self._amount(body["capture_amount"], currency, "capture_amount")
            if amount > authorized:
                raise _Refused(400, "request.validation.error",
                               "The capture amount exceeds the authorized amount.")
        transaction.update(status="completed", captured=True, captured_amount=format_major(amount, currency),
                           available_amount=format_major(amount, currency))
        self._transaction_event("transaction.captured", transaction)
        return self._ok(transaction=_public(transaction))

    @route("POST", "/invoices/{invoice_id}/void")
    def void_invoice(self, request: FakeRequest, invoice_id: str) -> FakeResponse:
        invoice = self._get(self.invoices, invoice_id, "invoice")
        transaction = self._get(self.transactions, invoice["transaction_id"] or "", "transaction")
        if transaction["status"] != "authorized":
            raise _Refused(400, "request.transaction.not-voidable",
                           "Only an authorized transaction can be voided.")
        transaction.update(status="voided", voided=True, available_amount="0")
        self._transaction_event("transaction.voided", transaction)
        # ProcessOut's API reference documents exactly this answer (docs.processout.com/reference/
        # void-an-invoice); the transaction's new state is read with GET /invoices/{id}/transactions.
        return self._ok(transaction={})

    @route("GET", "/transactions/{transaction_id}")
    def get_transaction(self, request: FakeRequest, transaction_id: str) -> FakeResponse:
        return self._ok(transaction=_public(self._get(self.transactions, transaction_id, "transaction")))

    @route("GET", "/transactions/{transaction_id}/refunds")
    def list_refunds(self, request: FakeRequest, transaction_id: str) -> FakeResponse:
        self._get(self.transactions, transaction_id, "transaction")
        refunds = [r for r in self.refunds.values() if r["transaction_id"] == transaction_id]
        return self._page(request, refunds, "refunds", _public)

    @route("POST", "/transactions/{transaction_id}/refunds")
    def create_refund(self, request: FakeRequest, transaction_id: str) -> FakeResponse:
        transaction = self._get(self.transactions, transaction_id, "transaction")
        body = self._body(request)
        currency = transaction["currency"]
        amount = self._amount(body.get("amount"), currency)
        available = Decimal(transaction["available_amount"])
        if not transaction["captured"] or amount > available:
            raise _Refused(400, "refund.amount-too-high",
                           "The refund amount exceeds the captured amount available.")
        refunded = Decimal(transaction["refunded_amount"]) + amount
        transaction.update(refunded=True, refunded_amount=format_major(refunded, currency),
                           available_amount=format_major(available - amount, currency))
        if available == amount:
            transaction["status"] = "refunded"
        refund = self._stamp({"id": _new_id("ref"), "transaction_id": transaction_id,
                              "amount": format_major(amount, currency), "reason": body.get("reason"),
                              "information": body.get("information"), "has_failed": False,
                              "metadata": self._metadata(body.get("metadata"))})
        self.refunds[refund["id"]] = refund
        self._transaction_event("transaction.refunded", transaction)
        return self._ok(refund=_public(refund))


FAKE = ProcessOutFake  # the fake of this module (used by VAULT_FAKE in the example shop)

processout_fake = fake_fixture(ProcessOutFake)


def main(argv: list[str] | None = None) -> None:
    serve(ProcessOutFake, argv)


if __name__ == "__main__":
    main()
