"""A PaySimple API v4 stand-in on loopback, for tests and for running the example shop offline.

It speaks the documented wire format: both ``Authorization`` schemes (``basic user:key`` and
``PSSERVER accessid=…; timestamp=…; signature=…`` within 5 minutes), the ``{Meta, Response}``
envelope with ``Meta.Errors`` and ``PagingDetails``, a bodiless 401, the customer, account,
payment-token, customer-token, payment, void and reverse routes, and the sandbox-only
``PUT /v4/MarkPaymentStatus``.  State is in memory.

PaySimpleJS's stand-in: ``GET /paysimplejs/v1/scripts/client.js`` (the real library's path)
serves ``standins/paysimple.js`` — ``window.paysimpleJs(config)`` with ``send.setMode``,
``send.retrieveAccount``, ``on`` and the ``accountRetrieved`` / ``formValidityChanged`` /
``httpError`` events — which posts the card to ``POST /_fake/standin/paysimplejs/accounts``
with the checkout or customer token; the account is created for that token's customer (a new
customer under a checkout token), as PaySimpleJS does.  ``retrieve_account`` (and
``tokenize_card(…, customer_id=…)``) does the same from Python.  ``POST /v4/paymenttoken`` takes
the official SDK's ``{CustomerAccountId, CustomerId, Cvv}``.  Test cards: see ``TEST_CARDS``.  Run it standalone with
``python -m vault_wallets.testing.fakes.paysimple --port 8101``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from typing import Any

from vault_wallets.processors.paysimple import (
    format_timestamp,
    parse_timestamp,
    psserver_signature,
    webhook_signature,
)
from vault_wallets.sandbox.cards import aba_routing_ok
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

#: number → (Issuer, behaviour of payments): "ok", "decline" (IsDecline) or "error" (processor failure).
TEST_CARDS = {
    "4111111111111111": ("Visa", "ok"),
    "5454545454545454": ("Master", "ok"),
    "371449635398456": ("Amex", "ok"),
    "6011000995504101": ("Discover", "ok"),
    "4242424242424242": ("Visa", "ok"),
    "5555555555554444": ("Master", "ok"),
    "4000000000000002": ("Visa", "decline"),
    "4000000000001216": ("Visa", "error"),
}
_FAILURES = {
    "decline": {"Code": "4005", "Description": "Do Not Honor",
                "MerchantActionText": "Try a different payment method", "IsDecline": True},
    "error": {"Code": "4006", "Description": "General Error",
              "MerchantActionText": "Try again, if the problem persists contact customer service",
              "IsDecline": False},
}
_ERROR_CODES = {400: "InvalidInput", 403: "InvalidPermissions", 404: "NotFound", 405: "MethodNotAllowed"}
_PSSERVER = re.compile(r"PSSERVER\s+accessid=([^;]*);\s*timestamp=([^;]*);\s*signature=(\S*)\s*",
                       re.IGNORECASE)
_VOIDABLE = {"Authorized", "Pending", "Posted"}


class _Invalid(Exception):
    """A request error in PaySimple's shape: ``errors`` is ``[(field, message), …]``."""

    def __init__(self, status: int, *errors: tuple[str | None, str]):
        self.status = status
        self.errors = errors
        super().__init__(errors[0][1] if errors else "")


_ISSUERS = {VISA: "Visa", MASTERCARD: "Master", AMEX: "Amex", DISCOVER: "Discover"}


def _issuer(number: str) -> str:
    issuer = _ISSUERS.get(card_brand(number))
    if issuer is None:
        raise ValueError("PaySimple accepts Visa, MasterCard, American Express and Discover cards only")
    return issuer


def _money(value: Decimal) -> float:
    return float(value)


