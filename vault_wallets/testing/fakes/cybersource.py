"""A loopback fake of CyberSource's REST API: TMS v2, Payments v2, Transaction Details, Microform.

It authenticates like CyberSource (HTTP Signature over ``host date request-target [digest]
v-c-merchant-id``, the ``Digest`` of the body, and a ``Date`` within five minutes) and
answers a failure with the gateway's ``401 {"response": {"rmsg": "Authentication Failed"}}``.
TMS errors use ``{"errors": [{"type", "message", "details"}]}``; Payments errors
``{"submitTimeUtc", "status", "reason", "message", "details": [{"field", "reason"}]}``.

Test cards (any future expiry):

* 4242424242424242, 5555555555554444, 4111111111111111, 5454545454545454, 378282246310005,
  6011111111111117 — verify, vault and charge successfully;
* 4000000000000002 — verifies and vaults; charges are DECLINED (``PROCESSOR_DECLINED``);
* 4000000000001216 — verifies and vaults; charges are DECLINED with ``PROCESSOR_ERROR``;
* 4000000000000127 — the zero-amount verification is declined, so it cannot be vaulted
  (fake-only card, to exercise ``VerificationFailedError``).

Accounts: ``relaxed_address`` (default True) plays an account with relaxed requirements for
address data; set it False to play one that answers ``MISSING_FIELD`` to a transient-token
authorization without ``orderInformation.billTo``.  Transaction Details answer only requests that
accept ``application/hal+json`` (what the official SDK declares).

``/_fake/tokens`` plays Microform: it returns a *transient token* (a JWT-shaped string signed
by the fake, valid 15 minutes, single use) carrying the masked number, card type and expiry.
The fake keeps only bin, last4, length, card type, expiry and a fingerprint, never the number.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from vault_wallets.processors.cybersource import (
    BODY_METHODS,
    SIGNATURE_ALGORITHM,
    body_digest,
    decode_key,
    hmac_b64,
    parse_signature_header,
    signing_string,
    webhook_signature,
)
from vault_wallets.processors.money import format_major
from vault_wallets.testing.cards import AMEX, DINERS, DISCOVER, JCB, MASTERCARD, VISA, card_brand, luhn_ok
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

_INVALID_DATA = "Declined - One or more fields in the request contains invalid data"
_MISSING_FIELD = "Declined - The request is missing one or more fields"
#: billTo fields a card authorization needs on an account without relaxed address requirements.
_BILL_TO_REQUIRED = ("firstName", "lastName", "address1", "locality", "country", "email")
#: What the official SDK declares as Accept for Transaction Details (cybersource-rest-client-python
#: CyberSource/api/transaction_details_api.py); the fake refuses a request that does not accept it.
_HAL_JSON = "application/hal+json;charset=utf-8"
_DECLINE_MESSAGES = {
    "PROCESSOR_DECLINED": (
        "Decline - General decline of the card. No other information provided by the issuing bank."
    ),
    "PROCESSOR_ERROR": (
        "Error - Processor failure. Possible action: Wait a few minutes and resend the request."
    ),
    "EXPIRED_CARD": (
        "Decline - Expired card. You might also receive this if the expiration date you provided"
        " does not match the date the issuing bank has on file."
    ),
    "INVALID_ACCOUNT": "Decline - Invalid account number",
}
#: Transaction kind → Transaction Details application names.
_APPLICATIONS = {
    "authorization": ["ics_auth"],
    "sale": ["ics_auth", "ics_bill"],
    "capture": ["ics_bill"],
    "reversal": ["ics_auth_reversal"],
    "void": ["ics_void"],
    "refund": ["ics_credit"],
    "credit": ["ics_credit"],
}


def _now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _get(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


#: Card networks → TMS / Payments card type codes.
_CARD_TYPES = {VISA: "001", MASTERCARD: "002", AMEX: "003", DISCOVER: "004", DINERS: "005", JCB: "007"}


def _card_type(number: str) -> str:
    try:
        return _CARD_TYPES[card_brand(number)]
    except KeyError:
        raise ValueError("unsupported card network") from None


def _payment_id() -> str:
    """22 digits, like CyberSource's request ids."""
    return f"{int(time.time() * 1000):013d}{secrets.randbelow(10**9):09d}"


def _token_id() -> str:
    """32 upper-case hex digits, like TMS token ids."""
    return uuid.uuid4().hex.upper()


