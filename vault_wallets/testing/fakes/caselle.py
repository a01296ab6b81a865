"""A loopback stand-in for the Caselle Payments API (Govifi) and its Cognito token endpoint.

It plays, in memory, what the documentation describes: the OAuth client-credentials token
endpoint, bearer-token and ``X-Payment-Account-Uid`` checks, strict JSON bodies (unknown
properties answer 400), customers unique by ``reference_id`` (409 on a duplicate, or the status
in ``create_conflict_status``: how Caselle answers a conflict is not documented) with OData
``$filter``/``$top`` lookups, saved payment methods built from 15-minute proxynized tokens,
the validate → capture → refund payment phases with a convenience fee, the webhook signing
secret, and signed webhook deliveries (``provider.noc`` for network updates).

Run it standalone::

    python -m vault_wallets.testing.fakes.caselle --port 8101
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

from vault_wallets.processors.caselle import DEFAULT_SCOPE, decode_browser_token, encode_browser_token

from ..cards import AMEX, DISCOVER, MASTERCARD, VISA, card_brand, luhn_ok
from ..server import (
    _CORS,
    FakeRequest,
    FakeResponse,
    FakeServer,
    fake_fixture,
    json_response,
    route,
    serve,
    standin_response,
)

#: Test cards: number → behaviour of charges (the project's set plus Caselle's sandbox cards).
TEST_CARDS = {
    "4242424242424242": "ok",
    "4111111111111111": "ok",
    "5555555555554444": "ok",
    "4000000000000002": "decline",
    "4000000000001216": "fail",
}
#: ACH accounts whose number ends like this have their payments returned (declined).
ACH_DECLINE_SUFFIX = "0002"

_FILTER = re.compile(r"^\s*(reference_id|email)\s+eq\s+'((?:[^']|'')*)'\s*$")
_UNSET = object()


_BRANDS = {VISA: "VISA", MASTERCARD: "MASTERCARD", AMEX: "AMEX", DISCOVER: "DISCOVER"}


def _uid(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


class _Invalid(ValueError):
    """A request the API refuses with 400 ``validation_error``."""


def _check(data: Any, schema: dict[str, tuple[Any, bool]], where: str = "body") -> dict[str, Any]:
    """Validate ``data`` against ``{field: (type | nested schema, required)}``: no unknown
    properties, required ones present, types exact (integers are not booleans)."""
    if not isinstance(data, dict):
        raise _Invalid(f"{where} must be a JSON object")
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise _Invalid(
            f"unknown propert{'y' if len(unknown) == 1 else 'ies'} in {where}: {', '.join(unknown)}"
        )
    for name, (kind, required) in schema.items():
        if name not in data or data[name] is None:
            if required:
                raise _Invalid(f"{where}.{name} is required")
            continue
        value = data[name]
        if isinstance(kind, dict):
            _check(value, kind, f"{where}.{name}")
        elif kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise _Invalid(f"{where}.{name} must be an integer")
        elif kind is not int and not isinstance(value, kind):
            raise _Invalid(f"{where}.{name} must be of type {kind.__name__}")
    return data


_CUSTOMER = {"reference_id": (str, True), "name": (str, False), "email": (str, False)}
_CUSTOMER_UPDATE = {"name": (str, False), "email": (str, False)}
_CREDIT = {
    "fingerprint": (str, True),
    "last4": (str, True),
    "exp_month": (int, True),
    "exp_year": (int, True),
    "bin": (str, False),
    "card_brand": (str, False),
    "holder_name": (str, False),
}
_ACH = {
    "fingerprint": (str, True),
    "bank_name": (str, False),
    "routing_number": (str, True),
    "account_number_suffix": (str, True),
    "account_type": (str, True),
    "holder_name": (str, False),
}
_SAVED_METHOD = {"payment_method_type": (str, True), "credit": (_CREDIT, False), "ach": (_ACH, False)}
_WALLET = {"saved_payment_method_uid": (str, True)}
_PAYMENT_METHOD = {**_SAVED_METHOD, "wallet": (_WALLET, False)}
_PAYMENT = {
    "base_amount": (int, True),
    "tax_amount": (int, False),
    "currency": (str, True),
    "reference_id": (str, True),
    "payment_method": (_PAYMENT_METHOD, True),
}
_CAPTURE = {**_PAYMENT, "processing_fee_amount": (int, True)}


class CaselleFake(FakeServer):
    """The fake Caselle API.  The defaults below are the credentials it accepts."""

    name = "caselle"
    title = "Caselle Payments API"

    CLIENT_ID = "caselle-test-client"
    CLIENT_SECRET = "caselle-test-client-secret"
    PAYMENT_ACCOUNT_UID = "pa_test_0001"
    WEBHOOK_SECRET = "whsec_caselle_fake_signing_secret"

    #: Convenience fee rules of the fake payment account.
    CREDIT_FEE_BPS = 250  # 2.5 % of base + tax, rounded half up
    ACH_FEE = 95  # flat
    PROXY_TOKEN_TTL = 15 * 60

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        payment_account_uid: str | None = None,
        webhook_secret: str | None = None,
    ):
        self.client_id = client_id or self.CLIENT_ID
        self.client_secret = client_secret or self.CLIENT_SECRET
        self.payment_account_uid = payment_account_uid or self.PAYMENT_ACCOUNT_UID
        self.webhook_secret = webhook_secret or self.WEBHOOK_SECRET
        super().__init__(host, port)

    processor_path = "vault_wallets.processors.caselle.CaselleProcessor"
    # @caselle/payment-sdk has no published script URL; the stand-in lives on the fake.
    standin_path = "/_fake/sdk/caselle-payment-sdk.js"
    standin_file = "caselle.js"
    ZIFT_ACCOUNT_ID = "zift-acct-fake-1001"
    ZIFT_API_KEY = "zift-public-key-fake-1001"
    TEMPORARY_PASSWORD_TTL = 10 * 60  # Zift: a temporary password lasts 10 minutes

    def account_options(self, **extra: Any) -> dict[str, Any]:
        return {"BASE_URL": self.url, "AUTH_URL": self.url, "CLIENT_ID": self.client_id,
                "CLIENT_SECRET": self.client_secret, "PAYMENT_ACCOUNT_UID": self.payment_account_uid,
                "WEBHOOK_SECRET": self.webhook_secret, **extra}

    def describe(self) -> list[str]:
        options = self.account_options()
        return [
            f"token endpoint: {self.url}/oauth2/token",
            "OPTIONS = {",
            *(f"    {key!r}: {value!r}," for key, value in options.items()),
            "}",
            "Test cards: 4242424242424242 / 4111111111111111 / 5555555555554444 approve, "
            "4000000000000002 declines, 4000000000001216 fails (processing_error).",
        ]

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.token_ttl = 3600
            self.create_conflict_status = 409
            self.access_tokens: dict[str, float] = {}  # token → expiry (epoch seconds)
            # The most recent requests, for tests to inspect (bounded for long standalone runs).
            self.token_requests: deque[FakeRequest] = deque(maxlen=200)
            self.received: deque[FakeRequest] = deque(maxlen=1000)
            self.customers: dict[str, dict[str, Any]] = {}
            self.proxy_tokens: dict[str, dict[str, Any]] = {}
            self.saved_methods: dict[str, dict[str, Any]] = {}
            self.payments: dict[str, dict[str, Any]] = {}
            self.temporary_passwords: dict[str, float] = {}  # password → expiry (epoch seconds)
            self.idempotent: dict[tuple[str, str, str], tuple[str, FakeResponse]] = {}

    # -- the processor's own shapes ------------------------------------------------------
    def error(self, status: int, message: str, code: str = "") -> FakeResponse:
        code = "validation_error" if code in ("", "invalid_request") else code
        return json_response(
            {
                "code": code,
                "message": message,
                "recoverable": code in ("card_declined",),
                "request_id": _uid("req"),
            },
            status,
        )

    def handle(self, request: FakeRequest) -> FakeResponse:
        with self.lock:
            self.received.append(request)
        try:
            return super().handle(request)
        except _Invalid as exc:  # raised outside the base's ValueError guard (authenticate)
            return self.error(400, str(exc))

    def authenticate(self, request: FakeRequest) -> FakeResponse | None:
        if request.path == "/oauth2/token":
            return None  # HTTP Basic, checked by the endpoint itself (Cognito's own answers)
        if request.path.startswith("/api/paymentaccounts/") and request.path.endswith("/client-config"):
            return None  # documented as anonymous (rate-limited), scoped by the account: the route checks
        scheme, _, token = request.header("Authorization").partition(" ")
        expiry = self.access_tokens.get(token) if scheme.lower() == "bearer" else None
        if expiry is None or expiry < time.time():
            # API Gateway + Cognito authorizer: a bare message, no code.
            return json_response({"message": "Unauthorized"}, 401)
        account = request.header("X-Payment-Account-Uid")
        if not account:
            return self.error(400, "X-Payment-Account-Uid header is required")
        if account != self.payment_account_uid:
            return self.error(403, "this token has no access to that payment account", "insufficient_scope")
        return None

    # -- browser tokenization ------------------------------------------------------------
    def tokenize_card(
        self, number: str, exp_month: int, exp_year: int, cvc: str = "", holder_name: str = ""
    ) -> str:
        """What Caselle's payment SDK does: proxynize the card, return the browser token."""
        if not number.isdigit() or not 12 <= len(number) <= 19 or not luhn_ok(number):
            raise ValueError("invalid card number")
        if not 1 <= exp_month <= 12 or not 2000 <= exp_year <= 2100:
            raise ValueError("invalid expiry")
        behaviour = TEST_CARDS.get(number, "ok")
        card = {
            "last4": number[-4:],
            "bin": number[:6],
            "exp_month": exp_month,
            "exp_year": exp_year,
            "card_brand": _BRANDS.get(card_brand(number), "UNKNOWN"),
            "card_id": hashlib.sha256(f"caselle-fake|{number}".encode()).hexdigest()[:24],
        }
        proxy = self._proxynize("credit", card, behaviour)
        return encode_browser_token("credit", {"fingerprint": proxy, "holder_name": holder_name, **card})

    def tokenize_bank_account(
        self,
        routing_number: str,
        account_number: str,
        account_type: str = "checking",
        holder_name: str = "",
        bank_name: str = "",
    ) -> str:
        """The ACH counterpart of ``tokenize_card``."""
        if not (routing_number.isdigit() and len(routing_number) == 9):
            raise ValueError("invalid routing number")
        if not (account_number.isdigit() and 4 <= len(account_number) <= 17):
            raise ValueError("invalid account number")
        if account_type not in ("checking", "savings"):
            raise ValueError("account_type must be checking or savings")
        account = {
            "routing_number": routing_number,
            "account_number_suffix": account_number[-4:],
            "account_type": account_type,
            "bank_name": bank_name or "Fake Community Bank",
        }
        behaviour = "decline" if account_number.endswith(ACH_DECLINE_SUFFIX) else "ok"
        proxy = self._proxynize("ach", account, behaviour)
        return encode_browser_token("ach", {"fingerprint": proxy, "holder_name": holder_name, **account})

    # -- the payment SDK's client config and its stand-in (standins/caselle.js) -----------------
    @route("GET", "/api/paymentaccounts/{uid}/client-config")
    def client_config(self, request: FakeRequest, uid: str) -> FakeResponse:
        header = request.header("X-Payment-Account-Uid")
        if uid != self.payment_account_uid or (header and header != uid):
            return self.error(404, "payment account not found", "not_found")
        password = secrets.token_urlsafe(18)
        expires = time.time() + self.TEMPORARY_PASSWORD_TTL
        self.temporary_passwords[password] = expires
        return json_response({
            "processor": "zift",
            "config": {"account_id": self.ZIFT_ACCOUNT_ID, "api_key": self.ZIFT_API_KEY,
                       "temporary_password": password,
                       "expiration_date": datetime.fromtimestamp(expires, timezone.utc).isoformat()},
            "supported_methods": ["credit", "ach"],
        })

    @route("POST", "/_fake/standin/caselle/proxynize")
    def _standin_proxynize(self, request: FakeRequest) -> FakeResponse:
        """The stand-in SDK's call (invented wire): Zift credentials from the client config + the
        card → the proxynized token (``fingerprint``) and the display fields."""
        try:
            data = request.json()
        except ValueError:
            return standin_response({"code": "invalid_request", "message": "invalid JSON"}, 400)
        if not isinstance(data, dict):
            return standin_response({"code": "invalid_request", "message": "invalid JSON"}, 400)
        expiry = self.temporary_passwords.get(str(data.get("temporary_password", "")))
        if (data.get("account_id") != self.ZIFT_ACCOUNT_ID or data.get("api_key") != self.ZIFT_API_KEY
                or expiry is None or expiry < time.time()):
            return standin_response({"code": "unauthorized", "message": "the temporary password is invalid or "
                                                                         "expired"}, 401)
        try:
            token = self.tokenize_card(str(data.get("number", "")).replace(" ", ""), int(data.get("exp_month") or 0),
                                       int(data.get("exp_year") or 0), str(data.get("cvc", "")),
                                       str(data.get("holder_name", "")))
        except ValueError as exc:
            return standin_response({"code": "invalid_card", "message": str(exc)}, 400)
        _ptype, details = decode_browser_token(token)
        return standin_response(details, 201)

    def _proxynize(self, ptype: str, details: dict[str, Any], behaviour: str) -> str:
        proxy = _uid("prx")
        with self.lock:
            self.proxy_tokens[proxy] = {
                "type": ptype,
                "details": details,
                "behaviour": behaviour,
                "created": time.time(),
                "used": False,
            }
        return proxy

    # The ACH counterpart of the base's ``/_fake/tokens`` (not part of any real API).
    @route("POST", "/_fake/bank-tokens")
    def _fake_bank_tokens(self, request: FakeRequest) -> FakeResponse:
        try:
            data = request.json()
            token = self.tokenize_bank_account(
                str(data.get("routing_number", "")),
                str(data.get("account_number", "")),
                str(data.get("account_type", "checking")),
                str(data.get("holder_name", "")),
                str(data.get("bank_name", "")),
            )
        except (ValueError, AttributeError) as exc:
            return json_response({"error": str(exc)}, 400, **_CORS)
        return json_response({"token": token}, 201, **_CORS)

    @route("OPTIONS", "/_fake/bank-tokens")
    def _fake_bank_tokens_preflight(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse(204, None, dict(_CORS))

    def expire_proxynized_tokens(self) -> None:
        """Age every proxynized token past its 15 minutes."""
        with self.lock:
            for record in self.proxy_tokens.values():
                record["created"] -= self.PROXY_TOKEN_TTL + 1

    # -- OAuth ---------------------------------------------------------------------------
    @route("POST", "/oauth2/token")
    def oauth_token(self, request: FakeRequest) -> FakeResponse:
        self.token_requests.append(request)
        scheme, _, encoded = request.header("Authorization").partition(" ")
        try:
            client_id, _, client_secret = (
                base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            client_id = client_secret = ""
        if scheme.lower() != "basic" or not (
            hmac.compare_digest(client_id, self.client_id)
            and hmac.compare_digest(client_secret, self.client_secret)
        ):
            return json_response({"error": "invalid_client"}, 400)
        if not request.header("Content-Type").startswith("application/x-www-form-urlencoded"):
            return json_response({"error": "invalid_request"}, 400)
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            return json_response({"error": "unsupported_grant_type"}, 400)
        if form.get("scope", DEFAULT_SCOPE) != DEFAULT_SCOPE:
            return json_response({"error": "invalid_scope"}, 400)
        token = "eyJ" + secrets.token_urlsafe(32)
        self.access_tokens[token] = time.time() + self.token_ttl
        return json_response({"access_token": token, "expires_in": self.token_ttl, "token_type": "Bearer"})

    def revoke_access_tokens(self) -> None:
        """Invalidate every issued access token (the next API call answers 401)."""
        with self.lock:
            self.access_tokens.clear()

    # -- helpers -------------------------------------------------------------------------
    def _body(self, request: FakeRequest, schema: dict[str, tuple[Any, bool]]) -> dict[str, Any]:
        try:
            data = request.json()
        except ValueError:
            raise _Invalid("body is not valid JSON") from None
        return _check(data, schema)

    def _replay(self, request: FakeRequest, handler) -> FakeResponse:
        """Honour ``Idempotency-Key``: the same key and body replay the first answer."""
        key = request.header("Idempotency-Key")
        if not key:
            return handler()
        slot = (request.method, request.path, key)
        digest = hashlib.sha256(request.body).hexdigest()
        if slot in self.idempotent:
            seen_digest, response = self.idempotent[slot]
            if seen_digest != digest:
                return self.error(
                    422, "Idempotency-Key reused with a different request", "idempotency_key_reused"
                )
            return response
        response = handler()
        if response.status < 500:
            self.idempotent[slot] = (digest, response)
        return response

    def _customer(self, uid: str) -> dict[str, Any]:
        customer = self.customers.get(uid)
        if customer is None:
            raise LookupError("customer not found")
        return customer

    def _not_found(self, what: str) -> FakeResponse:
        return self.error(404, f"{what} not found", "not_found")

    def _customer_view(self, customer: dict[str, Any]) -> dict[str, Any]:
        default = next((m["uid"] for m in self._methods_of(customer["uid"]) if m["is_default"]), None)
        return {**customer, "default_saved_payment_method_uid": default}

    def _methods_of(self, customer_uid: str) -> list[dict[str, Any]]:
        return [m for m in self.saved_methods.values() if m["customer_uid"] == customer_uid]

    def _method_view(self, method: dict[str, Any], *, with_token: bool) -> dict[str, Any]:
        details = dict(method["details"])
        details.pop("card_id", None)
        if with_token:
            details["fingerprint"] = method["token"]
        return {
            "saved_payment_method_uid": method["uid"],
            "customer_uid": method["customer_uid"],
            "is_default": method["is_default"],
            "status": method["status"],
            "payment_method": {"payment_method_type": method["type"], method["type"]: details},
            "created_at": method["created_at"],
            "updated_at": method["updated_at"],
        }

    # -- customers -----------------------------------------------------------------------
    @route("POST", "/api/customers")
    def create_customer(self, request: FakeRequest) -> FakeResponse:
        data = self._body(request, _CUSTOMER)
        if not data["reference_id"].strip():
            raise _Invalid("body.reference_id must not be empty")
        if any(c["reference_id"] == data["reference_id"] for c in self.customers.values()):
            # Caselle documents that a create can conflict, not how it answers; 409 is inferred.
            # ``create_conflict_status`` plays the other reading (a 400 whose body names the conflict).
            return self.error(self.create_conflict_status, "a customer with this reference_id already exists",
                              "already_exists")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        customer = {
            "uid": _uid("cus"),
            "reference_id": data["reference_id"],
            "name": data.get("name", ""),
            "email": data.get("email", ""),
            "created_at": now,
        }
        self.customers[customer["uid"]] = customer
        return json_response(self._customer_view(customer), 201)

    @route("GET", "/api/customers")
    def list_customers(self, request: FakeRequest) -> FakeResponse:
        found = list(self.customers.values())
        if "$filter" in request.query:
            match = _FILTER.match(request.query["$filter"])
            if not match:
                raise _Invalid("unsupported $filter expression")
            field, value = match.group(1), match.group(2).replace("''", "'")
            found = [c for c in found if c[field] == value]
        if "$top" in request.query:
            if not request.query["$top"].isdigit():
                raise _Invalid("$top must be a non-negative integer")
            found = found[: int(request.query["$top"])]
        return json_response({"value": [self._customer_view(c) for c in found]})

    @route("GET", "/api/customers/{uid}")
    def get_customer(self, request: FakeRequest, uid: str) -> FakeResponse:
        customer = self.customers.get(uid)
        return json_response(self._customer_view(customer)) if customer else self._not_found("customer")

    @route("PUT", "/api/customers/{uid}")
    def update_customer(self, request: FakeRequest, uid: str) -> FakeResponse:
        data = self._body(request, _CUSTOMER_UPDATE)
        customer = self.customers.get(uid)
        if customer is None:
            return self._not_found("customer")
        customer.update(data)
        return json_response(self._customer_view(customer))

    @route("DELETE", "/api/customers/{uid}")
    def delete_customer(self, request: FakeRequest, uid: str) -> FakeResponse:
        if self.customers.pop(uid, None) is None:
            return self._not_found("customer")
        for method in self._methods_of(uid):
            del self.saved_methods[method["uid"]]
        return FakeResponse(204)

    # -- saved payment methods -----------------------------------------------------------
    def _save(self, customer_uid: str, pm: dict[str, Any], *, imported: bool) -> dict[str, Any]:
        """Validate a payment_method object and store it; ``_Invalid``/``LookupError`` otherwise."""
        ptype = pm["payment_method_type"]
        if (
            ptype not in ("credit", "ach")
            or not isinstance(pm.get(ptype), dict)
            or set(pm) != {"payment_method_type", ptype}
        ):
            raise _Invalid(
                "payment_method must hold exactly one of credit / ach, matching payment_method_type"
            )
        details = dict(pm[ptype])
        given = details.pop("fingerprint")
        if imported:
            behaviour, token = "ok", given
        else:
            record = self.proxy_tokens.get(given)
            if (
                record is None
                or record["used"]
                or record["type"] != ptype
                or time.time() - record["created"] > self.PROXY_TOKEN_TTL
            ):
                raise _TokenRefused()
            for key, value in record["details"].items():
                if key in details and details[key] != value:
                    raise _Invalid(f"payment_method.{ptype}.{key} does not match the tokenized {ptype}")
            record["used"] = True
            details = {**record["details"], **{k: v for k, v in details.items() if k == "holder_name"}}
            behaviour, token = record["behaviour"], _uid("ptk")
        if ptype == "credit":
            if not 1 <= details["exp_month"] <= 12:
                raise _Invalid("payment_method.credit.exp_month must be 1-12")
            if (details["exp_year"], details["exp_month"]) < time.gmtime()[:2]:
                raise _Expired()
        elif details.get("account_type") not in ("checking", "savings"):
            raise _Invalid("payment_method.ach.account_type must be checking or savings")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        method = {
            "uid": _uid("spm"),
            "customer_uid": customer_uid,
            "type": ptype,
            "details": details,
            "token": token,
            "behaviour": behaviour,
            "status": "active",
            "is_default": not any(m["status"] == "active" for m in self._methods_of(customer_uid)),
            "created_at": now,
            "updated_at": now,
        }
        self.saved_methods[method["uid"]] = method
        return method

    @route("POST", "/api/customers/{uid}/payment-methods")
    def save_payment_method(self, request: FakeRequest, uid: str) -> FakeResponse:
        def save() -> FakeResponse:
            data = self._body(request, {"payment_method": (_SAVED_METHOD, True)})
            if uid not in self.customers:
                return self._not_found("customer")
            try:
                method = self._save(uid, data["payment_method"], imported=False)
            except _TokenRefused:
                return self.error(
                    400, "the proxynized token is unknown, expired or already used", "invalid_payment_token"
                )
            except _Expired:
                return self.error(400, "the card has expired", "expired_card")
            return json_response(self._method_view(method, with_token=True), 201)

        return self._replay(request, save)

    @route("GET", "/api/customers/{uid}/payment-methods")
    def list_payment_methods(self, request: FakeRequest, uid: str) -> FakeResponse:
        if uid not in self.customers:
            return self._not_found("customer")
        return json_response(
            {"value": [self._method_view(m, with_token=False) for m in self._methods_of(uid)]}
        )

    @route("DELETE", "/api/customers/{uid}/payment-methods/{spm}")
    def delete_payment_method(self, request: FakeRequest, uid: str, spm: str) -> FakeResponse:
        method = self.saved_methods.get(spm)
        if method is None or method["customer_uid"] != uid:
            return self._not_found("saved payment method")
        del self.saved_methods[spm]
        return FakeResponse(204)

    @route("PUT", "/api/customers/{uid}/default-payment-method")
    def set_default(self, request: FakeRequest, uid: str) -> FakeResponse:
        data = self._body(request, {"saved_payment_method_uid": (str, True)})
        if uid not in self.customers:
            return self._not_found("customer")
        target = self.saved_methods.get(data["saved_payment_method_uid"])
        if target is None or target["customer_uid"] != uid:
            return self._not_found("saved payment method")
        for method in self._methods_of(uid):
            method["is_default"] = method is target
        return json_response(self._customer_view(self.customers[uid]))

    @route("POST", "/api/saved-payment-methods/import")
    def import_payment_methods(self, request: FakeRequest) -> FakeResponse:
        data = self._body(request, {"items": (list, True)})
        item_schema = {"customer_uid": (str, True), "payment_method": (_SAVED_METHOD, True)}
        imported, failed = [], []
        for index, item in enumerate(data["items"]):
            try:
                _check(item, item_schema, f"items[{index}]")
                if item["customer_uid"] not in self.customers:
                    raise LookupError("customer not found")
                imported.append(
                    self._method_view(
                        self._save(item["customer_uid"], item["payment_method"], imported=True),
                        with_token=False,
                    )
                )
            except (_Invalid, LookupError) as exc:
                failed.append(
                    {
                        "index": index,
                        "code": "not_found" if isinstance(exc, LookupError) else "validation_error",
                        "message": str(exc).strip("'\""),
                    }
                )
            except _Expired:
                failed.append({"index": index, "code": "expired_card", "message": "the card has expired"})
        return json_response({"imported": imported, "failed": failed})

    # -- payments ------------------------------------------------------------------------
    def _payment_view(self, payment: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in payment.items() if not k.startswith("_")}

    def _resolve_method(self, pm: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """``(kind, record, sanitized echo)`` for a payment's payment_method."""
        ptype = pm["payment_method_type"]
        if ptype in ("wallet_credit", "wallet_ach"):
            if set(pm) != {"payment_method_type", "wallet"} or not pm.get("wallet"):
                raise _Invalid("a wallet payment_method holds exactly a wallet object")
            method = self.saved_methods.get(pm["wallet"]["saved_payment_method_uid"])
            if method is None:
                raise LookupError("saved payment method not found")
            if ptype != f"wallet_{method['type']}":
                raise _Invalid(f"saved payment method is {method['type']}, not {ptype}")
            return method["type"], method, {"payment_method_type": ptype, "wallet": dict(pm["wallet"])}
        if (
            ptype in ("credit", "ach")
            and isinstance(pm.get(ptype), dict)
            and set(pm) == {"payment_method_type", ptype}
        ):
            record = self.proxy_tokens.get(pm[ptype]["fingerprint"])
            if (
                record is None
                or record["type"] != ptype
                or time.time() - record["created"] > self.PROXY_TOKEN_TTL
            ):
                raise _TokenRefused()
            echo = {k: v for k, v in record["details"].items() if k != "card_id"}
            return ptype, {**record, "status": "active"}, {"payment_method_type": ptype, ptype: echo}
        raise _Invalid("unsupported payment_method_type")

    @route("POST", "/api/payments")
    def validate_payment(self, request: FakeRequest) -> FakeResponse:
        def validate() -> FakeResponse:
            data = self._body(request, _PAYMENT)
            if data["base_amount"] <= 0 or data.get("tax_amount", 0) < 0:
                raise _Invalid("amounts must be positive integers of cents")
            if data["currency"] != "USD":
                raise _Invalid("this payment account only accepts USD")
            try:
                kind, method, echo = self._resolve_method(data["payment_method"])
            except LookupError as exc:
                return self._not_found(str(exc).strip("'\"").replace(" not found", ""))
            except _TokenRefused:
                return self.error(400, "the proxynized token is unknown or expired", "invalid_payment_token")
            if method["status"] != "active":
                return self.error(402, f"the saved payment method is {method['status']}", "card_declined")
            tax = data.get("tax_amount", 0)
            fee = (
                self.ACH_FEE
                if kind == "ach"
                else ((data["base_amount"] + tax) * self.CREDIT_FEE_BPS + 5000) // 10000
            )
            payment = {
                "uid": _uid("pay"),
                "status": "validated",
                "base_amount": data["base_amount"],
                "tax_amount": tax,
                "processing_fee_amount": fee,
                "total_amount": data["base_amount"] + tax + fee,
                "refunded_amount": 0,
                "currency": data["currency"],
                "reference_id": data["reference_id"],
                "payment_method": echo,
                "transaction_id": None,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "_behaviour": method["behaviour"],
            }
            self.payments[payment["uid"]] = payment
            return json_response(self._payment_view(payment), 201)

        return self._replay(request, validate)

    @route("GET", "/api/payments/{uid}")
    def get_payment(self, request: FakeRequest, uid: str) -> FakeResponse:
        payment = self.payments.get(uid)
        return json_response(self._payment_view(payment)) if payment else self._not_found("payment")

    @route("POST", "/api/payments/{uid}/capture")
    def capture_payment(self, request: FakeRequest, uid: str) -> FakeResponse:
        def capture() -> FakeResponse:
            data = self._body(request, _CAPTURE)
            payment = self.payments.get(uid)
            if payment is None:
                return self._not_found("payment")
            if payment["status"] != "validated":
                return self.error(409, f"payment is {payment['status']}, not validated", "invalid_state")
            repeated = {k: payment[k] for k in _CAPTURE if k != "payment_method"}
            repeated["payment_method"] = payment["payment_method"]
            if payment["payment_method"]["payment_method_type"] in ("credit", "ach"):
                repeated["payment_method"] = data["payment_method"]  # the proxynized token, not echoed
            if {**data, "tax_amount": data.get("tax_amount", 0)} != repeated:
                raise _Invalid("capture must repeat exactly the validated amounts and payment method")
            behaviour = "decline" if self.faults.decline_all else payment["_behaviour"]
            if behaviour == "decline":
                payment["status"] = "failed"
                return self.error(402, "The card was declined.", "card_declined")
            if behaviour == "fail":
                payment["status"] = "failed"
                return self.error(402, "The processor could not complete the payment.", "processing_error")
            payment.update(
                status="completed",
                transaction_id=_uid("txn"),
                captured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            return json_response(self._payment_view(payment))

        return self._replay(request, capture)

    @route("POST", "/api/payments/{uid}/refund")
    def refund_payment(self, request: FakeRequest, uid: str) -> FakeResponse:
        def refund() -> FakeResponse:
            data = self._body(request, {"amount": (int, False)})
            payment = self.payments.get(uid)
            if payment is None:
                return self._not_found("payment")
            if payment["status"] not in ("completed", "partially_refunded"):
                return self.error(
                    409, f"payment is {payment['status']}; only completed payments refund", "invalid_state"
                )
            remaining = payment["base_amount"] + payment["tax_amount"] - payment["refunded_amount"]
            amount = data.get("amount", remaining)
            if not 0 < amount <= remaining:
                raise _Invalid(f"amount must be between 1 and {remaining}")
            payment["refunded_amount"] += amount
            payment["status"] = "refunded" if amount == remaining else "partially_refunded"
            return json_response(self._payment_view(payment))

        return self._replay(request, refund)

    # -- webhooks ------------------------------------------------------------------------
    @route("GET", "/api/webhooks/secret")
    def webhook_secret_endpoint(self, request: FakeRequest) -> FakeResponse:
        return json_response({"secret": self.webhook_secret})

    def sign(self, body: bytes, timestamp: int, secret: str | None = None) -> str:
        key = (secret or self.webhook_secret).encode("utf-8")
        return (
            "sha256="
            + hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
        )

    def webhook_delivery(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        timestamp: int | None = None,
        webhook_id: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """``(headers, body)`` of a delivery as Caselle would POST it (header names lower-cased)."""
        timestamp = int(time.time()) if timestamp is None else timestamp
        body = json.dumps(
            {
                "webhook_id": webhook_id or _uid("evt"),
                "event_type": event_type,
                "timestamp": timestamp,
                "data": data,
            }
        ).encode("utf-8")
        return {"content-type": "application/json", "x-webhook-signature": self.sign(body, timestamp)}, body

    def network_update(
        self,
        saved_payment_method_uid: str,
        *,
        exp_month: int | None = None,
        exp_year: int | None = None,
        last4: str | None = None,
        closed: bool = False,
    ) -> None:
        """Change a saved card (or close an account) as the network / updater would."""
        with self.lock:
            method = self.saved_methods[saved_payment_method_uid]
            details = method["details"]
            for key, value in (
                ("exp_month", exp_month),
                ("exp_year", exp_year),
                ("last4" if method["type"] == "credit" else "account_number_suffix", last4),
            ):
                if value is not None:
                    details[key] = value
            if closed:
                method["status"] = "closed"
            method["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def noc_delivery(
        self,
        customer_uid: str,
        saved_payment_method_uids: list[str],
        *,
        change_type: Any = _UNSET,
        **kwargs: Any,
    ) -> tuple[dict[str, str], bytes]:
        """A signed ``provider.noc`` naming the changed methods (``account_closed`` when closed)."""
        if change_type is _UNSET:
            closed = any(
                self.saved_methods.get(u, {}).get("status") == "closed" for u in saved_payment_method_uids
            )
            change_type = "account_closed" if closed else "updated"
        return self.webhook_delivery(
            "provider.noc",
            {
                "customer_uid": customer_uid,
                "change_type": change_type,
                "saved_payment_method_ids": list(saved_payment_method_uids),
            },
            **kwargs,
        )

    def payment_delivery(
        self, event_type: str, payment_uid: str, **kwargs: Any
    ) -> tuple[dict[str, str], bytes]:
        """A signed ``payment.*`` / ``provider.*`` event about a payment."""
        payment = self.payments[payment_uid]
        data = {
            "payment_uid": payment_uid,
            **{
                k: payment[k]
                for k in ("status", "reference_id", "base_amount", "total_amount", "refunded_amount")
            },
        }
        return self.webhook_delivery(event_type, data, **kwargs)


class _TokenRefused(Exception):
    pass


class _Expired(Exception):
    pass


FAKE = CaselleFake  # the fake of this module (used by VAULT_FAKE in the example shop)

caselle_fake = fake_fixture(CaselleFake)


def main(argv: list[str] | None = None) -> None:
    serve(CaselleFake, argv)


if __name__ == "__main__":
    main()