class PaySimpleFake(FakeServer):
    """PaySimple API v4 in memory.  Credentials below are accepted; anything else is a 401."""

    name = "paysimple"
    title = "PaySimple API v4"
    API_USERNAME = "APIUser1225"
    API_KEY = "fake-paysimple-api-key-8b1f0c6e2d7a4e59b3c1"
    WEBHOOK_SECRET = "fake-paysimple-webhook-secret-5d2e"
    MERCHANT_ID = 1225
    CLOCK_SKEW = timedelta(minutes=5)
    PAYMENT_TOKEN_TTL = timedelta(minutes=15)
    CUSTOMER_TOKEN_TTL = timedelta(minutes=15)
    CHECKOUT_TOKEN_TTL = timedelta(minutes=5)
    VOID_WINDOW = timedelta(hours=8)  # until the day's batch closes; the real cut-off varies

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        # Ids count up for the fake's lifetime, as PaySimple's do: a reset does not reuse them.
        self._customer_ids = itertools.count(8053900)
        self._account_ids = itertools.count(7313702)
        self._payment_ids = itertools.count(2500001)
        super().__init__(host, port)

    processor_path = "vault_wallets.processors.paysimple.PaySimpleProcessor"
    standin_path = "/paysimplejs/v1/scripts/client.js"
    standin_file = "paysimple.js"

    def account_options(self, **extra: Any) -> dict[str, Any]:
        return {"API_USERNAME": self.API_USERNAME, "API_KEY": self.API_KEY, "BASE_URL": self.url,
                "WEBHOOK_SECRET": self.WEBHOOK_SECRET, **extra}

    def describe(self) -> list[str]:
        return [
            f"API_USERNAME   = {self.API_USERNAME}",
            f"API_KEY        = {self.API_KEY}",
            f"WEBHOOK_SECRET = {self.WEBHOOK_SECRET}",
            "(basic and PSSERVER authorization both accepted)",
        ]

    def reset(self) -> None:
        super().reset()
        self.customers: dict[int, dict[str, Any]] = {}
        self.accounts: dict[int, dict[str, Any]] = {}
        self.payments: dict[int, dict[str, Any]] = {}
        self.payment_tokens: dict[str, dict[str, Any]] = {}
        self.requests: list[FakeRequest] = []
        self._slow: dict[tuple[str, str], float] = {}
        self._jwt_key = secrets.token_bytes(32)

    # -- wire format ---------------------------------------------------------------------
    def envelope(self, response: Any, status: int = 200, paging: dict | None = None) -> FakeResponse:
        meta = {"Errors": None, "HttpStatus": HTTPStatus(status).phrase.replace(" ", ""),
                "HttpStatusCode": status, "PagingDetails": paging}
        return json_response({"Meta": meta, "Response": response}, status)

    def error(self, status: int, message: str, code: str = "") -> FakeResponse:
        return self._errors(status, (None, message))

    def _errors(self, status: int, *errors: tuple[str | None, str]) -> FakeResponse:
        if status == 401:  # "A JSON response will not be returned, only the HTTP header"
            return FakeResponse(401, None)
        meta = {
            "Errors": {
                "ErrorCode": _ERROR_CODES.get(status, "UnexpectedError"),
                "ErrorMessages": [{"Field": field, "Message": message} for field, message in errors],
                "TraceCode": secrets.token_hex(6).upper() if status >= 500 else None,
            },
            "HttpStatus": HTTPStatus(status).phrase.replace(" ", ""),
            "HttpStatusCode": status,
            "PagingDetails": None,
        }
        return json_response({"Meta": meta, "Response": None}, status)

    def authenticate(self, request: FakeRequest) -> FakeResponse | None:
        header = request.header("Authorization").strip()
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "basic":
            user, _, key = credentials.strip().partition(":")
            ok = user == self.API_USERNAME and hmac.compare_digest(key, self.API_KEY)
        else:
            ok = self._psserver_ok(header)
        return None if ok else self._errors(401)

    def _psserver_ok(self, header: str) -> bool:
        match = _PSSERVER.fullmatch(header)
        if not match or match.group(1) != self.API_USERNAME:
            return False
        timestamp, signature = match.group(2).strip(), match.group(3).strip()
        try:
            moment = parse_timestamp(timestamp)
        except ValueError:
            return False
        if abs(datetime.now(timezone.utc) - moment) > self.CLOCK_SKEW:
            return False
        return hmac.compare_digest(psserver_signature(self.API_KEY, timestamp), signature)

    def handle(self, request: FakeRequest) -> FakeResponse:
        with self.lock:
            self.requests.append(request)
        try:
            response = super().handle(request)
        except _Invalid as exc:
            response = self._errors(exc.status, *exc.errors)
        delay = self._slow.pop((request.method, request.path), 0.0)
        if delay:
            time.sleep(delay)  # the work is done; only the answer is late (a lost response)
        return response

    def slow_response(self, method: str, path: str, seconds: float) -> None:
        """Answer the next ``method path`` request ``seconds`` late, after doing its work."""
        with self.lock:
            self._slow[(method.upper(), path)] = seconds

    @staticmethod
    def _body(request: FakeRequest) -> dict[str, Any]:
        try:
            body = json.loads(request.body.decode("utf-8") or "{}", parse_float=Decimal)
        except ValueError:
            raise _Invalid(400, (None, "The request body is not valid JSON.")) from None
        if not isinstance(body, dict):
            raise _Invalid(400, (None, "The request body must be a JSON object."))
        return body

    @staticmethod
    def _now() -> datetime:
        return datetime.now(timezone.utc)

    # -- customers ---------------------------------------------------------------------------
    @route("POST", "/v4/customer")
    def create_customer(self, request: FakeRequest) -> FakeResponse:
        body = self._body(request)
        customer = self._customer_fields(body)
        customer["Id"] = next(self._customer_ids)
        customer["CreatedOn"] = customer["LastModified"] = format_timestamp(self._now())
        self.customers[customer["Id"]] = customer
        return self.envelope(customer, 201)

    @route("PUT", "/v4/customer")
    def update_customer(self, request: FakeRequest) -> FakeResponse:
        body = self._body(request)
        current = self._customer(body.get("Id"))
        updated = self._customer_fields(body)
        current.update(updated, LastModified=format_timestamp(self._now()))
        return self.envelope(current)

    def _customer_fields(self, body: dict[str, Any]) -> dict[str, Any]:
        errors = []
        for field in ("FirstName", "LastName"):
            value = body.get(field)
            if not isinstance(value, str) or not value.strip():
                errors.append((field, f"{field} is required."))
            elif len(value) > 100:
                errors.append((field, f"{field} cannot exceed 100 characters."))
        limits = {"CustomerAccount": 28, "Company": 50, "Email": 100, "AltEmail": 100, "Website": 100,
                  "Notes": 2048, "MiddleName": 100}
        for field, limit in limits.items():
            if body.get(field) is not None and len(str(body[field])) > limit:
                errors.append((field, f"{field} cannot exceed {limit} characters."))
        for field in ("Email", "AltEmail"):
            if body.get(field) and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", str(body[field])):
                errors.append((field, f"{field} must be a valid email address."))
        for field in ("Phone", "AltPhone", "MobilePhone", "Fax"):
            if body.get(field) and not re.fullmatch(r"\d{1,10}", str(body[field])):
                errors.append((field, f"{field} must be numeric, 10 characters max."))
        same = body.get("ShippingSameAsBilling", True)
        for field in ("BillingAddress",) + (() if same else ("ShippingAddress",)):
            address = body.get(field)
            if address is None:
                continue
            if not isinstance(address, dict):
                errors.append((field, f"{field} must be an object."))
                continue
            for part in ("StreetAddress1", "City", "ZipCode"):
                if not address.get(part):
                    errors.append((f"{field}.{part}", f"{part} is required."))
            if address.get("ZipCode") and not 5 <= len(str(address["ZipCode"])) <= 10:
                errors.append((f"{field}.ZipCode", "ZipCode must be 5 to 10 characters."))
        if errors:
            raise _Invalid(400, *errors)
        keys = ("CustomerAccount", "FirstName", "MiddleName", "LastName", "Company", "BillingAddress",
                "ShippingAddress", "Phone", "AltPhone", "MobilePhone", "Fax", "Email", "AltEmail", "Website",
                "Notes")
        fields = {key: body.get(key) for key in keys}
        fields["ShippingSameAsBilling"] = bool(same)
        return fields

    @route("GET", "/v4/customer")
    def list_customers(self, request: FakeRequest) -> FakeResponse:
        return self._page(request, list(self.customers.values()))

    def _page(self, request: FakeRequest, items: list[Any]) -> FakeResponse:
        try:
            page = max(1, int(request.query.get("page") or 1))
            size = max(1, min(1000, int(request.query.get("pagesize") or 200)))
        except ValueError:
            raise _Invalid(400, ("page", "page and pagesize must be numbers.")) from None
        chunk = items[(page - 1) * size: page * size]
        return self.envelope(chunk, paging={"TotalItems": len(items), "Page": page, "ItemsPerPage": size})

    @route("GET", "/v4/customer/{customer_id}")
    def get_customer(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        return self.envelope(self._customer(customer_id))

    @route("DELETE", "/v4/customer/{customer_id}")
    def delete_customer(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        customer = self._customer(customer_id)
        del self.customers[customer["Id"]]
        for account_id in [a["Id"] for a in self.accounts.values() if a["CustomerId"] == customer["Id"]]:
            del self.accounts[account_id]
        return FakeResponse(204, None)

    def _customer(self, customer_id: Any) -> dict[str, Any]:
        customer = self.customers.get(_as_int(customer_id))
        if customer is None:
            raise _Invalid(404, ("CustomerId", "Customer not found."))
        return customer

    @route("GET", "/v4/customer/{customer_id}/token")
    def customer_token(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        customer = self._customer(customer_id)
        claims = {"sub": str(customer["Id"]), "mid": self.MERCHANT_ID, "scope": "customer",
                  "exp": int((self._now() + self.CUSTOMER_TOKEN_TTL).timestamp())}
        return self.envelope({"JwtToken": self._jwt(claims)})

    @route("POST", "/v4/checkouttoken")
    def checkout_token(self, request: FakeRequest) -> FakeResponse:
        expires = self._now() + self.CHECKOUT_TOKEN_TTL
        claims = {"mid": self.MERCHANT_ID, "scope": "checkout", "exp": int(expires.timestamp())}
        return self.envelope({"JwtToken": self._jwt(claims), "Expiration": format_timestamp(expires),
                              "IsValid": True}, 201)

    def _jwt(self, claims: dict[str, Any]) -> str:
        def b64(raw: bytes) -> str:
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        def part(data: Any) -> str:
            return b64(json.dumps(data, separators=(",", ":")).encode())

        signing_input = part({"alg": "HS256", "typ": "JWT"}) + "." + part(claims)
        signature = hmac.new(self._jwt_key, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + b64(signature)

    # -- accounts ----------------------------------------------------------------------------
    def _render_account(self, account: dict[str, Any]) -> dict[str, Any]:
        common = {"Id": account["Id"], "CustomerId": account["CustomerId"], "IsDefault": account["IsDefault"],
                  "CreatedOn": account["CreatedOn"], "LastModified": account["LastModified"]}
        if account["kind"] == "cc":
            month, year = account["exp"]
            return {**common, "CreditCardNumber": "*" * 12 + account["last4"],
                    "ExpirationDate": f"{month:02d}/{year}", "Issuer": account["Issuer"],
                    "BillingZipCode": account.get("BillingZipCode")}
        return {**common, "AccountNumber": "*" * 6 + account["last4"],
                "RoutingNumber": account["RoutingNumber"], "BankName": account["BankName"],
                "IsCheckingAccount": account["IsCheckingAccount"]}

    def _accounts_of(self, customer_id: int, kind: str) -> list[dict[str, Any]]:
        return [a for a in self.accounts.values() if a["CustomerId"] == customer_id and a["kind"] == kind]

    def _add_account(self, customer_id: int, details: dict[str, Any], is_default: bool = False
                     ) -> tuple[dict[str, Any], bool]:
        """``(account, created)``: the customer's existing account for the same card or bank account,
        or a new one (the first of its kind becomes the default)."""
        for account in self._accounts_of(customer_id, details["kind"]):
            if account["fingerprint"] == details["fingerprint"]:
                return account, False
        if details["kind"] == "ach" and not aba_routing_ok(details["RoutingNumber"]):
            raise _Invalid(400, ("RoutingNumber", "Invalid Routing Number."))
        now = format_timestamp(self._now())
        first_of_kind = not any(a["IsDefault"] for a in self._accounts_of(customer_id, details["kind"]))
        account = {**details, "Id": next(self._account_ids), "CustomerId": customer_id,
                   "IsDefault": bool(is_default or first_of_kind), "CreatedOn": now, "LastModified": now}
        if account["IsDefault"]:
            for other in self._accounts_of(customer_id, details["kind"]):
                other["IsDefault"] = False
        self.accounts[account["Id"]] = account
        return account, True

    def _card_details(self, number: str, exp_month: int, exp_year: int, zip_code: str = "") -> dict[str, Any]:
        number = re.sub(r"[\s-]", "", str(number))
        if not re.fullmatch(r"\d{13,19}", number) or not luhn_ok(number):
            raise ValueError("Invalid credit card number.")
        if not 1 <= int(exp_month) <= 12:
            raise ValueError("Invalid expiration month.")
        now = self._now()
        if (int(exp_year), int(exp_month)) < (now.year, now.month):
            raise ValueError("The credit card is expired.")
        issuer = _issuer(number)
        return {"kind": "cc", "Issuer": issuer, "last4": number[-4:], "bin": number[:6],
                "exp": (int(exp_month), int(exp_year)), "BillingZipCode": zip_code or None,
                "fingerprint": hashlib.sha256(b"card:" + number.encode()).hexdigest(),
                "behaviour": TEST_CARDS.get(number, (issuer, "ok"))[1]}

    @staticmethod
    def _ach_details(routing: str, account_number: str, checking: bool, bank_name: str) -> dict[str, Any]:
        account_number = re.sub(r"\D", "", str(account_number))
        if not 4 <= len(account_number) <= 17:
            raise ValueError("Invalid account number.")
        return {"kind": "ach", "RoutingNumber": str(routing), "last4": account_number[-4:],
                "BankName": bank_name or "Test Bank", "IsCheckingAccount": bool(checking),
                "fingerprint": hashlib.sha256(f"ach:{routing}:{account_number}".encode()).hexdigest(),
                "behaviour": "ok"}

    @route("POST", "/v4/account/creditcard")
    def create_card_account(self, request: FakeRequest) -> FakeResponse:
        body = self._body(request)
        customer = self._customer(body.get("CustomerId"))
        month, _, year = str(body.get("ExpirationDate") or "").partition("/")
        try:
            details = self._card_details(body.get("CreditCardNumber") or "", int(month or 0), int(year or 0),
                                         str(body.get("BillingZipCode") or ""))
        except ValueError as exc:
            raise _Invalid(400, ("CreditCardNumber", str(exc))) from None
        account, _created = self._add_account(customer["Id"], details, bool(body.get("IsDefault")))
        return self.envelope(self._render_account(account), 201)

    @route("POST", "/v4/account/ach")
    def create_ach_account(self, request: FakeRequest) -> FakeResponse:
        body = self._body(request)
        customer = self._customer(body.get("CustomerId"))
        try:
            details = self._ach_details(str(body.get("RoutingNumber") or ""),
                                        str(body.get("AccountNumber") or ""),
                                        body.get("IsCheckingAccount", True), str(body.get("BankName") or ""))
        except ValueError as exc:
            raise _Invalid(400, ("AccountNumber", str(exc))) from None
        account, _created = self._add_account(customer["Id"], details, bool(body.get("IsDefault")))
        return self.envelope(self._render_account(account), 201)

    @route("GET", "/v4/account/creditcard/{account_id}")
    def get_card_account(self, request: FakeRequest, account_id: str) -> FakeResponse:
        return self.envelope(self._render_account(self._account(account_id, "cc")))

    @route("GET", "/v4/account/ach/{account_id}")
    def get_ach_account(self, request: FakeRequest, account_id: str) -> FakeResponse:
        return self.envelope(self._render_account(self._account(account_id, "ach")))

    @route("DELETE", "/v4/account/creditcard/{account_id}")
    def delete_card_account(self, request: FakeRequest, account_id: str) -> FakeResponse:
        del self.accounts[self._account(account_id, "cc")["Id"]]
        return FakeResponse(204, None)

    @route("DELETE", "/v4/account/ach/{account_id}")
    def delete_ach_account(self, request: FakeRequest, account_id: str) -> FakeResponse:
        del self.accounts[self._account(account_id, "ach")["Id"]]
        return FakeResponse(204, None)

    def _account(self, account_id: Any, kind: str | None = None) -> dict[str, Any]:
        account = self.accounts.get(_as_int(account_id))
        if account is None or (kind and account["kind"] != kind):
            raise _Invalid(404, ("AccountId", "Account not found."))
        return account

    @route("GET", "/v4/customer/{customer_id}/accounts")
    def customer_accounts(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        customer_id = self._customer(customer_id)["Id"]
        return self.envelope({
            "CreditCardAccounts": [self._render_account(a) for a in self._accounts_of(customer_id, "cc")],
            "AchAccounts": [self._render_account(a) for a in self._accounts_of(customer_id, "ach")],
        })

    @route("GET", "/v4/customer/{customer_id}/creditcardaccounts")
    def customer_cards(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        customer_id = self._customer(customer_id)["Id"]
        return self.envelope([self._render_account(a) for a in self._accounts_of(customer_id, "cc")])

    @route("GET", "/v4/customer/{customer_id}/achaccounts")
    def customer_achs(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        customer_id = self._customer(customer_id)["Id"]
        return self.envelope([self._render_account(a) for a in self._accounts_of(customer_id, "ach")])

    @route("GET", "/v4/customer/{customer_id}/defaultcreditcard")
    def default_card(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        return self._default(customer_id, "cc")

    @route("GET", "/v4/customer/{customer_id}/defaultach")
    def default_ach(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        return self._default(customer_id, "ach")

    def _default(self, customer_id: str, kind: str) -> FakeResponse:
        customer_id = self._customer(customer_id)["Id"]
        for account in self._accounts_of(customer_id, kind):
            if account["IsDefault"]:
                return self.envelope(self._render_account(account))
        raise _Invalid(404, (None, "No default account found."))

    @route("PUT", "/v4/customer/{customer_id}/{account_id}")
    def set_default(self, request: FakeRequest, customer_id: str, account_id: str) -> FakeResponse:
        customer = self._customer(customer_id)
        account = self._account(account_id)
        if account["CustomerId"] != customer["Id"]:
            raise _Invalid(400, ("AccountId", "The account does not belong to this customer."))
        for other in self._accounts_of(customer["Id"], account["kind"]):
            other["IsDefault"] = other is account
        return FakeResponse(204, None)

    # -- the PaySimpleJS stand-in and payment tokens ----------------------------------------------
    def tokenize_card(self, number: str, exp_month: int, exp_year: int, cvc: str = "",
                      holder_name: str = "", *, customer_id: Any = None, auth_token: str = "") -> str:
        """What PaySimpleJS gives the page for a card: the ``account.id`` of ``accountRetrieved``
        under ``auth_token`` (a customer or checkout token from this fake) or under the token of
        ``customer_id``; with neither, a bare payment token (no account: only for tests of the
        payment-token routes)."""
        details = self._card_details(number, exp_month, exp_year)
        if auth_token:
            with self.lock:
                return str(self.retrieve_account(auth_token, details)["account"]["id"])
        if customer_id is None:
            return self._new_payment_token(details=details)
        with self.lock:
            return str(self._retrieved(self._customer(customer_id), details)["account"]["id"])

    def tokenize_ach(self, routing_number: str, account_number: str, checking: bool = True,
                     bank_name: str = "", *, customer_id: Any = None) -> str:
        """PaySimpleJS's ACH form (``ach-key-enter`` mode); see ``tokenize_card``."""
        details = self._ach_details(routing_number, account_number, checking, bank_name)
        if customer_id is None:
            return self._new_payment_token(details=details)
        with self.lock:
            return str(self._retrieved(self._customer(customer_id), details)["account"]["id"])

    def retrieve_account(self, auth_token: str, details: dict[str, Any], person: dict[str, Any] | None = None
                         ) -> dict[str, Any]:
        """``send.retrieveAccount`` behind PaySimpleJS: the ``accountRetrieved`` payload.

        A customer token adds the account to its customer; a checkout token makes a new
        customer from ``person`` (firstName, lastName, email).  Raises ``_Invalid``."""
        claims = self._verify_jwt(auth_token)
        if claims is None:
            raise _Invalid(401, (None, "unauthorized"))
        if claims.get("scope") == "customer":
            customer = self._customer(claims.get("sub"))
        else:
            person = person or {}
            now = format_timestamp(self._now())
            customer = {"Id": next(self._customer_ids), "FirstName": str(person.get("firstName") or ""),
                        "LastName": str(person.get("lastName") or ""), "Email": str(person.get("email") or ""),
                        "CreatedOn": now, "LastModified": now}
            self.customers[customer["Id"]] = customer
        return self._retrieved(customer, details)

    def _retrieved(self, customer: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
        account, _created = self._add_account(customer["Id"], details)
        return {"account": {"id": account["Id"]},
                "customer": {"id": customer["Id"], "firstName": customer.get("FirstName", ""),
                             "lastName": customer.get("LastName", ""), "email": customer.get("Email", "")},
                "paymentToken": self._new_payment_token(account_id=account["Id"])}

    def _verify_jwt(self, token: str) -> dict[str, Any] | None:
        try:
            signing_input, _, signature = str(token).rpartition(".")
            expected = base64.urlsafe_b64encode(
                hmac.new(self._jwt_key, signing_input.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
            if not hmac.compare_digest(expected, signature):
                return None
            payload = signing_input.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return None
        if not isinstance(claims, dict) or claims.get("mid") != self.MERCHANT_ID:
            return None
        if int(claims.get("exp", 0)) <= self._now().timestamp():
            return None
        return claims

    @route("POST", "/_fake/standin/paysimplejs/accounts")
    def _standin_accounts(self, request: FakeRequest) -> FakeResponse:
        """The stand-in library's submit (our own wire, not PaySimple's): answers the
        ``accountRetrieved`` payload, or the ``httpError`` payload."""
        def http_error(status: int, key: str, errors: list[dict[str, str]]) -> FakeResponse:
            return standin_response({"errorKey": key, "errors": errors, "status": status}, status)

        try:
            body = json.loads(request.body.decode("utf-8") or "{}")
        except ValueError:
            return http_error(400, "bad_request", [{"field": "", "message": "invalid JSON"}])
        if not isinstance(body, dict):
            return http_error(400, "bad_request", [{"field": "", "message": "invalid JSON"}])
        token = request.header("Authorization").removeprefix("Bearer ").strip()
        try:
            if body.get("mode") == "ach-key-enter":
                details = self._ach_details(str(body.get("routingNumber", "")), str(body.get("accountNumber", "")),
                                            str(body.get("accountType", "checking")) == "checking",
                                            str(body.get("bankName", "")))
            else:
                month, _, year = str(body.get("expiration", "")).partition("/")
                if not (month.strip().isdigit() and year.strip().isdigit()):
                    return http_error(400, "bad_request",
                                      [{"field": "expiration", "message": "Invalid expiration date."}])
                year_number = int(year) + (2000 if int(year) < 100 else 0)
                details = self._card_details(str(body.get("cardNumber", "")), int(month), year_number,
                                             str(body.get("postalCode", "")))
            with self.lock:
                payload = self.retrieve_account(token, details, body.get("customer"))
        except ValueError as exc:
            field = "cardNumber" if "number" in str(exc).lower() else "expiration"
            return http_error(400, "bad_request", [{"field": field, "message": str(exc)}])
        except _Invalid as exc:
            if exc.status == 401:
                return http_error(401, "unauthorized", [])
            return http_error(exc.status, "bad_request",
                              [{"field": f or "", "message": m} for f, m in exc.errors])
        return standin_response(payload, 200)

    def _new_payment_token(self, *, details: dict | None = None, account_id: int | None = None) -> str:
        token = str(uuid.uuid4())
        with self.lock:
            self.payment_tokens[token] = {"details": details, "account_id": account_id, "used": False,
                                          "expires": self._now() + self.PAYMENT_TOKEN_TTL}
        return token

    def expire_payment_token(self, token: str) -> None:
        with self.lock:
            self.payment_tokens[token]["expires"] = self._now() - timedelta(seconds=1)

    def _take_payment_token(self, token: Any) -> dict[str, Any]:
        entry = self.payment_tokens.get(str(token or ""))
        if entry is None:
            raise _Invalid(400, ("PaymentToken", "Invalid payment token."))
        if entry["used"]:
            raise _Invalid(400, ("PaymentToken", "The payment token has already been used."))
        if entry["expires"] <= self._now():
            raise _Invalid(400, ("PaymentToken", "The payment token has expired."))
        entry["used"] = True
        return entry

    @route("POST", "/v4/paymenttoken")
    def payment_token(self, request: FakeRequest) -> FakeResponse:
        """A single-use payment token for an existing account: the official SDK's request is
        ``{CustomerAccountId (required, > 0), CustomerId, Cvv}`` (PaySimple/PaySimpleSDK
        ``src/PaySimpleSdk/Payments/PaymentTokenRequest.cs``); there is no ``PaymentToken`` in it."""
        body = self._body(request)
        if "PaymentToken" in body:
            raise _Invalid(400, ("PaymentToken", "The request is invalid: PaymentToken is not a member of "
                                                 "PaymentTokenRequest."))
        account_id = _as_int(body.get("CustomerAccountId"))
        if not account_id or account_id <= 0:
            raise _Invalid(400, ("CustomerAccountId", "CustomerAccountId is required."))
        account = self._account(account_id)
        if body.get("CustomerId") not in (None, "") and account["CustomerId"] != _as_int(body.get("CustomerId")):
            raise _Invalid(400, ("CustomerAccountId", "The account does not belong to this customer."))
        token = self._new_payment_token(account_id=account["Id"])
        return self.envelope({"PaymentToken": token, "CustomerId": account["CustomerId"],
                              "CustomerAccountId": account["Id"], "IsNewlyCreated": False}, 201)

    # -- payments ----------------------------------------------------------------------------------
    @route("POST", "/v4/payment")
    def create_payment(self, request: FakeRequest) -> FakeResponse:
        body = self._body(request)
        errors = []
        account = self.accounts.get(_as_int(body.get("AccountId"), default=-1))
        if account is None:
            errors.append(("AccountId", "AccountId is required and must be an existing account."))
        try:
            amount = Decimal(str(body.get("Amount"))).quantize(Decimal("0.01"))
        except (InvalidOperation, ValueError):
            amount = Decimal(0)
        if not Decimal("0.01") <= amount <= Decimal("2000000.00"):
            errors.append(("Amount", "Amount must be greater than $0.00 and cannot exceed 2,000,000.00."))
        for field, limit in (("OrderId", 50), ("InvoiceNumber", 50), ("PurchaseOrderNumber", 50),
                             ("Description", 2048)):
            if body.get(field) is not None and len(str(body[field])) > limit:
                errors.append((field, f"{field} cannot exceed {limit} characters."))
        if errors:
            raise _Invalid(400, *errors)
        if body.get("PaymentToken"):
            entry = self._take_payment_token(body["PaymentToken"])
            if entry["account_id"] != account["Id"]:
                raise _Invalid(400, ("PaymentToken", "The payment token does not match the account."))
        payment = self._new_payment(account, amount, body)
        behaviour = "decline" if self.faults.decline_all else account["behaviour"]
        if behaviour in _FAILURES:
            failure = dict(_FAILURES[behaviour])
            payment.update(Status="Failed", FailureData=failure, IsDecline=failure["IsDecline"],
                           CanVoidUntil=None, ProviderAuthCode=None)
        return self.envelope(self._render_payment(payment), 201)

    def _new_payment(self, account: dict[str, Any], amount: Decimal, body: dict[str, Any]) -> dict[str, Any]:
        customer = self.customers.get(account["CustomerId"], {})
        now = self._now()
        card = account["kind"] == "cc"
        payment = {
            "Id": next(self._payment_ids), "AccountId": account["Id"], "CustomerId": account["CustomerId"],
            "CustomerFirstName": customer.get("FirstName"), "CustomerLastName": customer.get("LastName"),
            "CustomerCompany": customer.get("Company"), "Amount": amount, "IsDebit": False,
            "PaymentType": "CC" if card else "ACH", "PaymentSubType": body.get("PaymentSubType")
            or ("Moto" if card else "Web"), "Status": "Authorized" if card else "Posted",
            "ReferenceId": 0, "RecurringScheduleId": 0, "ProviderAuthCode": secrets.token_hex(3).upper(),
            "TraceNumber": str(secrets.randbelow(10**12)).zfill(12), "PaymentDate": format_timestamp(now),
            "EstimatedSettleDate": format_timestamp(now + timedelta(days=2)), "ActualSettledDate": None,
            "ReturnDate": None, "CanVoidUntil": format_timestamp(now + self.VOID_WINDOW), "FailureData": None,
            "IsDecline": False, "CreatedOn": format_timestamp(now), "LastModified": format_timestamp(now),
            "InvoiceId": None, "RequiresReceipt": False,
        }
        for field in ("OrderId", "InvoiceNumber", "PurchaseOrderNumber", "Description"):
            payment[field] = body.get(field)
        self.payments[payment["Id"]] = payment
        return payment

    @staticmethod
    def _render_payment(payment: dict[str, Any]) -> dict[str, Any]:
        return {**payment, "Amount": _money(payment["Amount"])}

    def _payment(self, payment_id: Any) -> dict[str, Any]:
        payment = self.payments.get(_as_int(payment_id))
        if payment is None:
            raise _Invalid(404, ("PaymentId", "Payment not found."))
        return payment

    @route("GET", "/v4/payment/{payment_id}")
    def get_payment(self, request: FakeRequest, payment_id: str) -> FakeResponse:
        return self.envelope(self._render_payment(self._payment(payment_id)))

    @route("GET", "/v4/customer/{customer_id}/payments")
    def customer_payments(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        customer_id = self._customer(customer_id)["Id"]
        payments = [self._render_payment(p) for p in self.payments.values() if p["CustomerId"] == customer_id]
        payments.sort(key=lambda p: p["Id"], reverse=request.query.get("direction", "").upper() == "DESC")
        return self._page(request, payments)

    @route("PUT", "/v4/payment/{payment_id}/void")
    def void_payment(self, request: FakeRequest, payment_id: str) -> FakeResponse:
        payment = self._payment(payment_id)
        if payment["Status"] not in _VOIDABLE or parse_timestamp(payment["CanVoidUntil"]) <= self._now():
            raise _Invalid(400, ("PaymentId", f"A payment in status {payment['Status']} cannot be voided; "
                                              "refund it once it is Settled."))
        payment.update(Status="Voided", LastModified=format_timestamp(self._now()))
        return self.envelope(self._render_payment(payment))

    @route("PUT", "/v4/payment/{payment_id}/reverse")
    def reverse_payment(self, request: FakeRequest, payment_id: str) -> FakeResponse:
        payment = self._payment(payment_id)
        if payment["Status"] != "Settled":
            raise _Invalid(400, ("PaymentId", "Only payments in status Settled can be refunded; "
                                              "void the payment before it settles."))
        account = self.accounts.get(payment["AccountId"]) or {
            "Id": payment["AccountId"], "CustomerId": payment["CustomerId"], "kind": "cc"}
        credit = self._new_payment(account, -payment["Amount"], {"OrderId": payment.get("OrderId")})
        credit.update(Status="Authorized" if payment["PaymentType"] == "CC" else "ReversePosted",
                      ReferenceId=payment["Id"], IsDebit=False)
        payment.update(Status="Reversed", ReferenceId=credit["Id"],
                       LastModified=format_timestamp(self._now()))
        return self.envelope(self._render_payment(payment))

    @route("PUT", "/v4/MarkPaymentStatus")
    def mark_payment_status(self, request: FakeRequest) -> FakeResponse:
        """Sandbox only: mark a payment Settled so it can be refunded."""
        self.settle(self._body(request).get("PaymentId"))
        return FakeResponse(204, None)

    # -- what the card networks and PaySimple do on their own ----------------------------------------
    def settle(self, payment_id: Any) -> None:
        """Settle the payment now (PaySimple does it after about 3 business days)."""
        payment = self._payment(payment_id)
        if payment["Status"] not in _VOIDABLE:
            raise _Invalid(400, ("PaymentId", f"A payment in status {payment['Status']} cannot settle."))
        now = format_timestamp(self._now())
        payment.update(Status="Settled", ActualSettledDate=now, CanVoidUntil=now, LastModified=now)

    def close_void_window(self, payment_id: Any) -> None:
        self._payment(payment_id)["CanVoidUntil"] = format_timestamp(self._now() - timedelta(seconds=1))

    def network_update(self, account_id: Any, exp_month: int, exp_year: int, last4: str | None = None,
                       closed: bool = False) -> None:
        """PaySimple's Card Account Updater: new expiry (and number), or a closed card removed."""
        with self.lock:
            account = self._account(account_id, "cc")
            if closed:
                del self.accounts[account["Id"]]
                return
            account.update(exp=(int(exp_month), int(exp_year)), LastModified=format_timestamp(self._now()))
            if last4:
                account["last4"] = str(last4)[-4:]

    # -- webhooks ---------------------------------------------------------------------------------
    def webhook_delivery(self, event_type: str, data: dict[str, Any], secret: str | None = None
                         ) -> tuple[dict[str, str], bytes]:
        """A message as PaySimple POSTs it: ``(headers, raw body)``, signed with ``secret``."""
        message = {"event_type": event_type, "event_id": "evt_" + secrets.token_hex(12),
                   "merchant_id": self.MERCHANT_ID, "created_at": format_timestamp(self._now()), "data": data}
        body = json.dumps(message).encode("utf-8")
        headers = {"content-type": "application/json",
                   "paysimple-hmac-sha256": webhook_signature(secret or self.WEBHOOK_SECRET, body)}
        return headers, body

    def customer_updated_delivery(self, customer_id: Any, secret: str | None = None
                                  ) -> tuple[dict[str, str], bytes]:
        customer = self._customer(customer_id)
        data = {"customer_id": customer["Id"], "first_name": customer["FirstName"],
                "last_name": customer["LastName"], "email": customer.get("Email")}
        return self.webhook_delivery("customer_updated", data, secret)

    def payment_delivery(self, payment_id: Any, event_type: str = "payment_created", secret: str | None = None
                         ) -> tuple[dict[str, str], bytes]:
        payment = self._payment(payment_id)
        status = re.sub(r"(?<!^)(?=[A-Z])", "_", payment["Status"]).lower()
        data = {"payment_id": payment["Id"], "customer_id": payment["CustomerId"],
                "account_id": payment["AccountId"], "amount": _money(payment["Amount"]),
                "payment_status": status,
                "payment_type": "credit_card" if payment["PaymentType"] == "CC" else "ach",
                "order_id": payment.get("OrderId")}
        return self.webhook_delivery(event_type, data, secret)


def _as_int(value: Any, default: int | None = None) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        if default is not None:
            return default
        raise _Invalid(400, (None, "The id must be a number.")) from None


FAKE = PaySimpleFake  # the fake of this module (used by VAULT_FAKE in the example shop)

paysimple_fake = fake_fixture(PaySimpleFake)


def main(argv: list[str] | None = None) -> None:
    serve(PaySimpleFake, argv)


if __name__ == "__main__":
    main()