class CyberSourceFake(FakeServer):
    """CyberSource on loopback; see the module docstring."""

    name = "cybersource"
    title = "CyberSource REST API"

    #: The official SDKs' public sandbox sample credentials.
    MERCHANT_ID = "testrest"
    KEY_ID = "08c94330-f618-42a3-b09d-e1e43be5efda"
    SHARED_SECRET = "yBJxy6LjM2TmcPGu+GaJrHtkke25fPpUX+UY6/L/1tE="
    WEBHOOK_KEY_ID = "bf44c857-b182-bb05-e053-34b8d30a7a72"
    WEBHOOK_KEY = base64.b64encode(b"vault-wallets cybersource fake!!").decode("ascii")
    WEBHOOK_ID = "e339e8b1-d540-4efd-e053-8d588e0a2de5"
    DATE_TOLERANCE = 300  # seconds the Date header may be off
    TRANSIENT_TOKEN_TTL = 900

    DECLINE_CARDS = frozenset({"4000000000000002"})
    ERROR_CARDS = frozenset({"4000000000001216"})
    VERIFY_FAIL_CARDS = frozenset({"4000000000000127"})

    #: Keys private to the fake: card fingerprints and transient-token signatures.
    _IDENTIFIER_KEY = b"cybersource-fake instrument identifiers"
    _TOKEN_KEY = b"cybersource-fake transient tokens"

    def reset(self) -> None:
        super().reset()
        self.customers: dict[str, dict[str, Any]] = {}
        self.instruments: dict[str, dict[str, Any]] = {}
        self.identifiers: dict[str, dict[str, Any]] = {}
        self.addresses: dict[str, dict[str, Any]] = {}
        self.transient: dict[str, dict[str, Any]] = {}
        self.transactions: dict[str, dict[str, Any]] = {}
        # An account with "relaxed requirements for address data" takes an authorization without
        # billTo; without them (``relaxed_address = False``) a transient-token authorization must
        # carry the billTo fields below or is answered MISSING_FIELD.
        self.relaxed_address = True
        # Transaction Search finds a transaction only once it is indexed: seconds after it was
        # made before a search sees it (0: at once).
        self.search_lag = 0.0

    def describe(self) -> list[str]:
        return [
            f"HTTP Signature: v-c-merchant-id {self.MERCHANT_ID}, keyid {self.KEY_ID}, "
            f"shared secret {self.SHARED_SECRET}",
            f"webhook key: keyId {self.WEBHOOK_KEY_ID}, key {self.WEBHOOK_KEY}",
            f"OPTIONS: {self.account_options()!r}",
        ]

    processor_path = "vault_wallets.processors.cybersource.CyberSourceProcessor"
    standin_path = "/microform/bundle/v2/flex-microform.min.js"  # what the capture context names
    standin_file = "cybersource.js"

    def account_settings(self, **extra: Any) -> dict[str, Any]:
        """For the example shop: no fixed TARGET_ORIGINS, so the capture context names the page's
        own origin (open the shop at http://localhost:<port>: plain http is for localhost only),
        and no JS_SDK_URL: like CyberSource's, the fake's capture contexts name the library
        (the stand-in) and its SRI hash in ``ctx[0].data``."""
        settings = super().account_settings(**extra)
        settings["OPTIONS"].pop("TARGET_ORIGINS", None)
        settings["OPTIONS"].pop("JS_SDK_URL", None)
        return settings

    def standin_integrity(self) -> str:
        """The SRI hash of the stand-in library, as ``clientLibraryIntegrity`` carries it."""
        script = (Path(self.standin_dir) / self.standin_file).read_bytes()
        return "sha384-" + base64.b64encode(hashlib.sha384(script).digest()).decode("ascii")

    def account_options(self, **extra: Any) -> dict[str, Any]:
        """The account OPTIONS that point a ``CyberSourceProcessor`` at this fake."""
        return {
            "MERCHANT_ID": self.MERCHANT_ID,
            "KEY_ID": self.KEY_ID,
            "SHARED_SECRET": self.SHARED_SECRET,
            "BASE_URL": self.url,
            "WEBHOOK_KEYS": {self.WEBHOOK_KEY_ID: self.WEBHOOK_KEY},
            "TARGET_ORIGINS": ["http://localhost:8000"],
            **extra,
        }

    # -- errors ------------------------------------------------------------------------------
    def error(self, status: int, message: str, code: str = "") -> FakeResponse:
        if status == 401:
            return json_response({"response": {"rmsg": "Authentication Failed"}}, 401)
        kind = {400: "INVALID_REQUEST", 404: "NOT_FOUND", 405: "INVALID_REQUEST", 409: "CONFLICT"}.get(
            status, "SERVER_ERROR"
        )
        return json_response(
            {
                "submitTimeUtc": _now_utc(),
                "status": kind,
                "reason": (code or kind).upper(),
                "message": message,
            },
            status,
        )

    @staticmethod
    def _pts_error(reason: str, message: str, fields: list[str] = (), status: int = 400) -> FakeResponse:
        body: dict[str, Any] = {
            "submitTimeUtc": _now_utc(),
            "status": "INVALID_REQUEST",
            "reason": reason,
            "message": message,
        }
        if fields:
            body["details"] = [{"field": field, "reason": reason} for field in fields]
        return json_response(body, status)

    def _missing(self, fields: list[str]) -> FakeResponse:
        return self._pts_error("MISSING_FIELD", _MISSING_FIELD, fields)

    def _invalid(self, fields: list[str], message: str = _INVALID_DATA) -> FakeResponse:
        return self._pts_error("INVALID_DATA", message, fields)

    @staticmethod
    def _tms_error(status: int, kind: str, message: str, names: list[str] = ()) -> FakeResponse:
        error: dict[str, Any] = {"type": kind, "message": message}
        if names:
            error["details"] = [{"name": name, "location": "body"} for name in names]
        return json_response({"errors": [error]}, status)

    def _tms_not_found(self) -> FakeResponse:
        return self._tms_error(404, "notFound", "Token not found")

    # -- authentication ----------------------------------------------------------------------
    def authenticate(self, request: FakeRequest) -> FakeResponse | None:
        if self._signature_problem(request):
            return self.error(401, "Authentication Failed")
        return None

    def _signature_problem(self, request: FakeRequest) -> str:
        """Why the request's HTTP Signature is not valid, or ``""``."""
        if request.header("v-c-merchant-id") != self.MERCHANT_ID:
            return "merchant"
        try:
            sent = parsedate_to_datetime(request.header("date")).timestamp()
        except (TypeError, ValueError, IndexError):
            return "date"
        if abs(time.time() - sent) > self.DATE_TOLERANCE:
            return "date skew"
        params = parse_signature_header(request.header("signature"))
        names = params.get("headers", "").split()
        required = {"host", "date", "request-target", "v-c-merchant-id"}
        if request.method in BODY_METHODS:
            required.add("digest")
            if request.header("digest") != body_digest(request.body):
                return "digest"
        if params.get("keyid") != self.KEY_ID or params.get("algorithm") != SIGNATURE_ALGORITHM:
            return "key"
        if not required <= set(names):
            return "signed headers"
        values = {name: request.header(name) for name in names}
        values["request-target"] = f"{request.method.lower()} {request.target}"
        expected = hmac_b64(decode_key(self.SHARED_SECRET), signing_string(values, names).encode("utf-8"))
        if not hmac.compare_digest(expected.encode(), params.get("signature", "").encode("utf-8", "replace")):
            return "signature"
        return ""

    # -- Microform ---------------------------------------------------------------------------
    def _sign_jwt(self, claims: dict[str, Any]) -> str:
        signing_input = ".".join(
            (
                _b64url(json.dumps({"kid": "fake", "alg": "HS256"}).encode()),
                _b64url(json.dumps(claims, separators=(",", ":")).encode()),
            )
        )
        signature = hmac.new(self._TOKEN_KEY, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(signature)}"

    def tokenize_card(
        self, number: str, exp_month: int, exp_year: int, cvc: str = "", holder_name: str = ""
    ) -> str:
        number = number.replace(" ", "").replace("-", "")
        if not (number.isdigit() and 13 <= len(number) <= 19 and luhn_ok(number)):
            raise ValueError("invalid card number")
        if not 1 <= int(exp_month) <= 12:
            raise ValueError("invalid expiration month")
        exp_year = int(exp_year) + (2000 if int(exp_year) < 100 else 0)
        behaviour = (
            "decline"
            if number in self.DECLINE_CARDS
            else "error"
            if number in self.ERROR_CARDS
            else "verify_fail"
            if number in self.VERIFY_FAIL_CARDS
            else "ok"
        )
        fingerprint = int.from_bytes(
            hmac.new(self._IDENTIFIER_KEY, number.encode(), hashlib.sha256).digest()[:8], "big"
        )
        card = {
            "identifier": f"70{fingerprint % 10**17:017d}",
            "type": _card_type(number),
            "bin": number[:6],
            "last4": number[-4:],
            "length": len(number),
            "behaviour": behaviour,
            "exp_month": int(exp_month),
            "exp_year": exp_year,
        }
        now = int(time.time())
        jti = _token_id()
        with self.lock:
            self.transient[jti] = dict(card, expires=now + self.TRANSIENT_TOKEN_TTL, used=False)
        masked = card["bin"] + "X" * (card["length"] - 10) + card["last4"]
        return self._sign_jwt(
            {
                "iss": "Flex/08",
                "iat": now,
                "exp": now + self.TRANSIENT_TOKEN_TTL,
                "type": "mf-2.0.0",
                "jti": jti,
                "content": {
                    "paymentInformation": {
                        "card": {
                            "number": {
                                "detectedCardTypes": [card["type"]],
                                "maskedValue": masked,
                                "bin": card["bin"],
                            },
                            "expirationMonth": {"value": f"{card['exp_month']:02d}"},
                            "expirationYear": {"value": f"{exp_year:04d}"},
                        }
                    }
                },
            }
        )

    def _verify_jwt(self, jwt: str) -> dict[str, Any] | None:
        """The claims of a JWT this fake signed and that has not expired, else None."""
        try:
            signing_input, _, signature = str(jwt).rpartition(".")
            expected = _b64url(hmac.new(self._TOKEN_KEY, signing_input.encode(), hashlib.sha256).digest())
            payload = signing_input.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return None
        if not hmac.compare_digest(expected, signature) or not isinstance(claims, dict):
            return None
        return claims if int(claims.get("exp", 0)) > time.time() else None

    @route("POST", "/_fake/standin/flex/v2/tokens")
    def _standin_tokens(self, request: FakeRequest) -> FakeResponse:
        """Microform's ``createToken`` (stand-in wire): the capture context must be this fake's,
        unexpired, and name the calling page's ``Origin`` in ``targetOrigins``."""
        def failure(status: int, reason: str, message: str, location: str = "") -> FakeResponse:
            details = [{"location": location, "message": message}] if location else []
            return standin_response({"reason": reason, "message": message, "details": details}, status)

        try:
            data = request.json()
        except ValueError:
            return failure(400, "CREATE_TOKEN_VALIDATION_PARAMS", "invalid JSON")
        claims = self._verify_jwt(str(data.get("captureContext", ""))) if isinstance(data, dict) else None
        if claims is None:
            return failure(401, "CREATE_TOKEN_UNABLE_TO_START", "the capture context is invalid or expired")
        origins = (_get(claims, "ctx") or [{}])[0].get("data", {}).get("targetOrigins") or []
        if request.header("Origin") not in origins:
            return failure(403, "CREATE_TOKEN_UNABLE_TO_START", "this page's origin is not in targetOrigins")
        try:
            token = self.tokenize_card(str(data.get("number", "")), int(data.get("expirationMonth") or 0),
                                       int(data.get("expirationYear") or 0), str(data.get("securityCode", "")))
        except ValueError as exc:
            location = "number" if "number" in str(exc) else "expirationMonth"
            return failure(400, "CREATE_TOKEN_VALIDATION_SERVERSIDE", str(exc), location)
        return standin_response({"token": token}, 201)

    def _take_transient(self, jwt: str) -> dict[str, Any] | None:
        """The card behind a transient token, consuming it; None if unknown, forged, expired or used."""
        try:
            signing_input, _, signature = str(jwt).rpartition(".")
            expected = _b64url(hmac.new(self._TOKEN_KEY, signing_input.encode(), hashlib.sha256).digest())
            payload = signing_input.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return None
        token = (
            self.transient.get(str(claims.get("jti"))) if hmac.compare_digest(expected, signature) else None
        )
        if token is None or token["used"] or token["expires"] < time.time():
            return None
        token["used"] = True
        return token

    @route("POST", "/microform/v2/sessions")
    def _sessions(self, request: FakeRequest) -> FakeResponse:
        data = request.json()
        origins = data.get("targetOrigins")
        if not isinstance(origins, list) or not origins:
            return self._missing(["targetOrigins"])
        if not all(
            isinstance(o, str) and (o.startswith("https://") or o.startswith("http://localhost"))
            for o in origins
        ):
            return self._invalid(["targetOrigins"])
        if not data.get("allowedCardNetworks"):
            return self._missing(["allowedCardNetworks"])
        now = int(time.time())
        token = self._sign_jwt(
            {
                "iss": "Flex API",
                "iat": now,
                "exp": now + 900,
                "jti": _token_id(),
                "flx": {"path": "/flex/v2/tokens", "origin": self.url},
                "ctx": [
                    {
                        "type": "mf-2.0.0",
                        "data": {
                            "targetOrigins": origins,
                            "allowedCardNetworks": data["allowedCardNetworks"],
                            "clientLibrary": f"{self.url}/microform/bundle/v2/flex-microform.min.js",
                            "clientLibraryIntegrity": self.standin_integrity(),
                            "mfOrigin": self.url,
                        },
                    }
                ],
            }
        )
        return FakeResponse(201, token, {"Content-Type": "application/jwt; charset=utf-8"})

    # -- TMS views ---------------------------------------------------------------------------
    def _identifier_view(self, identifier: dict[str, Any]) -> dict[str, Any]:
        href = f"/tms/v1/instrumentidentifiers/{identifier['id']}"
        return {
            "_links": {"self": {"href": href}, "paymentInstruments": {"href": f"{href}/paymentinstruments"}},
            "id": identifier["id"],
            "object": "instrumentIdentifier",
            "state": identifier["state"],
            "card": {"number": identifier["bin"] + "X" * (identifier["length"] - 10) + identifier["last4"]},
            "metadata": {"creator": self.MERCHANT_ID},
        }

    def _instrument_view(self, instrument: dict[str, Any]) -> dict[str, Any]:
        customer = self.customers[instrument["customer"]]
        identifier = self.identifiers[instrument["identifier"]]
        href = f"/tms/v2/customers/{customer['id']}/payment-instruments/{instrument['id']}"
        view = {
            "_links": {"self": {"href": href}, "customer": {"href": f"/tms/v2/customers/{customer['id']}"}},
            "id": instrument["id"],
            "object": "paymentInstrument",
            "default": customer["default_instrument"] == instrument["id"],
            "state": instrument["state"],
            "card": {
                "expirationMonth": f"{instrument['exp_month']:02d}",
                "expirationYear": f"{instrument['exp_year']:04d}",
                "type": identifier["type"],
            },
            "instrumentIdentifier": {"id": identifier["id"]},
            "metadata": {"creator": self.MERCHANT_ID},
            "_embedded": {"instrumentIdentifier": self._identifier_view(identifier)},
        }
        if instrument["bill_to"]:
            view["billTo"] = dict(instrument["bill_to"])
        return view

    def _address_view(self, address: dict[str, Any]) -> dict[str, Any]:
        customer = self.customers[address["customer"]]
        return {
            "_links": {
                "self": {"href": f"/tms/v2/customers/{customer['id']}/shipping-addresses/{address['id']}"},
                "customer": {"href": f"/tms/v2/customers/{customer['id']}"},
            },
            "id": address["id"],
            "default": customer["default_address"] == address["id"],
            "shipTo": dict(address["ship_to"]),
            "metadata": {"creator": self.MERCHANT_ID},
        }

    def _customer_view(self, customer: dict[str, Any]) -> dict[str, Any]:
        href = f"/tms/v2/customers/{customer['id']}"
        view: dict[str, Any] = {
            "_links": {
                "self": {"href": href},
                "paymentInstruments": {"href": f"{href}/payment-instruments"},
                "shippingAddress": {"href": f"{href}/shipping-addresses"},
            },
            "id": customer["id"],
            "buyerInformation": dict(customer["buyer"]),
            "metadata": {"creator": self.MERCHANT_ID},
        }
        if customer["reference"]:
            view["clientReferenceInformation"] = dict(customer["reference"])
        if customer["defined"]:
            view["merchantDefinedInformation"] = [dict(item) for item in customer["defined"]]
        embedded = {}
        if customer["default_instrument"]:
            view["defaultPaymentInstrument"] = {"id": customer["default_instrument"]}
            embedded["defaultPaymentInstrument"] = self._instrument_view(
                self.instruments[customer["default_instrument"]]
            )
        if customer["default_address"]:
            view["defaultShippingAddress"] = {"id": customer["default_address"]}
            embedded["defaultShippingAddress"] = self._address_view(
                self.addresses[customer["default_address"]]
            )
        if embedded:
            view["_embedded"] = embedded
        return view

    def _page(self, request: FakeRequest, items: list[dict[str, Any]], key: str, href: str) -> FakeResponse:
        try:
            offset, limit = int(request.query.get("offset", 0)), int(request.query.get("limit", 20))
        except ValueError:
            offset, limit = -1, -1
        bad = [name for name, ok in (("offset", offset >= 0), ("limit", 1 <= limit <= 100)) if not ok]
        if bad:
            return self._tms_error(400, "invalidFields", "Invalid paging parameters", bad)
        page = items[offset : offset + limit]
        last = max(0, (len(items) - 1) // limit * limit)
        links = {
            "self": {"href": f"{href}?offset={offset}&limit={limit}"},
            "first": {"href": f"{href}?offset=0&limit={limit}"},
            "last": {"href": f"{href}?offset={last}&limit={limit}"},
        }
        if offset + limit < len(items):
            links["next"] = {"href": f"{href}?offset={offset + limit}&limit={limit}"}
        if offset:
            links["prev"] = {"href": f"{href}?offset={max(0, offset - limit)}&limit={limit}"}
        body: dict[str, Any] = {
            "_links": links,
            "offset": offset,
            "limit": limit,
            "count": len(page),
            "total": len(items),
        }
        if page:
            body["_embedded"] = {key: page}
        return json_response(body)

    # -- TMS: customers ----------------------------------------------------------------------
    def _customer_fields(self, data: dict[str, Any], customer: dict[str, Any]) -> FakeResponse | None:
        """Validate and apply the writable customer fields; a TMS 400 if invalid."""
        buyer = data.get("buyerInformation") or {}
        bad = []
        if "merchantCustomerID" in buyer and len(str(buyer["merchantCustomerID"])) > 100:
            bad.append("buyerInformation.merchantCustomerID")
        if buyer.get("email") and "@" not in str(buyer["email"]):
            bad.append("buyerInformation.email")
        defined = data.get("merchantDefinedInformation")
        if defined is not None and (
            not isinstance(defined, list)
            or any(
                not isinstance(d, dict) or d.get("name") not in {"data1", "data2", "data3", "data4"}
                for d in defined
            )
        ):
            bad.append("merchantDefinedInformation.name")
        if bad:
            return self._tms_error(400, "invalidFields", "One or more fields are invalid", bad)
        customer["buyer"].update(
            {k: str(v) for k, v in buyer.items() if k in ("merchantCustomerID", "email")}
        )
        if isinstance(data.get("clientReferenceInformation"), dict):
            customer["reference"] = {"code": str(data["clientReferenceInformation"].get("code", ""))}
        if defined is not None:
            customer["defined"] = [{"name": d["name"], "value": str(d.get("value", ""))} for d in defined]
        default = _get(data, "defaultPaymentInstrument.id")
        if default is not None:
            if self.instruments.get(default, {}).get("customer") != customer["id"]:
                return self._tms_error(
                    400, "invalidFields", "Invalid payment instrument", ["defaultPaymentInstrument.id"]
                )
            customer["default_instrument"] = default
        return None

    @staticmethod
    def _customer_record() -> dict[str, Any]:
        return {
            "id": _token_id(),
            "buyer": {},
            "reference": {},
            "defined": [],
            "default_instrument": "",
            "default_address": "",
        }

    @route("POST", "/tms/v2/customers")
    def _create_customer(self, request: FakeRequest) -> FakeResponse:
        data = request.json()
        customer = self._customer_record()
        problem = self._customer_fields(
            {k: v for k, v in data.items() if k != "defaultPaymentInstrument"}, customer
        )
        if problem is not None:
            return problem
        self.customers[customer["id"]] = customer
        return json_response(self._customer_view(customer), 201)

    @route("GET", "/tms/v2/customers/{customer_id}")
    def _get_customer(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        customer = self.customers.get(customer_id)
        return json_response(self._customer_view(customer)) if customer else self._tms_not_found()

    @route("PATCH", "/tms/v2/customers/{customer_id}")
    def _patch_customer(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        customer = self.customers.get(customer_id)
        if customer is None:
            return self._tms_not_found()
        return self._customer_fields(request.json(), customer) or json_response(self._customer_view(customer))

    @route("DELETE", "/tms/v2/customers/{customer_id}")
    def _delete_customer(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        if self.customers.pop(customer_id, None) is None:
            return self._tms_not_found()
        for store in (self.instruments, self.addresses):
            for key in [k for k, v in store.items() if v["customer"] == customer_id]:
                del store[key]
        self._forget_unused_identifiers()
        return FakeResponse(204)

    def _forget_unused_identifiers(self) -> None:
        """TMS deletes an instrument identifier no payment instrument uses any more."""
        used = {instrument["identifier"] for instrument in self.instruments.values()}
        for key in [k for k in self.identifiers if k not in used]:
            del self.identifiers[key]

    # -- TMS: payment instruments ------------------------------------------------------------
    def _owned(
        self, store: dict[str, dict[str, Any]], customer_id: str, item_id: str
    ) -> dict[str, Any] | None:
        item = store.get(item_id)
        return item if item is not None and item["customer"] == customer_id else None

    def _add_instrument(
        self,
        customer: dict[str, Any],
        identifier_id: str,
        exp_month: int,
        exp_year: int,
        bill_to: dict[str, Any],
        default: bool = False,
    ) -> dict[str, Any]:
        instrument = {
            "id": _token_id(),
            "customer": customer["id"],
            "identifier": identifier_id,
            "state": "ACTIVE",
            "exp_month": exp_month,
            "exp_year": exp_year,
            "bill_to": bill_to,
        }
        self.instruments[instrument["id"]] = instrument
        if default or not customer["default_instrument"]:  # the first one is the default
            customer["default_instrument"] = instrument["id"]
        return instrument

    def _identifier_for(self, card: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The instrument identifier of a card number (TMS returns the same one for the same number)."""
        identifier = self.identifiers.get(card["identifier"])
        if identifier is not None:
            return identifier, False
        identifier = {
            "id": card["identifier"],
            "state": "ACTIVE",
            **{k: card[k] for k in ("type", "bin", "last4", "length", "behaviour")},
        }
        self.identifiers[identifier["id"]] = identifier
        return identifier, True

    @route("POST", "/tms/v2/customers/{customer_id}/payment-instruments")
    def _create_instrument(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        customer = self.customers.get(customer_id)
        if customer is None:
            return self._tms_not_found()
        data = request.json()
        identifier = self.identifiers.get(str(_get(data, "instrumentIdentifier.id")))
        month, year = _get(data, "card.expirationMonth"), _get(data, "card.expirationYear")
        missing = [
            name
            for name, value in (
                ("instrumentIdentifier.id", _get(data, "instrumentIdentifier.id")),
                ("card.expirationMonth", month),
                ("card.expirationYear", year),
            )
            if _blank(value)
        ]
        if missing:
            return self._tms_error(400, "missingFields", "One or more fields are missing", missing)
        if (
            identifier is None
            or not str(month).isdigit()
            or not str(year).isdigit()
            or not 1 <= int(month) <= 12
        ):
            return self._tms_error(
                400,
                "invalidFields",
                "One or more fields are invalid",
                ["instrumentIdentifier.id" if identifier is None else "card.expirationMonth"],
            )
        instrument = self._add_instrument(
            customer,
            identifier["id"],
            int(month),
            int(year),
            dict(data.get("billTo") or {}),
            bool(data.get("default")),
        )
        return json_response(self._instrument_view(instrument), 201)

    def _list_owned(self, request: FakeRequest, customer_id: str, kind: str) -> FakeResponse:
        store, view, key = self._children[kind]
        if customer_id not in self.customers:
            return self._tms_not_found()
        items = [view(item) for item in store.values() if item["customer"] == customer_id]
        return self._page(request, items, key, f"/tms/v2/customers/{customer_id}/{kind}")

    def _get_owned(self, customer_id: str, item_id: str, kind: str) -> FakeResponse:
        store, view, _key = self._children[kind]
        item = self._owned(store, customer_id, item_id)
        return json_response(view(item)) if item else self._tms_not_found()

    @property
    def _children(self) -> dict[str, tuple[dict[str, dict[str, Any]], Any, str]]:
        return {
            "payment-instruments": (self.instruments, self._instrument_view, "paymentInstruments"),
            "shipping-addresses": (self.addresses, self._address_view, "shippingAddresses"),
        }

    @route("GET", "/tms/v2/customers/{customer_id}/payment-instruments")
    def _list_instruments(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        return self._list_owned(request, customer_id, "payment-instruments")

    @route("GET", "/tms/v2/customers/{customer_id}/payment-instruments/{instrument_id}")
    def _get_instrument(self, request: FakeRequest, customer_id: str, instrument_id: str) -> FakeResponse:
        return self._get_owned(customer_id, instrument_id, "payment-instruments")

    @route("PATCH", "/tms/v2/customers/{customer_id}/payment-instruments/{instrument_id}")
    def _patch_instrument(self, request: FakeRequest, customer_id: str, instrument_id: str) -> FakeResponse:
        instrument = self._owned(self.instruments, customer_id, instrument_id)
        if instrument is None:
            return self._tms_not_found()
        data = request.json()
        month, year = _get(data, "card.expirationMonth"), _get(data, "card.expirationYear")
        if month is not None:
            if not str(month).isdigit() or not 1 <= int(month) <= 12:
                return self._tms_error(
                    400, "invalidFields", "One or more fields are invalid", ["card.expirationMonth"]
                )
            instrument["exp_month"] = int(month)
        if year is not None:
            if not str(year).isdigit():
                return self._tms_error(
                    400, "invalidFields", "One or more fields are invalid", ["card.expirationYear"]
                )
            instrument["exp_year"] = int(year)
        if isinstance(data.get("billTo"), dict):
            instrument["bill_to"] = dict(data["billTo"])
        if data.get("default") is True:
            self.customers[customer_id]["default_instrument"] = instrument_id
        return json_response(self._instrument_view(instrument))

    def _delete_owned(
        self, store: dict[str, dict[str, Any]], default_key: str, customer_id: str, item_id: str, label: str
    ) -> FakeResponse:
        """TMS refuses to delete a customer's default while the customer has others."""
        item = self._owned(store, customer_id, item_id)
        if item is None:
            return self._tms_not_found()
        customer = self.customers[customer_id]
        if customer[default_key] == item_id:
            if any(v["customer"] == customer_id and k != item_id for k, v in store.items()):
                return self._tms_error(
                    409, "conflict", f"Action cannot be performed as the {label} is the customers default"
                )
            customer[default_key] = ""
        del store[item_id]
        self._forget_unused_identifiers()
        return FakeResponse(204)

    @route("DELETE", "/tms/v2/customers/{customer_id}/payment-instruments/{instrument_id}")
    def _delete_instrument(self, request: FakeRequest, customer_id: str, instrument_id: str) -> FakeResponse:
        return self._delete_owned(
            self.instruments, "default_instrument", customer_id, instrument_id, "PaymentInstrument"
        )

    @route("GET", "/tms/v1/instrumentidentifiers/{identifier_id}")
    def _get_identifier(self, request: FakeRequest, identifier_id: str) -> FakeResponse:
        identifier = self.identifiers.get(identifier_id)
        return json_response(self._identifier_view(identifier)) if identifier else self._tms_not_found()

    @route("GET", "/tms/v1/instrumentidentifiers/{identifier_id}/paymentinstruments")
    def _identifier_instruments(self, request: FakeRequest, identifier_id: str) -> FakeResponse:
        if identifier_id not in self.identifiers:
            return self._tms_not_found()
        items = [
            self._instrument_view(i) for i in self.instruments.values() if i["identifier"] == identifier_id
        ]
        return self._page(
            request,
            items,
            "paymentInstruments",
            f"/tms/v1/instrumentidentifiers/{identifier_id}/paymentinstruments",
        )

    # -- TMS: shipping addresses -------------------------------------------------------------
    def _ship_to(self, data: dict[str, Any]) -> tuple[dict[str, str] | None, FakeResponse | None]:
        ship_to = data.get("shipTo")
        if not isinstance(ship_to, dict):
            return None, self._tms_error(400, "missingFields", "One or more fields are missing", ["shipTo"])
        missing = [f"shipTo.{k}" for k in ("address1", "locality", "country") if _blank(ship_to.get(k))]
        if missing:
            return None, self._tms_error(400, "missingFields", "One or more fields are missing", missing)
        if len(str(ship_to["country"])) != 2:
            return None, self._tms_error(
                400, "invalidFields", "One or more fields are invalid", ["shipTo.country"]
            )
        return {k: str(v) for k, v in ship_to.items()}, None

    @route("POST", "/tms/v2/customers/{customer_id}/shipping-addresses")
    def _create_address(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        customer = self.customers.get(customer_id)
        if customer is None:
            return self._tms_not_found()
        data = request.json()
        ship_to, problem = self._ship_to(data)
        if problem is not None:
            return problem
        address = {"id": _token_id(), "customer": customer_id, "ship_to": ship_to}
        self.addresses[address["id"]] = address
        if data.get("default") or not customer["default_address"]:
            customer["default_address"] = address["id"]
        return json_response(self._address_view(address), 201)

    @route("GET", "/tms/v2/customers/{customer_id}/shipping-addresses")
    def _list_addresses(self, request: FakeRequest, customer_id: str) -> FakeResponse:
        return self._list_owned(request, customer_id, "shipping-addresses")

    @route("GET", "/tms/v2/customers/{customer_id}/shipping-addresses/{address_id}")
    def _get_address(self, request: FakeRequest, customer_id: str, address_id: str) -> FakeResponse:
        return self._get_owned(customer_id, address_id, "shipping-addresses")

    @route("PATCH", "/tms/v2/customers/{customer_id}/shipping-addresses/{address_id}")
    def _patch_address(self, request: FakeRequest, customer_id: str, address_id: str) -> FakeResponse:
        address = self._owned(self.addresses, customer_id, address_id)
        if address is None:
            return self._tms_not_found()
        data = request.json()
        if "shipTo" in data:
            ship_to, problem = self._ship_to(data)
            if problem is not None:
                return problem
            address["ship_to"] = ship_to
        if data.get("default") is True:
            self.customers[customer_id]["default_address"] = address_id
        return json_response(self._address_view(address))

    @route("DELETE", "/tms/v2/customers/{customer_id}/shipping-addresses/{address_id}")
    def _delete_address(self, request: FakeRequest, customer_id: str, address_id: str) -> FakeResponse:
        return self._delete_owned(
            self.addresses, "default_address", customer_id, address_id, "ShippingAddress"
        )

    # -- Payments ----------------------------------------------------------------------------
    @staticmethod
    def _amount(data: dict[str, Any], path: str) -> Decimal | None:
        try:
            value = Decimal(str(_get(data, path)).strip())
        except InvalidOperation:
            return None
        return (
            value if value.is_finite() and value >= 0 and value == value.quantize(Decimal("0.001")) else None
        )

    def _order(
        self,
        data: dict[str, Any],
        *,
        amount_path: str = "orderInformation.amountDetails.totalAmount",
        currency_path: str = "orderInformation.amountDetails.currency",
        positive: bool = True,
        default_currency: str = "",
    ) -> tuple[Decimal, str] | FakeResponse:
        currency = str(_get(data, currency_path) or default_currency).upper()
        missing = [
            path
            for path, value in ((amount_path, _get(data, amount_path)), (currency_path, currency))
            if _blank(value)
        ]
        if missing:
            return self._missing(missing)
        amount = self._amount(data, amount_path)
        if amount is None or (positive and amount <= 0):
            return self._invalid([amount_path])
        if not (len(currency) == 3 and currency.isalpha()):
            return self._invalid([currency_path])
        return amount, currency

    def _record(
        self,
        kind: str,
        amount: Decimal,
        currency: str,
        code: str,
        status: str,
        parent: str = "",
        **extra: Any,
    ) -> dict[str, Any]:
        transaction = {
            "id": _payment_id(),
            "kind": kind,
            "amount": amount,
            "currency": currency,
            "code": code,
            "status": status,
            "parent": parent,
            "children": [],
            "captured": Decimal(0),
            "refunded": Decimal(0),
            "closed": False,
            "submitted": _now_utc(),
            "made_at": time.time(),
            "reconciliation": secrets.token_hex(6),
            **extra,
        }
        self.transactions[transaction["id"]] = transaction
        if parent:
            self.transactions[parent]["children"].append(transaction["id"])
        return transaction

    def _decide(self, identifier: dict[str, Any], exp: tuple[int, int], amount: Decimal, state: str) -> str:
        """``""`` to approve, else the DECLINED reason."""
        if state == "CLOSED" or identifier["state"] == "CLOSED":
            return "INVALID_ACCOUNT"
        month, year = exp
        if (year, month) < (date.today().year, date.today().month):
            return "EXPIRED_CARD"
        behaviour = identifier["behaviour"]
        if amount == 0:
            return "PROCESSOR_DECLINED" if behaviour == "verify_fail" else ""
        if self.faults.decline_all or behaviour in ("decline", "verify_fail"):
            return "PROCESSOR_DECLINED"
        return "PROCESSOR_ERROR" if behaviour == "error" else ""

    def _links(self, transaction: dict[str, Any]) -> dict[str, Any]:
        collection = {
            "authorization": "payments",
            "sale": "payments",
            "capture": "captures",
            "reversal": "reversals",
            "void": "voids",
            "refund": "refunds",
            "credit": "credits",
        }[transaction["kind"]]
        base = f"/pts/v2/{collection}/{transaction['id']}"
        links: dict[str, Any] = {"self": {"method": "GET", "href": base}}
        if transaction.get("declined"):
            return links
        if transaction["kind"] == "authorization":
            links["authReversal"] = {"method": "POST", "href": f"{base}/reversals"}
            links["capture"] = {"method": "POST", "href": f"{base}/captures"}
        if transaction["kind"] in ("sale", "capture", "refund", "credit"):
            links["void"] = {"method": "POST", "href": f"{base}/voids"}
        if transaction["kind"] in ("sale", "capture"):
            links["refund"] = {"method": "POST", "href": f"{base}/refunds"}
        return links

    def _payment_source(self, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | FakeResponse:
        """``(card, instrument)`` the payment uses (instrument empty for a transient token)."""
        jwt = _get(data, "tokenInformation.transientTokenJwt")
        customer_id = _get(data, "paymentInformation.customer.id")
        instrument_id = _get(data, "paymentInformation.paymentInstrument.id")
        if jwt:
            card = self._take_transient(jwt)
            if card is None:
                return self._invalid(["tokenInformation.transientTokenJwt"])
            return card, {}
        if not customer_id and not instrument_id:
            return self._missing(["paymentInformation.card.number"])
        customer = self.customers.get(str(customer_id)) if customer_id else None
        if customer_id and customer is None:
            return self._invalid(["paymentInformation.customer.id"])
        instrument = self.instruments.get(
            str(instrument_id or (customer or {}).get("default_instrument") or "")
        )
        if instrument is None or (customer is not None and instrument["customer"] != customer["id"]):
            return self._invalid(["paymentInformation.paymentInstrument.id"])
        identifier = self.identifiers[instrument["identifier"]]
        return dict(
            identifier,
            identifier=identifier["id"],
            exp_month=instrument["exp_month"],
            exp_year=instrument["exp_year"],
        ), instrument

    @route("POST", "/pts/v2/payments")
    def _payments(self, request: FakeRequest) -> FakeResponse:
        data = request.json()
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        if _blank(_get(data, "clientReferenceInformation.code")):
            return self._missing(["clientReferenceInformation.code"])
        order = self._order(data, positive=False)
        if isinstance(order, FakeResponse):
            return order
        amount, currency = order
        actions = _get(data, "processingInformation.actionList") or []
        token_types = _get(data, "processingInformation.actionTokenTypes") or []
        creates = "TOKEN_CREATE" in actions
        if creates and not _get(data, "tokenInformation.transientTokenJwt"):
            return self._invalid(["processingInformation.actionList"])
        if (
            creates
            and "paymentInstrument" in token_types
            and "customer" not in token_types
            and _get(data, "paymentInformation.customer.id") not in self.customers
        ):
            return self._invalid(["paymentInformation.customer.id"])
        if not self.relaxed_address and _get(data, "tokenInformation.transientTokenJwt"):
            bill_to = _get(data, "orderInformation.billTo") or {}
            required = list(_BILL_TO_REQUIRED)
            if str(bill_to.get("country") or "").upper() in ("US", "CA"):
                required += ["administrativeArea", "postalCode"]
            missing = [f"orderInformation.billTo.{name}" for name in required if _blank(bill_to.get(name))]
            if missing:
                return self._missing(missing)
        source = self._payment_source(data)
        if isinstance(source, FakeResponse):
            return source
        card, instrument = source
        identifier = self.identifiers.get(card["identifier"]) or dict(card, state="ACTIVE")
        reason = self._decide(
            identifier, (card["exp_month"], card["exp_year"]), amount, instrument.get("state", "ACTIVE")
        )
        capture = bool(_get(data, "processingInformation.capture"))
        code = str(_get(data, "clientReferenceInformation.code"))
        status = "DECLINED" if reason else "AUTHORIZED"
        transaction = self._record(
            "sale" if capture and not reason else "authorization",
            amount,
            currency,
            code,
            status,
            declined=bool(reason),
            customer=str(_get(data, "paymentInformation.customer.id") or ""),
        )
        amount_text = format_major(amount, currency)
        body: dict[str, Any] = {
            "_links": self._links(transaction),
            "clientReferenceInformation": {"code": code},
            "id": transaction["id"],
            "status": status,
            "submitTimeUtc": transaction["submitted"],
            "paymentInformation": {"card": {"type": card["type"]}, "tokenizedCard": {"type": card["type"]}},
            "paymentAccountInformation": {"card": {"type": card["type"]}},
        }
        if reason:
            body["errorInformation"] = {"reason": reason, "message": _DECLINE_MESSAGES[reason]}
            body["processorInformation"] = {"responseCode": "96" if reason == "PROCESSOR_ERROR" else "05"}
            return json_response(body, 201)
        body["reconciliationId"] = transaction["reconciliation"]
        body["processorInformation"] = {
            "approvalCode": f"{secrets.randbelow(10**6):06d}",
            "responseCode": "00",
            "transactionId": transaction["reconciliation"],
            "networkTransactionId": f"{secrets.randbelow(10**15):015d}",
            "avs": {"code": "Y", "codeRaw": "Y"},
        }
        amounts = {"authorizedAmount": amount_text, "currency": currency}
        if capture:
            amounts["totalAmount"] = amount_text
            transaction["captured"] = amount
        body["orderInformation"] = {"amountDetails": amounts}
        if creates:
            body["tokenInformation"] = self._create_tokens(data, card, token_types)
        if instrument:
            body["paymentInformation"].update(
                customer={"id": instrument["customer"]},
                paymentInstrument={"id": instrument["id"]},
                instrumentIdentifier={"id": instrument["identifier"], "state": "ACTIVE"},
            )
        return json_response(body, 201)

    def _create_tokens(
        self, data: dict[str, Any], card: dict[str, Any], token_types: list[str]
    ) -> dict[str, Any]:
        identifier, new = self._identifier_for(card)
        info: dict[str, Any] = {
            "instrumentIdentifierNew": new,
            "instrumentIdentifier": {"id": identifier["id"], "state": identifier["state"]},
        }
        if "customer" in token_types:
            customer = self._customer_record()
            self.customers[customer["id"]] = customer
            customer["buyer"] = {
                k: str(v)
                for k, v in (_get(data, "buyerInformation") or {}).items()
                if k in ("merchantCustomerID", "email")
            }
            info["customer"] = {"id": customer["id"]}
        else:
            customer = self.customers.get(str(_get(data, "paymentInformation.customer.id")))
        if "paymentInstrument" in token_types and customer is not None:
            bill_to = {k: str(v) for k, v in (_get(data, "orderInformation.billTo") or {}).items()}
            instrument = self._add_instrument(
                customer, identifier["id"], card["exp_month"], card["exp_year"], bill_to
            )
            info["paymentInstrument"] = {"id": instrument["id"]}
        return info

    def _follow_on(self, data: dict[str, Any]) -> str:
        code = _get(data, "clientReferenceInformation.code")
        return str(code) if not _blank(code) else ""

    def _parent(self, transaction_id: str, kinds: tuple[str, ...]) -> dict[str, Any] | None:
        transaction = self.transactions.get(transaction_id)
        return transaction if transaction is not None and transaction["kind"] in kinds else None

    def _not_found(self) -> FakeResponse:
        return self.error(404, "The requested resource does not exist", "NOT_FOUND")

    @route("POST", "/pts/v2/payments/{payment_id}/captures")
    def _capture(self, request: FakeRequest, payment_id: str) -> FakeResponse:
        payment = self._parent(payment_id, ("authorization",))
        if payment is None:
            return self._not_found()
        data = request.json()
        order = self._order(data)
        if isinstance(order, FakeResponse):
            return order
        amount, currency = order
        if payment["declined"]:
            return self._invalid(["id"], "Declined - The authorization was declined and cannot be captured")
        if payment["closed"]:
            return self._pts_error(
                "AUTH_ALREADY_REVERSED", "Declined - The authorization has already been reversed."
            )
        if currency != payment["currency"]:
            return self._invalid(["orderInformation.amountDetails.currency"])
        if payment["captured"] + amount > payment["amount"]:
            return self._pts_error(
                "EXCEEDS_AUTH_AMOUNT",
                "Declined - The requested amount exceeds the originally authorized amount.",
            )
        payment["captured"] += amount
        capture = self._record(
            "capture",
            amount,
            currency,
            self._follow_on(data) or payment["code"],
            "PENDING",
            parent=payment_id,
        )
        return json_response(
            {
                "_links": self._links(capture),
                "clientReferenceInformation": {"code": capture["code"]},
                "id": capture["id"],
                "orderInformation": {
                    "amountDetails": {"totalAmount": format_major(amount, currency), "currency": currency}
                },
                "reconciliationId": capture["reconciliation"],
                "status": "PENDING",
                "submitTimeUtc": capture["submitted"],
            },
            201,
        )

    @route("POST", "/pts/v2/payments/{payment_id}/reversals")
    def _reversal(self, request: FakeRequest, payment_id: str) -> FakeResponse:
        payment = self._parent(payment_id, ("authorization",))
        if payment is None:
            return self._not_found()
        data = request.json()
        order = self._order(
            data,
            amount_path="reversalInformation.amountDetails.totalAmount",
            currency_path="reversalInformation.amountDetails.currency",
            default_currency=payment["currency"],
        )
        if isinstance(order, FakeResponse):
            return order
        amount, _currency = order
        if payment["declined"]:
            return self._invalid(["id"], "Declined - The authorization was declined and cannot be reversed")
        if payment["closed"]:
            return self._pts_error(
                "AUTH_ALREADY_REVERSED", "Declined - The authorization has already been reversed."
            )
        if payment["captured"]:
            return self._invalid(["id"], "Declined - The authorization has already been captured")
        if amount != payment["amount"]:
            return self._invalid(
                ["reversalInformation.amountDetails.totalAmount"],
                "Declined - The reversal amount must equal the authorized amount",
            )
        payment["closed"] = True
        reversal = self._record(
            "reversal",
            amount,
            payment["currency"],
            self._follow_on(data) or payment["code"],
            "REVERSED",
            parent=payment_id,
        )
        return json_response(
            {
                "_links": self._links(reversal),
                "clientReferenceInformation": {"code": reversal["code"]},
                "id": reversal["id"],
                "orderInformation": {"amountDetails": {"currency": payment["currency"]}},
                "processorInformation": {"responseCode": "00"},
                "reconciliationId": reversal["reconciliation"],
                "reversalAmountDetails": {
                    "reversedAmount": format_major(amount, payment["currency"]),
                    "currency": payment["currency"],
                },
                "status": "REVERSED",
                "submitTimeUtc": reversal["submitted"],
            },
            201,
        )

    def _void(self, request: FakeRequest, target: dict[str, Any] | None) -> FakeResponse:
        if target is None:
            return self._not_found()
        if target.get("declined"):
            return self._invalid(["id"], "Declined - A declined transaction cannot be voided")
        if target["closed"] or target["refunded"]:
            return self._invalid(["id"], "Declined - The transaction has already been voided or refunded")
        target["closed"] = True
        if target["kind"] == "capture":
            self.transactions[target["parent"]]["captured"] -= target["amount"]
        void = self._record(
            "void",
            target["amount"],
            target["currency"],
            self._follow_on(request.json()) or target["code"],
            "VOIDED",
            parent=target["id"],
        )
        return json_response(
            {
                "_links": self._links(void),
                "clientReferenceInformation": {"code": void["code"]},
                "id": void["id"],
                "status": "VOIDED",
                "submitTimeUtc": void["submitted"],
                "voidAmountDetails": {
                    "voidAmount": format_major(target["amount"], target["currency"]),
                    "currency": target["currency"],
                },
            },
            201,
        )

    @route("POST", "/pts/v2/payments/{payment_id}/voids")
    def _void_payment(self, request: FakeRequest, payment_id: str) -> FakeResponse:
        if self._parent(payment_id, ("authorization",)) is not None:
            return self._invalid(["id"], "Declined - An authorization is reversed, not voided")
        return self._void(request, self._parent(payment_id, ("sale",)))

    @route("POST", "/pts/v2/captures/{capture_id}/voids")
    def _void_capture(self, request: FakeRequest, capture_id: str) -> FakeResponse:
        return self._void(request, self._parent(capture_id, ("capture",)))

    @route("POST", "/pts/v2/refunds/{refund_id}/voids")
    def _void_refund(self, request: FakeRequest, refund_id: str) -> FakeResponse:
        refund = self._parent(refund_id, ("refund",))
        if refund is not None and not refund["closed"]:
            self.transactions[refund["parent"]]["refunded"] -= refund["amount"]
        return self._void(request, refund)

    def _refund(self, request: FakeRequest, target: dict[str, Any] | None) -> FakeResponse:
        if target is None:
            return self._not_found()
        data = request.json()
        order = self._order(data)
        if isinstance(order, FakeResponse):
            return order
        amount, currency = order
        if target["closed"]:
            return self._invalid(["id"], "Declined - The transaction has been voided")
        if currency != target["currency"]:
            return self._invalid(["orderInformation.amountDetails.currency"])
        if target["refunded"] + amount > target["amount"]:
            return self._pts_error(
                "INVALID_AMOUNT",
                "Declined - The refund amount exceeds the captured amount",
                ["orderInformation.amountDetails.totalAmount"],
            )
        target["refunded"] += amount
        refund = self._record(
            "refund",
            amount,
            currency,
            self._follow_on(data) or target["code"],
            "PENDING",
            parent=target["id"],
        )
        return json_response(
            {
                "_links": self._links(refund),
                "clientReferenceInformation": {"code": refund["code"]},
                "id": refund["id"],
                "orderInformation": {"amountDetails": {"currency": currency}},
                "processorInformation": {"responseCode": "00"},
                "reconciliationId": refund["reconciliation"],
                "refundAmountDetails": {"refundAmount": format_major(amount, currency), "currency": currency},
                "status": "PENDING",
                "submitTimeUtc": refund["submitted"],
            },
            201,
        )

    @route("POST", "/pts/v2/payments/{payment_id}/refunds")
    def _refund_payment(self, request: FakeRequest, payment_id: str) -> FakeResponse:
        if self._parent(payment_id, ("authorization",)) is not None:
            return self._invalid(["id"], "Declined - Refund the capture of this authorization")
        # Production integrations also refund capture ids here; the documented path is /captures/{id}/refunds.
        return self._refund(request, self._parent(payment_id, ("sale", "capture")))

    @route("POST", "/pts/v2/captures/{capture_id}/refunds")
    def _refund_capture(self, request: FakeRequest, capture_id: str) -> FakeResponse:
        return self._refund(request, self._parent(capture_id, ("capture",)))

    @route("POST", "/pts/v2/credits")
    def _credit(self, request: FakeRequest) -> FakeResponse:
        data = request.json()
        order = self._order(data)
        if isinstance(order, FakeResponse):
            return order
        amount, currency = order
        source = self._payment_source(data)
        if isinstance(source, FakeResponse):
            return source
        credit = self._record(
            "credit", amount, currency, self._follow_on(data) or _token_id()[:12], "PENDING"
        )
        return json_response(
            {
                "_links": self._links(credit),
                "clientReferenceInformation": {"code": credit["code"]},
                "id": credit["id"],
                "creditAmountDetails": {"creditAmount": format_major(amount, currency), "currency": currency},
                "orderInformation": {"amountDetails": {"currency": currency}},
                "reconciliationId": credit["reconciliation"],
                "status": "PENDING",
                "submitTimeUtc": credit["submitted"],
            },
            201,
        )

    # -- Transaction Details -----------------------------------------------------------------
    @route("GET", "/tss/v2/transactions/{transaction_id}")
    def _transaction(self, request: FakeRequest, transaction_id: str) -> FakeResponse:
        if "application/hal+json" not in request.header("accept"):
            return self.error(406, f"Not Acceptable: this resource answers {_HAL_JSON}", "NOT_ACCEPTABLE")
        transaction = self.transactions.get(transaction_id)
        if transaction is None:
            return self._not_found()
        ok = "0" if transaction.get("declined") else "1"
        applications = [
            {
                "name": name,
                "reasonCode": "100" if ok == "1" else "203",
                "rCode": ok,
                "rFlag": "SOK" if ok == "1" else "DCARDREFUSED",
                "reconciliationId": transaction["reconciliation"],
            }
            for name in _APPLICATIONS[transaction["kind"]]
        ]
        root = transaction
        while root["parent"]:
            root = self.transactions[root["parent"]]
        amounts = {
            "totalAmount": format_major(transaction["amount"], transaction["currency"]),
            "currency": transaction["currency"],
        }
        if transaction["kind"] in ("authorization", "sale") and ok == "1":
            amounts["authorizedAmount"] = amounts["totalAmount"]
        related = (
            [transaction["parent"], *transaction["children"]]
            if transaction["parent"]
            else transaction["children"]
        )
        return json_response(
            {
                "id": transaction["id"],
                "rootId": root["id"],
                "reconciliationId": transaction["reconciliation"],
                "merchantId": self.MERCHANT_ID,
                "status": transaction["status"],
                "submitTimeUtc": transaction["submitted"],
                "applicationInformation": {
                    "status": transaction["status"],
                    "reasonCode": applications[0]["reasonCode"],
                    "rCode": ok,
                    "rFlag": applications[0]["rFlag"],
                    "applications": applications,
                },
                "clientReferenceInformation": {"code": transaction["code"]},
                "orderInformation": {"amountDetails": amounts},
                "_links": {
                    "self": {"method": "GET", "href": f"/tss/v2/transactions/{transaction['id']}"},
                    "relatedTransactions": [
                        {"method": "GET", "href": f"/tss/v2/transactions/{other}"} for other in related
                    ],
                },
            }
        )

    @route("POST", "/tss/v2/searches")
    def _search(self, request: FakeRequest) -> FakeResponse:
        """Transaction Search (``create_search``; the SDK sends and accepts
        ``application/json;charset=utf-8``; the answer is ``TssV2TransactionsPost201Response``).
        This stand-in understands one filter, ``clientReferenceInformation.code:<value>``, and the
        sort ``submitTimeUtc:desc`` / ``:asc``."""
        data = request.json()
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        query, sort = str(data.get("query") or ""), str(data.get("sort") or "submitTimeUtc:desc")
        field, _, value = query.partition(":")
        if field != "clientReferenceInformation.code" or not value or " " in value:
            return self._invalid(["query"])
        try:
            offset, limit = int(data.get("offset") or 0), int(data.get("limit") or 20)
        except (TypeError, ValueError):
            return self._invalid(["offset"])
        if not 1 <= limit <= 2500 or offset < 0:
            return self._invalid(["limit"])
        indexed_before = time.time() - self.search_lag
        with self.lock:
            found = [t for t in self.transactions.values()
                     if t["code"] == value and t["made_at"] <= indexed_before]
        found.sort(key=lambda t: t["made_at"], reverse=not sort.endswith(":asc"))
        page = found[offset:offset + limit]
        summaries = []
        for t in page:
            ok = "0" if t.get("declined") else "1"
            summaries.append({
                "id": t["id"],
                "submitTimeUtc": t["submitted"],
                "merchantId": self.MERCHANT_ID,
                "applicationInformation": {
                    "reasonCode": "100" if ok == "1" else "203",
                    "rCode": ok,
                    "rFlag": "SOK" if ok == "1" else "DCARDREFUSED",
                    "applications": [
                        {"name": name, "reasonCode": "100" if ok == "1" else "203", "rCode": ok,
                         "rFlag": "SOK" if ok == "1" else "DCARDREFUSED", "reconciliationId": t["reconciliation"]}
                        for name in _APPLICATIONS[t["kind"]]
                    ],
                },
                "clientReferenceInformation": {"code": t["code"]},
                "orderInformation": {"amountDetails": {"totalAmount": format_major(t["amount"], t["currency"]),
                                                       "currency": t["currency"]}},
                "paymentInformation": {"customer": {"customerId": t.get("customer", "")}},
                "_links": {"transactionDetail": {"href": f"/tss/v2/transactions/{t['id']}", "method": "GET"}},
            })
        search_id = str(uuid.uuid4())
        return json_response({
            "searchId": search_id,
            "save": bool(data.get("save")),
            "name": str(data.get("name") or ""),
            "timezone": str(data.get("timezone") or "UTC"),
            "query": query,
            "offset": offset,
            "limit": limit,
            "sort": sort,
            "count": len(summaries),
            "totalCount": len(found),
            "submitTimeUtc": _now_utc(),
            "_embedded": {"transactionSummaries": summaries},
            "_links": {"self": {"href": f"/tss/v2/searches/{search_id}", "method": "GET"}},
        }, 201)

    # -- the card network and webhooks --------------------------------------------------------
    def network_update(
        self,
        instrument_id: str,
        *,
        exp_month: int,
        exp_year: int,
        last4: str | None = None,
        closed: bool = False,
    ) -> str:
        """Change a vaulted card as the network would (network token life-cycle management).

        The change applies to the card, so every payment instrument of its instrument
        identifier sees the new expiry.  Returns the instrument identifier id.
        """
        with self.lock:
            identifier = self.identifiers[self.instruments[instrument_id]["identifier"]]
            for instrument in self.instruments.values():
                if instrument["identifier"] == identifier["id"]:
                    instrument.update(exp_month=int(exp_month), exp_year=int(exp_year))
                    if closed:
                        instrument["state"] = "CLOSED"
            if last4:
                identifier["last4"] = str(last4)[-4:]
            if closed:
                identifier["state"] = "CLOSED"
            return identifier["id"]

    def signed_delivery(
        self,
        body: dict[str, Any],
        *,
        key: str | None = None,
        key_id: str | None = None,
        timestamp_ms: int | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """``(headers, body)`` of a webhook POST as CyberSource sends it (header names lower-cased)."""
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        stamp = str(int(time.time() * 1000) if timestamp_ms is None else timestamp_ms)
        signature = webhook_signature(decode_key(key or self.WEBHOOK_KEY), stamp, payload)
        headers = {
            "content-type": "application/json",
            "v-c-event-type": str(body.get("eventType", "")),
            "v-c-webhook-id": self.WEBHOOK_ID,
            "v-c-organization-id": self.MERCHANT_ID,
            "v-c-product-name": str(body.get("productId", "")),
            "v-c-request-type": "NEW",
            "v-c-retry-count": str(body.get("retryNumber", 0)),
            "v-c-transaction-trace-id": str(body.get("transactionTraceId", "")),
            "v-c-signature": f"t={stamp};keyId={key_id or self.WEBHOOK_KEY_ID};sig={signature}",
        }
        return headers, payload

    def network_token_updated(self, instrument_id: str, **kwargs: Any) -> tuple[dict[str, str], bytes]:
        """The signed ``tms.networktoken.updated`` delivery for the card behind ``instrument_id``."""
        with self.lock:
            identifier = self.identifiers[self.instruments[instrument_id]["identifier"]]
        closed = identifier["state"] == "CLOSED"
        tokenized_card = _token_id()
        body = {
            "eventType": "tms.networktoken.updated",
            "webhookId": self.WEBHOOK_ID,
            "productId": "tokenManagement",
            "organizationId": self.MERCHANT_ID,
            "eventDate": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
            "transactionTraceId": f"{uuid.uuid4().hex}-0",
            "retryNumber": 0,
            "payload": {
                "data": {
                    "reason": "TOKEN_STATUS_UPDATED" if closed else "TOKEN_EXPIRY_UPDATED",
                    "id": _token_id(),
                    "type": "tokenizedCardUpdates",
                    "version": "1.0",
                    "_links": {
                        "tokenized-cards": [
                            {
                                "href": f"/tms/v2/tokenized-cards/{tokenized_card}",
                                "id": tokenized_card,
                                "state": "DELETED" if closed else "ACTIVE",
                            }
                        ],
                        "instrumentIdentifiers": [
                            {
                                "href": f"/tms/v1/instrumentidentifiers/{identifier['id']}",
                                "id": identifier["id"],
                            }
                        ],
                    },
                },
                "organizationId": self.MERCHANT_ID,
            },
            "requestType": "NEW",
        }
        return self.signed_delivery(body, **kwargs)


FAKE = CyberSourceFake  # the fake of this module (used by VAULT_FAKE in the example shop)

cybersource_fake = fake_fixture(CyberSourceFake)


def main(argv: list[str] | None = None) -> None:
    serve(CyberSourceFake, argv)


if __name__ == "__main__":
    main()
