"""CyberSource REST API: Token Management Service v2 (the vault) and Payments v2.

Authentication is CyberSource's *HTTP Signature* scheme, computed in the HTTP client's
``prepare`` hook over the final request bytes (see ``sign_request``).  The vault is TMS:
a customer token (``/tms/v2/customers``) holds payment instruments (our ``method_id`` and
``token``: the same TMS payment-instrument id) and shipping addresses.  A card reaches the
vault as a *transient token* from Microform (the browser library), which is exchanged in a
zero-amount authorization that also creates the payment instrument
(``processingInformation.actionList = ["TOKEN_CREATE"]``), so every vaulted card is
verified by its issuer.  The card's instrument identifier id (TMS's stable id for a card
number) is the fingerprint.

Facts this module cannot get from a single CyberSource call are kept in a small memo (an
in-process LRU, or the shop's cache given as ``REFERENCE_CACHE``):

* ``reference_id → customer id`` — TMS cannot look a customer up by ``merchantCustomerID``;
* ``payment id → kind, amount, currency, captures`` — reversals and refunds need the amount
  and the right follow-on endpoint.  On a miss the Transaction Details API
  (``GET /tss/v2/transactions/{id}``) answers instead.

See ``docs/processors/cybersource.md`` for settings and for what is inferred.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from email.utils import formatdate
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import requests

from .base import (
    CHARGE_AUTHORIZED,
    CHARGE_CAPTURED,
    CHARGE_DECLINED,
    CHARGE_FAILED,
    CHARGE_REFUNDED,
    CHARGE_VOIDED,
    EVENT_PAYMENT_METHOD_UPDATED,
    EVENT_UNKNOWN,
    METHOD_ACH,
    METHOD_ACTIVE,
    METHOD_CARD,
    METHOD_CLOSED,
    METHOD_EXPIRED,
    VERIFICATION_PENDING,
    VERIFICATION_SUCCESS,
    VERIFICATION_UNKNOWN,
    AddressData,
    AuthenticationError,
    BaseProcessor,
    ChargeRequest,
    ChargeResult,
    CheckoutRequest,
    CheckoutSession,
    ClientToken,
    CustomerData,
    CustomerRef,
    InvalidRequestError,
    MethodRef,
    NormalizedEvent,
    NotFoundError,
    ProcessorCustomer,
    ProcessorUnavailable,
    TemporaryTokenError,
    UnsupportedOperation,
    VaultedMethod,
    VaultRequest,
    VerificationFailedError,
    WebhookParseError,
    WebhookRequest,
    WebhookVerificationError,
)
from .http import ProcessorHTTPClient, parse_timeout, redact
from .money import to_major_string, to_minor

logger = logging.getLogger("vault_wallets.processors.cybersource")

SANDBOX_URL = "https://apitest.cybersource.com"
PRODUCTION_URL = "https://api.cybersource.com"

# --------------------------------------------------------------------------------------
# HTTP Signature (shared with the fake, which verifies what this module signs)
# --------------------------------------------------------------------------------------

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
SIGNED_WITH_BODY = ("host", "date", "request-target", "digest", "v-c-merchant-id")
SIGNED_WITHOUT_BODY = ("host", "date", "request-target", "v-c-merchant-id")
SIGNATURE_ALGORITHM = "HmacSHA256"
_SIGNATURE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def decode_key(value: Any) -> bytes:
    """Base64-decode a shared secret or webhook key; ``ValueError`` if it is not base64."""
    try:
        key = base64.b64decode(str(value).strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if not key:
        raise ValueError("empty key")
    return key


def hmac_b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def body_digest(body: bytes) -> str:
    """``Digest`` header value: base64 of the raw 32-byte SHA-256 of the body."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def signing_string(values: Mapping[str, str], names: Iterable[str]) -> str:
    """``name: value`` lines joined by ``\\n`` (no trailing newline), in ``names`` order."""
    return "\n".join(f"{name}: {values[name]}" for name in names)


def signed_header_names(method: str) -> tuple[str, ...]:
    return SIGNED_WITH_BODY if method.upper() in BODY_METHODS else SIGNED_WITHOUT_BODY


def sign_request(
    *,
    method: str,
    target: str,
    host: str,
    date: str,
    merchant_id: str,
    key_id: str,
    secret: bytes,
    body: bytes = b"",
) -> dict[str, str]:
    """The headers CyberSource's HTTP Signature scheme adds to one request.

    ``target`` is the path with its query string; ``secret`` the *decoded* shared secret.
    GET and DELETE carry no ``Digest`` and do not sign one.
    """
    names = signed_header_names(method)
    values = {
        "host": host,
        "date": date,
        "request-target": f"{method.lower()} {target}",
        "v-c-merchant-id": merchant_id,
    }
    headers = {"v-c-merchant-id": merchant_id, "Date": date, "Host": host}
    if "digest" in names:
        values["digest"] = headers["Digest"] = body_digest(body)
    signature = hmac_b64(secret, signing_string(values, names).encode("utf-8"))
    headers["Signature"] = (
        f'keyid="{key_id}", algorithm="{SIGNATURE_ALGORITHM}", '
        f'headers="{" ".join(names)}", signature="{signature}"'
    )
    return headers


def parse_signature_header(value: str) -> dict[str, str]:
    """``keyid="…", algorithm="…", headers="…", signature="…"`` → dict."""
    return dict(_SIGNATURE_PARAM.findall(value or ""))


def request_target(url: str) -> str:
    split = urlsplit(url)
    return (split.path or "/") + (f"?{split.query}" if split.query else "")


class HttpSignature:
    """The ``prepare`` hook: signs each prepared request over its final body bytes."""

    def __init__(self, merchant_id: str, key_id: str, secret: bytes, clock=time.time):
        self.merchant_id = merchant_id
        self.key_id = key_id
        self._secret = secret
        self.clock = clock

    def __repr__(self) -> str:
        return f"<HttpSignature merchant={self.merchant_id!r}>"

    def __call__(self, prepared: requests.PreparedRequest) -> None:
        body = prepared.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        prepared.headers.update(
            sign_request(
                method=prepared.method or "GET",
                target=request_target(prepared.url),
                host=urlsplit(prepared.url).netloc,
                date=formatdate(self.clock(), usegmt=True),
                merchant_id=self.merchant_id,
                key_id=self.key_id,
                secret=self._secret,
                body=body,
            )
        )


# --------------------------------------------------------------------------------------
# Webhook signature (``v-c-signature: t=…;keyId=…;sig=…``)
# --------------------------------------------------------------------------------------


def webhook_signature(key: bytes, timestamp: str, body: bytes) -> str:
    """base64(HMAC-SHA256(decoded key, ``t + "." + body``))."""
    return hmac_b64(key, timestamp.encode("ascii") + b"." + body)


def parse_webhook_signature(header: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in (header or "").strip().strip('"').split(";"):
        name, sep, value = part.strip().partition("=")  # partition: base64 padding keeps its '='
        if sep:
            fields[name.strip()] = value.strip()
    return fields


# --------------------------------------------------------------------------------------
# Small helpers (amounts: ``vault_wallets.processors.money``)
# --------------------------------------------------------------------------------------

#: TMS / Payments card type codes.
CARD_BRANDS = {
    "001": "visa",
    "002": "mastercard",
    "003": "amex",
    "004": "discover",
    "005": "diners",
    "006": "carte_blanche",
    "007": "jcb",
    "024": "maestro",
    "036": "cartes_bancaires",
    "042": "maestro",
    "054": "elo",
    "062": "unionpay",
}
#: merchantDefinedInformation names TMS accepts on a customer.
CUSTOMER_MDD_NAMES = frozenset({"data1", "data2", "data3", "data4"})
DEFAULT_CARD_NETWORKS = ("VISA", "MASTERCARD", "AMEX", "DISCOVER")
APPROVED = frozenset({"AUTHORIZED", "PARTIAL_AUTHORIZED"})
#: DECLINED reasons that are processor failures rather than the issuer's refusal.
FAILURE_REASONS = frozenset({"PROCESSOR_ERROR", "ISSUER_UNAVAILABLE", "PROCESSOR_TIMEOUT", "SYSTEM_ERROR"})
#: Top-level keys of a Payments answer kept in ``ChargeResult.raw`` (no card or token data).
_RESULT_KEYS = (
    "id",
    "status",
    "submitTimeUtc",
    "reconciliationId",
    "clientReferenceInformation",
    "errorInformation",
    "orderInformation",
    "processorInformation",
    "reversalAmountDetails",
    "voidAmountDetails",
    "refundAmountDetails",
    "creditAmountDetails",
)
_PAGE = 100  # TMS's maximum page size


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _approved(details: Any) -> set[str]:
    """The applications of a Transaction Details answer that succeeded (``rCode`` 1): ``ics_auth``,
    ``ics_bill``, ``ics_credit``, ``ics_auth_reversal``, ``ics_void``."""
    return {
        str(a.get("name"))
        for a in _dig(details, "applicationInformation", "applications") or []
        if isinstance(a, Mapping) and str(a.get("rCode", "1")) == "1"
    }


def _link_id(link: Any) -> str:
    if not isinstance(link, Mapping):
        return ""
    return str(link.get("id") or str(link.get("href") or "").rstrip("/").rpartition("/")[2])


def _split_name(name: str) -> tuple[str, str]:
    first, _, last = (name or "").strip().rpartition(" ")
    return (first, last) if first else (last, "")


def _address_fields(address: AddressData | None, name: str = "") -> dict[str, str]:
    """AddressData → TMS/Payments ``billTo``/``shipTo`` fields (empty ones left out)."""
    first, last = _split_name(name or (address.name if address else ""))
    fields = {"firstName": first, "lastName": last}
    if address is not None:
        fields.update(
            address1=address.line1,
            address2=address.line2,
            locality=address.city,
            administrativeArea=address.state,
            postalCode=address.postal_code,
            country=address.country.upper(),
        )
    return {key: value for key, value in fields.items() if value}


def _code(*candidates: str) -> str:
    """``clientReferenceInformation.code`` (required on authorizations, at most 50 characters)."""
    for candidate in candidates:
        if candidate:
            return str(candidate)[:50]
    return uuid.uuid4().hex


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _jwt_expiry(token: str) -> datetime | None:
    """The ``exp`` claim of a JWT, read without verifying it (only to tell the browser when it ends)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromtimestamp(int(claims["exp"]), tz=timezone.utc)
    except (IndexError, KeyError, TypeError, ValueError, OverflowError):
        return None


def _jwt_claims(token: str) -> dict[str, Any]:
    """A JWT's payload, decoded without verification (``{}`` when it is not one)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, TypeError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def error_message(body: Any, response: requests.Response) -> tuple[str, str]:
    """``(message, code)`` from any of CyberSource's three error shapes."""
    if not isinstance(body, Mapping):
        return "", ""
    errors = body.get("errors")
    if isinstance(errors, list):  # TMS: {"errors": [{"type", "message", "details": [{"name", "location"}]}]}
        parts, code = [], ""
        for error in errors:
            if not isinstance(error, Mapping):
                continue
            code = code or str(error.get("type") or "")
            names = [
                str(d.get("name"))
                for d in error.get("details") or []
                if isinstance(d, Mapping) and d.get("name")
            ]
            text = str(error.get("message") or error.get("type") or "")
            parts.append(f"{text} ({', '.join(names)})" if names else text)
        return "; ".join(p for p in parts if p), code
    gateway = body.get("response")
    if isinstance(gateway, Mapping):  # the gateway's 401: {"response": {"rmsg": "Authentication Failed"}}
        rmsg = gateway.get("rmsg")
        if isinstance(rmsg, str) and rmsg.startswith("{"):
            try:
                rmsg = json.loads(rmsg)
            except ValueError:
                pass
        if isinstance(rmsg, Mapping):
            return str(rmsg.get("error_description") or rmsg.get("error") or ""), str(rmsg.get("error") or "")
        return str(rmsg or ""), "authentication_failed"
    # Payments: {"submitTimeUtc", "status", "reason", "message", "details": [{"field", "reason"}]}
    info = body.get("errorInformation") if isinstance(body.get("errorInformation"), Mapping) else body
    details = [
        f"{d.get('field')}: {d.get('reason')}"
        for d in info.get("details") or []
        if isinstance(d, Mapping) and d.get("field")
    ]
    message = str(info.get("message") or "")
    if details:
        message = f"{message} ({'; '.join(details)})" if message else "; ".join(details)
    return message, str(info.get("reason") or body.get("status") or "")


# --------------------------------------------------------------------------------------
# Memo: facts CyberSource cannot answer in one call
# --------------------------------------------------------------------------------------


class _Memo:
    """A thread-safe LRU, or a front for a shared cache with ``get(key)``/``set(key, value)``/``delete(key)``.

    A shared cache that fails is treated as a miss (and logged): the memo is an optimisation
    and a fallback, never the only source of truth.
    """

    def __init__(self, prefix: str, backend: Any = None, size: int = 4096):
        self.prefix = prefix
        self.backend = backend
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def _call(self, operation: str, *args: Any) -> Any:
        try:
            return getattr(self.backend, operation)(*args)
        except Exception as exc:  # a cache outage must not stop a payment
            logger.warning("cybersource reference cache %s failed: %s", operation, type(exc).__name__)
            return None

    def _key(self, key: str) -> str:  # hashed: any cache backend accepts it, whatever the reference holds
        kind, _, value = key.partition(":")
        return f"{self.prefix}{kind}:{hashlib.sha256(value.encode('utf-8')).hexdigest()[:40]}"

    def get(self, key: str) -> Any:
        key = self._key(key)
        if self.backend is not None:
            return self._call("get", key)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def set(self, key: str, value: Any) -> None:
        key = self._key(key)
        if self.backend is not None:
            self._call("set", key, value)
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def delete(self, key: str) -> None:
        key = self._key(key)
        if self.backend is not None:
            self._call("delete", key)
            return
        with self._lock:
            self._items.pop(key, None)


# --------------------------------------------------------------------------------------
# The processor
# --------------------------------------------------------------------------------------

CUSTOMER = "/tms/v2/customers/{customer}"
INSTRUMENTS = CUSTOMER + "/payment-instruments"
INSTRUMENT = INSTRUMENTS + "/{instrument}"
ADDRESSES = CUSTOMER + "/shipping-addresses"
ADDRESS = ADDRESSES + "/{address}"
IDENTIFIER = "/tms/v1/instrumentidentifiers/{identifier}"
PAYMENTS = "/pts/v2/payments"
PAYMENT_ACTION = "/pts/v2/payments/{id}/{action}"
CAPTURE_ACTION = "/pts/v2/captures/{id}/{action}"
TRANSACTION = "/tss/v2/transactions/{id}"
#: Transaction Search (cybersource-rest-client-python CyberSource/api/search_transactions_api.py
#: ``create_search``: ``POST /tss/v2/searches``, Accept and Content-Type ``application/json;charset=utf-8``;
#: the answer is ``TssV2TransactionsPost201Response``: ``_embedded.transactionSummaries[]``).
SEARCHES = "/tss/v2/searches"
#: What a Transaction Search query may hold of ours unquoted (the query syntax is ``field:value``).
_SEARCHABLE = re.compile(r"^[A-Za-z0-9_.\-]{1,50}$")


class CyberSourceProcessor(BaseProcessor):
    """CyberSource (Visa Acceptance) REST: TMS v2 customers and Payments v2."""

    name = "cybersource"
    display_name = "CyberSource"
    supports_client_token = True
    supports_addresses = True
    required_options = ("MERCHANT_ID", "KEY_ID", "SHARED_SECRET")
    secret_options = ("SHARED_SECRET", "WEBHOOK_KEYS")
    webhook_secret_headers = ("v-c-signature",)
    #: ``payload.data`` and its ``_links`` name TMS tokens (tokenized cards, instrument
    #: identifiers, payment instruments) by ``id`` and in ``href`` paths.
    webhook_token_fields = ("id", "href")

    # -- configuration -------------------------------------------------------------------
    def check_options(self) -> list[str]:
        problems = super().check_options()
        if self.option("SHARED_SECRET"):
            try:
                decode_key(self.option("SHARED_SECRET"))
            except ValueError:
                problems.append(
                    "OPTIONS SHARED_SECRET must be the base64 shared secret from the Business Center"
                )
        try:
            self._webhook_keys()
        except ValueError as exc:
            problems.append(str(exc))
        return problems

    def _secrets(self) -> list[str]:
        keys = self.option("WEBHOOK_KEYS") or ()
        values = keys.values() if isinstance(keys, Mapping) else [keys] if isinstance(keys, str) else keys
        return [str(self.option("SHARED_SECRET") or ""), *(str(v) for v in values)]

    @cached_property
    def signer(self) -> HttpSignature:
        try:
            secret = decode_key(self.option("SHARED_SECRET", ""))
        except ValueError:
            raise AuthenticationError(
                "OPTIONS SHARED_SECRET is not a base64 shared secret",
                code="invalid_credentials",
                processor=self.name,
            ) from None
        return HttpSignature(str(self.option("MERCHANT_ID", "")), str(self.option("KEY_ID", "")), secret)

    @cached_property
    def http(self) -> ProcessorHTTPClient:
        self.signer  # noqa: B018 - fail early on a malformed secret
        return ProcessorHTTPClient(
            processor=self.name,
            base_url=self.option("BASE_URL") or SANDBOX_URL,
            timeout=parse_timeout(self.option("TIMEOUT")),
            retries=int(self.option("RETRIES", 2)),
            idempotency_headers=(),  # CyberSource REST has no idempotency key: POST/PATCH are never retried
            error_message=error_message,
            secrets=self._secrets,
            prepare=lambda prepared: self.signer(prepared),
        )

    @cached_property
    def _memo(self) -> _Memo:
        return _Memo(
            f"vault_wallets:cybersource:{self.option('MERCHANT_ID', '')}:", self.option("REFERENCE_CACHE")
        )

    # -- transport -----------------------------------------------------------------------
    def _call(
        self,
        method: str,
        route: str,
        *,
        params: Mapping[str, Any] | None = None,
        query=None,
        body: Any = None,
        accept: str = "",
        **kwargs,
    ) -> requests.Response:
        if not accept:
            # As the official SDK declares per operation (cybersource-rest-client-python
            # CyberSource/api/*_api.py): Payments (/pts/) and Transaction Details (/tss/) answer
            # HAL, TMS plain JSON.
            accept = (
                "application/hal+json;charset=utf-8"
                if route.startswith(("/pts/", "/tss/v2/transactions"))
                else "application/json;charset=utf-8"  # TMS, and Transaction Search (/tss/v2/searches)
            )
        headers = {"Accept": accept}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json;charset=utf-8"
        return self.http.request(
            method, route, path_params=params, query=query, data=data, headers=headers, **kwargs
        )

    def _problem(self, data: Any, fallback: str) -> tuple[str, str]:
        """CyberSource's ``(message, code)`` from a 2xx/400 body, credentials and card numbers removed."""
        message, code = error_message(data, None)
        return redact(message or fallback, self._secrets()), code

    def _json(self, method: str, route: str, **kwargs) -> dict[str, Any]:
        response = self._call(method, route, **kwargs)
        data = response.json() if response.content else {}
        if not isinstance(data, dict):
            raise ProcessorUnavailable(
                "CyberSource answered with an unexpected body",
                code="bad_response",
                http_status=response.status_code,
                processor=self.name,
            )
        return data

    def _collect(self, route: str, params: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
        """Every item of a TMS list (``offset``/``limit`` paging, items under ``_embedded[key]``)."""
        items: list[dict[str, Any]] = []
        while True:
            page = self._json("GET", route, params=params, query={"offset": len(items), "limit": _PAGE})
            batch = [item for item in _dig(page, "_embedded", key) or [] if isinstance(item, dict)]
            items.extend(batch)
            total = _int(page.get("total"))
            if not batch or total is None or len(items) >= total:
                return items

    # -- customers -----------------------------------------------------------------------
    def create_customer(self, data: CustomerData) -> ProcessorCustomer:
        """TMS cannot find a customer by ``merchantCustomerID``; the memo remembers the ids it created."""
        memo_key = f"customer:{data.reference_id}"
        known = self._memo.get(memo_key)
        if known:
            try:
                return self._customer(self._json("GET", CUSTOMER, params={"customer": known}))
            except NotFoundError:
                self._memo.delete(memo_key)
        created = self._customer(self._json("POST", "/tms/v2/customers", body=self._customer_body(data)))
        self._memo.set(memo_key, created.id)
        return created

    def update_customer(self, customer: CustomerRef, data: CustomerData) -> ProcessorCustomer:
        return self._customer(
            self._json("PATCH", CUSTOMER, params={"customer": customer.id}, body=self._customer_body(data))
        )

    def delete_customer(self, customer: CustomerRef) -> None:
        self._call("DELETE", CUSTOMER, params={"customer": customer.id}, expect_json=False)
        if customer.reference_id:
            self._memo.delete(f"customer:{customer.reference_id}")

    @staticmethod
    def _customer_body(data: CustomerData) -> dict[str, Any]:
        buyer = {"merchantCustomerID": data.reference_id}
        if data.email:
            buyer["email"] = data.email
        body: dict[str, Any] = {"buyerInformation": buyer}
        defined = [
            {"name": key, "value": str(value)}
            for key, value in (data.metadata or {}).items()
            if key in CUSTOMER_MDD_NAMES
        ]
        if defined:
            body["merchantDefinedInformation"] = defined
        return body

    def _customer(self, data: Mapping[str, Any]) -> ProcessorCustomer:
        if not data.get("id"):
            raise ProcessorUnavailable(
                "CyberSource answered without a customer id", code="bad_response", processor=self.name
            )
        raw = {
            key: data[key]
            for key in (
                "buyerInformation",
                "clientReferenceInformation",
                "merchantDefinedInformation",
                "metadata",
            )
            if key in data
        }
        return ProcessorCustomer(
            id=str(data["id"]),
            default_method_id=str(_dig(data, "defaultPaymentInstrument", "id") or ""),
            raw=raw,
        )

    # -- payment methods -------------------------------------------------------------------
    def vault_payment_method(self, request: VaultRequest) -> VaultedMethod:
        """Zero-amount authorization of the transient token that creates the payment instrument."""
        if request.method_type != METHOD_CARD:
            raise UnsupportedOperation(
                "CyberSource vaulting here takes Microform card tokens only", processor=self.name
            )
        if not request.temporary_token:
            raise TemporaryTokenError("no transient token was given", processor=self.name)
        currency = str(self.option("VERIFICATION_CURRENCY", "USD")).upper()
        order: dict[str, Any] = {
            "amountDetails": {"totalAmount": to_major_string(0, currency), "currency": currency}
        }
        # Accounts without "relaxed requirements for address data" refuse an authorization without
        # billTo (MISSING_FIELD): send everything the shop knows — the card holder's (or the
        # customer's) name, the customer's email and default address.
        address = request.billing_address
        name = request.holder_name or (address.name if address else "") or request.customer_name
        bill_to = _address_fields(address, name)
        if request.email:
            bill_to["email"] = request.email
        if bill_to:
            order["billTo"] = bill_to
        body = {
            "clientReferenceInformation": {
                "code": _code(request.idempotency_key, request.customer.reference_id)
            },
            "processingInformation": {
                "actionList": ["TOKEN_CREATE"],
                "actionTokenTypes": ["paymentInstrument", "instrumentIdentifier"],
                "capture": False,
            },
            "paymentInformation": {"customer": {"id": request.customer.id}},
            "orderInformation": order,
            "tokenInformation": {"transientTokenJwt": request.temporary_token},
        }
        response = self._call("POST", PAYMENTS, body=body, allow_statuses=(400,))
        data = response.json() if response.content else {}
        data = data if isinstance(data, dict) else {}
        message, code = self._problem(
            data, f"CyberSource answered {data.get('status') or response.status_code}"
        )
        if response.status_code == 400 or data.get("status") == "INVALID_REQUEST":
            names_token = any(
                str(d.get("field", "")).startswith("tokenInformation")
                for d in data.get("details") or []
                if isinstance(d, Mapping)
            )
            kind = TemporaryTokenError if names_token else InvalidRequestError
            if code == "MISSING_FIELD" and any(
                str(d.get("field", "")).startswith("orderInformation.billTo")
                for d in data.get("details") or []
                if isinstance(d, Mapping)
            ):
                message += (
                    " — this CyberSource account requires billing data: give the customer a name,"
                    " an email and a default address, or ask CyberSource to enable relaxed"
                    " requirements for address data"
                )
            raise kind(
                message,
                code=code or None,
                http_status=response.status_code,
                processor=self.name,
            )
        status = data.get("status")
        if status not in APPROVED and status != "AUTHORIZED_PENDING_REVIEW":
            raise VerificationFailedError(
                message,
                code=code or None,
                http_status=response.status_code,
                processor=self.name,
            )
        instrument_id = _dig(data, "tokenInformation", "paymentInstrument", "id")
        if not instrument_id:
            raise InvalidRequestError(
                "CyberSource verified the card but created no payment instrument "
                "(is the merchant enabled for TMS token creation?)",
                code="token_not_created",
                processor=self.name,
            )
        ref = MethodRef(token=str(instrument_id))
        if request.make_default:
            self.set_default_payment_method(request.customer, ref)
        method = self.fetch_payment_method(request.customer, ref)
        verification = VERIFICATION_SUCCESS if status in APPROVED else VERIFICATION_PENDING
        return replace(method, verification_status=verification)

    def fetch_payment_method(self, customer: CustomerRef, method: MethodRef) -> VaultedMethod:
        data = self._json("GET", INSTRUMENT, params={"customer": customer.id, "instrument": method.method_id})
        return self._vaulted(data)

    def list_payment_methods(self, customer: CustomerRef) -> list[VaultedMethod]:
        return [
            self._vaulted(item)
            for item in self._collect(INSTRUMENTS, {"customer": customer.id}, "paymentInstruments")
        ]

    def delete_payment_method(self, customer: CustomerRef, method: MethodRef) -> None:
        self._delete_child(customer, INSTRUMENTS, "instrument", method.method_id, "paymentInstruments")

    def set_default_payment_method(self, customer: CustomerRef, method: MethodRef) -> None:
        self._json(
            "PATCH",
            INSTRUMENT,
            params={"customer": customer.id, "instrument": method.method_id},
            body={"default": True},
        )

    def _delete_child(
        self, customer: CustomerRef, collection: str, name: str, child_id: str, key: str
    ) -> None:
        """Delete an instrument or address.  TMS refuses (409) to delete the customer's default
        while others exist: the first other one is made the default and the delete retried."""
        route = f"{collection}/{{{name}}}"
        params = {"customer": customer.id, name: child_id}
        try:
            self._call("DELETE", route, params=params, expect_json=False)
            return
        except InvalidRequestError as exc:
            if exc.http_status != 409:
                raise
            others = [
                item["id"]
                for item in self._collect(collection, {"customer": customer.id}, key)
                if item.get("id") and item["id"] != child_id
            ]
            if not others:
                raise
        self._json("PATCH", route, params={"customer": customer.id, name: others[0]}, body={"default": True})
        self._call("DELETE", route, params=params, expect_json=False)

    def _identifier(self, instrument: Mapping[str, Any]) -> Mapping[str, Any]:
        embedded = _dig(instrument, "_embedded", "instrumentIdentifier")
        if isinstance(embedded, Mapping):
            return embedded
        identifier_id = _dig(instrument, "instrumentIdentifier", "id")
        if not identifier_id:
            return {}
        return self._json("GET", IDENTIFIER, params={"identifier": identifier_id})

    def _vaulted(self, data: Mapping[str, Any]) -> VaultedMethod:
        if not data.get("id"):
            raise ProcessorUnavailable(
                "CyberSource answered without a payment instrument id",
                code="bad_response",
                processor=self.name,
            )
        identifier = self._identifier(data)
        card, bank = data.get("card") or {}, data.get("bankAccount") or {}
        method_type = METHOD_ACH if bank and not card else METHOD_CARD
        masked = str(
            _dig(identifier, "card" if method_type == METHOD_CARD else "bankAccount", "number") or ""
        )
        last4 = masked[-4:] if masked[-4:].isdigit() else ""
        exp_month, exp_year = _int(card.get("expirationMonth")), _int(card.get("expirationYear"))
        state = str(data.get("state") or identifier.get("state") or "ACTIVE").upper()
        status = METHOD_CLOSED if state == "CLOSED" else METHOD_ACTIVE
        if (
            status == METHOD_ACTIVE
            and exp_month
            and exp_year
            and 1 <= exp_month <= 12
            and 1 <= exp_year < 9999
        ):
            if date.today() > (date(exp_year + exp_month // 12, exp_month % 12 + 1, 1) - timedelta(days=1)):
                status = METHOD_EXPIRED
        bill_to = data.get("billTo") or {}
        raw = {
            "object": data.get("object", "paymentInstrument"),
            "state": state,
            "default": bool(data.get("default")),
            "card": {k: card[k] for k in ("expirationMonth", "expirationYear", "type") if k in card},
            "bankAccount": {k: bank[k] for k in ("type",) if k in bank},
            "instrumentIdentifier": {"state": identifier.get("state", "")},
            "bin": masked[:6] if masked[:6].isdigit() else "",
        }
        return VaultedMethod(
            token=str(data["id"]),
            method_type=method_type,
            fingerprint=str(identifier.get("id") or _dig(data, "instrumentIdentifier", "id") or ""),
            brand=CARD_BRANDS.get(str(card.get("type") or ""), str(card.get("type") or "")),
            last4=last4,
            exp_month=exp_month,
            exp_year=exp_year,
            holder_name=" ".join(p for p in (bill_to.get("firstName"), bill_to.get("lastName")) if p),
            account_type=str(bank.get("type") or "").lower(),
            verification_status=VERIFICATION_UNKNOWN,
            status=status,
            is_default=bool(data.get("default")),
            raw=raw,
        )

    # -- addresses ---------------------------------------------------------------------------
    def save_address(self, customer: CustomerRef, address: AddressData) -> AddressData:
        body = {"default": bool(address.is_default), "shipTo": _address_fields(address)}
        if address.processor_id:
            data = self._json(
                "PATCH", ADDRESS, params={"customer": customer.id, "address": address.processor_id}, body=body
            )
        else:
            data = self._json("POST", ADDRESSES, params={"customer": customer.id}, body=body)
        return replace(address, processor_id=str(data.get("id") or ""), is_default=bool(data.get("default")))

    def delete_address(self, customer: CustomerRef, address: AddressData) -> None:
        if not address.processor_id:
            raise InvalidRequestError(
                "this address was never saved at CyberSource", code="not_saved", processor=self.name
            )
        self._delete_child(customer, ADDRESSES, "address", address.processor_id, "shippingAddresses")

    # -- money -------------------------------------------------------------------------------
    def charge(self, request: ChargeRequest) -> ChargeResult:
        body = self._money_body(request)
        body["processingInformation"] = {"capture": bool(request.capture)}
        data = self._json("POST", PAYMENTS, body=body)
        currency = body["orderInformation"]["amountDetails"]["currency"]
        status = str(data.get("status") or "")
        if not data.get("id"):
            raise ProcessorUnavailable(
                "CyberSource answered without a payment id", code="bad_response", processor=self.name
            )
        amount = request.amount
        if status in APPROVED:
            try:
                amount = to_minor(
                    _dig(data, "orderInformation", "amountDetails", "authorizedAmount"), currency
                )
            except ValueError:  # no authorizedAmount: the requested amount was authorized
                amount = request.amount
            state = CHARGE_CAPTURED if request.capture else CHARGE_AUTHORIZED
        elif status == "AUTHORIZED_PENDING_REVIEW":  # Decision Manager review: authorized, nothing captured
            state = CHARGE_AUTHORIZED
        elif status == "INVALID_REQUEST":
            message, code = self._problem(data, "CyberSource refused the payment")
            raise InvalidRequestError(message, code=code or None, processor=self.name)
        else:
            message, code = self._problem(data, status)
            return ChargeResult(
                reference=str(data["id"]),
                amount=request.amount,
                currency=currency,
                status=CHARGE_FAILED if code in FAILURE_REASONS else CHARGE_DECLINED,
                failure_code=code or status,
                failure_message=message,
                raw=self._result_raw(data),
            )
        self._remember(
            str(data["id"]),
            {
                "kind": "sale" if state == CHARGE_CAPTURED else "authorization",
                "amount": amount,
                "currency": currency,
                "code": body["clientReferenceInformation"]["code"],
                "captures": [],
            },
        )
        return ChargeResult(
            reference=str(data["id"]),
            status=state,
            amount=amount,
            currency=currency,
            amount_captured=amount if state == CHARGE_CAPTURED else 0,
            raw=self._result_raw(data),
        )

    def capture(
        self, reference: str, amount: int | None = None, *, idempotency_key: str = ""
    ) -> ChargeResult:
        """``POST /pts/v2/payments/{id}/captures``.  The charge keeps its reference (the
        authorization's id); the capture id is in ``raw["id"]`` and remembered for refunds."""
        facts = self._facts(reference)
        if facts["kind"] != "authorization":
            raise InvalidRequestError(
                "this payment was captured when it was authorized",
                code="already_captured",
                processor=self.name,
            )
        amount = facts["amount"] if amount is None else amount
        data = self._follow_on(
            PAYMENT_ACTION,
            reference,
            "captures",
            facts,
            idempotency_key,
            {"orderInformation": {"amountDetails": self._amount_details(amount, facts["currency"])}},
            expect={"PENDING", "TRANSMITTED", "CAPTURED"},
        )
        facts["captures"] = [*facts["captures"], [str(data["id"]), amount]]
        self._remember(reference, facts)
        return ChargeResult(
            reference=reference,
            status=CHARGE_CAPTURED,
            amount=facts["amount"],
            currency=facts["currency"],
            amount_captured=amount,
            raw=self._result_raw(data),
        )

    def void(self, reference: str, *, idempotency_key: str = "") -> ChargeResult:
        """An uncaptured authorization is reversed (``/reversals``, full amount); a sale or a
        capture not yet settled is voided (``/voids``)."""
        facts = self._facts(reference)
        if facts["kind"] == "authorization" and not facts["captures"]:
            data = self._follow_on(
                PAYMENT_ACTION,
                reference,
                "reversals",
                facts,
                idempotency_key,
                {
                    "reversalInformation": {
                        "amountDetails": self._amount_details(facts["amount"], facts["currency"]),
                        "reason": "void",
                    }
                },
                expect={"REVERSED"},
            )
        else:  # a sale, a capture, or each capture of an authorization
            targets = [reference] if facts["kind"] != "authorization" else [c[0] for c in facts["captures"]]
            route = PAYMENT_ACTION if facts["kind"] == "sale" else CAPTURE_ACTION
            for target in targets:
                data = self._follow_on(route, target, "voids", facts, idempotency_key, {}, expect={"VOIDED"})
        return ChargeResult(
            reference=reference,
            status=CHARGE_VOIDED,
            amount=facts["amount"],
            currency=facts["currency"],
            raw=self._result_raw(data),
        )

    def refund(self, reference: str, amount: int | None = None, *, idempotency_key: str = "") -> ChargeResult:
        """A sale is refunded at ``/pts/v2/payments/{id}/refunds``; a separately captured
        authorization at ``/pts/v2/captures/{captureId}/refunds``."""
        facts = self._facts(reference)
        route, target, captured = PAYMENT_ACTION, reference, facts["amount"]
        if facts["kind"] == "capture":
            route = CAPTURE_ACTION
        elif facts["kind"] == "authorization":
            if len(facts["captures"]) != 1:
                raise InvalidRequestError(
                    "this authorization has no capture to refund; void it instead"
                    if not facts["captures"]
                    else "this authorization was captured more than once; refund each capture by its id",
                    code="not_captured",
                    processor=self.name,
                )
            route, (target, captured) = CAPTURE_ACTION, facts["captures"][0]
        amount = captured if amount is None else amount
        data = self._follow_on(
            route,
            target,
            "refunds",
            facts,
            idempotency_key,
            {"orderInformation": {"amountDetails": self._amount_details(amount, facts["currency"])}},
            expect={"PENDING", "TRANSMITTED", "REFUNDED"},
        )
        return ChargeResult(
            reference=reference,
            status=CHARGE_REFUNDED,
            amount=facts["amount"],
            currency=facts["currency"],
            amount_captured=captured,
            amount_refunded=amount,
            raw=self._result_raw(data),
        )

    def credit(self, request: ChargeRequest) -> ChargeResult:
        """A stand-alone credit to a vaulted card (``POST /pts/v2/credits``), not tied to a charge."""
        body = self._money_body(request)
        data = self._json("POST", "/pts/v2/credits", body=body)
        self._expect(data, {"PENDING", "TRANSMITTED"})
        return ChargeResult(
            reference=str(data["id"]),
            status=CHARGE_REFUNDED,
            amount=request.amount,
            currency=body["orderInformation"]["amountDetails"]["currency"],
            amount_refunded=request.amount,
            raw=self._result_raw(data),
        )

    def _money_body(self, request: ChargeRequest) -> dict[str, Any]:
        """The reference, customer (and instrument) and amount of a payment or credit."""
        payment: dict[str, Any] = {"customer": {"id": request.customer.id}}
        if request.method is not None:
            payment["paymentInstrument"] = {"id": request.method.token}
        reference = {"code": _code(request.reference, request.idempotency_key)}
        if request.description:
            reference["comments"] = request.description
        return {
            "clientReferenceInformation": reference,
            "paymentInformation": payment,
            "orderInformation": {"amountDetails": self._amount_details(request.amount, request.currency)},
        }

    def _amount_details(self, amount: int, currency: str) -> dict[str, str]:
        if amount <= 0:
            raise InvalidRequestError(
                "the amount must be positive", code="invalid_amount", processor=self.name
            )
        currency = currency.upper()
        return {"totalAmount": to_major_string(amount, currency), "currency": currency}

    def _follow_on(
        self,
        route: str,
        target: str,
        action: str,
        facts: Mapping[str, Any],
        idempotency_key: str,
        body: dict[str, Any],
        *,
        expect: set[str],
    ) -> dict[str, Any]:
        body = {"clientReferenceInformation": {"code": _code(facts.get("code", ""), idempotency_key)}, **body}
        data = self._json("POST", route, params={"id": target, "action": action}, body=body)
        self._expect(data, expect)
        return data

    def _expect(self, data: Mapping[str, Any], statuses: set[str]) -> None:
        if data.get("status") not in statuses or not data.get("id"):
            message, code = self._problem(data, f"CyberSource answered {data.get('status')}")
            raise InvalidRequestError(
                message,
                code=code or str(data.get("status") or "") or None,
                processor=self.name,
            )

    # -- lost answers (docs/reliability.md) ------------------------------------------------------
    #: Transaction Search finds a payment only once CyberSource has indexed it, which is not
    #: immediate and has no documented bound; "no such payment" is believed only after an hour
    #: (our choice: long enough that a shopper's retry waits rather than charges twice).
    charge_lookup_settle_seconds = 3600.0

    def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        """The payment a charge whose answer was lost made, found with Transaction Search by the
        ``clientReferenceInformation.code`` it was sent with.

        Only when that code was the charge's idempotency key (no separate order reference): the
        key is unique per charge, while an order reference is shared by every attempt to pay the
        order, so a payment found by it could be another attempt's.  Candidates must also match
        the customer, amount and currency; two or more are ambiguous and left to staff.
        """
        key = request.idempotency_key
        if not key or (request.reference and request.reference != key) or not _SEARCHABLE.match(key):
            raise UnsupportedOperation(
                "a CyberSource charge is found only by a unique reference: its idempotency key, "
                "sent as clientReferenceInformation.code with no separate order reference",
                processor=self.name,
            )
        data = self._json(
            "POST",
            SEARCHES,
            body={
                "save": False,
                "name": "vault_wallets charge look-up",
                "timezone": "UTC",
                "query": f"clientReferenceInformation.code:{key}",
                "offset": 0,
                "limit": 100,
                "sort": "submitTimeUtc:desc",
            },
        )
        currency = request.currency.upper()
        candidates = []
        for summary in _dig(data, "_embedded", "transactionSummaries") or []:
            if not isinstance(summary, Mapping) or not summary.get("id"):
                continue
            names = {
                str(a.get("name"))
                for a in _dig(summary, "applicationInformation", "applications") or []
                if isinstance(a, Mapping)
            }
            amounts = _dig(summary, "orderInformation", "amountDetails") or {}
            customer = str(_dig(summary, "paymentInformation", "customer", "customerId") or "")
            try:
                amount = to_minor(amounts.get("totalAmount"), currency)
            except (TypeError, ValueError):
                continue
            if (
                str(_dig(summary, "clientReferenceInformation", "code") or "") == key
                and "ics_auth" in names  # an authorization or a sale, not a follow-on
                and str(amounts.get("currency") or "").upper() == currency
                and amount == request.amount
                and customer in ("", request.customer.id)
            ):
                candidates.append(str(summary["id"]))
        if not candidates:
            return None
        if len(set(candidates)) > 1:
            raise UnsupportedOperation(
                "several CyberSource payments carry this charge's reference; staff must settle it",
                processor=self.name,
            )
        return self.fetch_charge(candidates[0])

    def fetch_charge(self, reference: str) -> ChargeResult:
        """The payment as CyberSource has it now (Transaction Details of the payment and of its
        related transactions): authorized, captured (and how much), voided or refunded."""
        details = self._json("GET", TRANSACTION, params={"id": reference})
        applications = _dig(details, "applicationInformation", "applications") or []
        approved = _approved(details)
        names = {str(a.get("name")) for a in applications if isinstance(a, Mapping)}
        amounts = _dig(details, "orderInformation", "amountDetails") or {}
        currency = str(amounts.get("currency") or "").upper()
        try:
            amount = to_minor(amounts.get("totalAmount") or amounts.get("authorizedAmount"), currency)
        except (TypeError, ValueError):
            raise ProcessorUnavailable(
                "CyberSource answered without the payment's amount", code="bad_response", processor=self.name
            ) from None
        if "ics_auth" not in names:
            raise InvalidRequestError(
                "this CyberSource transaction is not a payment", code="not_a_payment", processor=self.name
            )
        raw = self._result_raw(details)
        if "ics_auth" not in approved:
            flag = next(
                (str(a.get("rFlag") or a.get("reasonCode") or "") for a in applications if isinstance(a, Mapping)),
                "",
            )
            return ChargeResult(
                reference=reference, status=CHARGE_DECLINED, amount=amount, currency=currency,
                failure_code=flag or "declined", failure_message="The payment was declined.", raw=raw,
            )
        captured = amount if "ics_bill" in approved else 0
        refunded, voided = 0, False
        # The payment's follow-ons, and theirs (a refund of a separate capture is related to the
        # capture, not to the authorization): each transaction read once.
        seen, pending = {reference}, [details]
        while pending:
            links = _dig(pending.pop(), "_links", "relatedTransactions") or []
            for related in (_link_id(link) for link in links):
                if not related or related in seen or len(seen) > 50:
                    continue
                seen.add(related)
                other = self._json("GET", TRANSACTION, params={"id": related})
                tally: dict[str, Any] = {}
                self._classify_follow_on(other, currency, pending, tally)
                refunded += tally.get("refunded", 0)
                captured += tally.get("captured", 0)
                voided = voided or tally.get("voided", False)
        if voided:
            status = CHARGE_VOIDED
        elif refunded:
            status = CHARGE_REFUNDED
        elif captured:
            status = CHARGE_CAPTURED
        else:
            status = CHARGE_AUTHORIZED
        return ChargeResult(
            reference=reference, status=status, amount=amount, currency=currency,
            amount_captured=captured, amount_refunded=refunded, raw=raw,
        )

    @staticmethod
    def _classify_follow_on(other: Mapping[str, Any], currency: str, pending: list, tally: dict) -> None:
        """What one related transaction did (approved applications only); a capture's own
        follow-ons are read next."""
        done = _approved(other)
        value = (_dig(other, "orderInformation", "amountDetails") or {}).get("totalAmount")
        try:
            amount = to_minor(value, currency)
        except (TypeError, ValueError):
            amount = 0
        if done & {"ics_auth_reversal", "ics_void"}:
            tally["voided"] = True
        elif "ics_credit" in done:
            tally["refunded"] = amount
        elif "ics_bill" in done:
            tally["captured"] = amount
            pending.append(other)

    @staticmethod
    def _result_raw(data: Mapping[str, Any]) -> dict[str, Any]:
        return {key: data[key] for key in _RESULT_KEYS if key in data}

    def _remember(self, reference: str, facts: dict[str, Any]) -> None:
        self._memo.set(f"payment:{reference}", facts)

    def _facts(self, reference: str) -> dict[str, Any]:
        """What a follow-on needs: kind (authorization/sale/capture), amount, currency, captures."""
        facts = self._memo.get(f"payment:{reference}")
        if facts:
            return dict(facts)
        facts = self._transaction_facts(reference)
        if facts["kind"] == "authorization":
            for link in _dig(facts.pop("_details"), "_links", "relatedTransactions") or []:
                related = _link_id(link)
                if related and related != reference:
                    other = self._transaction_facts(related)
                    if other["kind"] == "capture":
                        facts["captures"].append([related, other["amount"]])
        facts.pop("_details", None)
        self._remember(reference, facts)
        return facts

    def _transaction_facts(self, reference: str) -> dict[str, Any]:
        details = self._json("GET", TRANSACTION, params={"id": reference})
        succeeded = _approved(details)
        kind = (
            "sale"
            if {"ics_auth", "ics_bill"} <= succeeded
            else "capture"
            if "ics_bill" in succeeded
            else "authorization"
            if "ics_auth" in succeeded
            else ""
        )
        amounts = _dig(details, "orderInformation", "amountDetails") or {}
        currency = str(amounts.get("currency") or "").upper()
        value = amounts.get("totalAmount") or amounts.get("authorizedAmount")
        if not kind or not currency or value in (None, ""):
            raise InvalidRequestError(
                "this CyberSource transaction is not an approved payment",
                code="not_a_payment",
                processor=self.name,
            )
        return {
            "kind": kind,
            "amount": to_minor(value, currency),
            "currency": currency,
            "code": str(_dig(details, "clientReferenceInformation", "code") or ""),
            "captures": [],
            "_details": details,
        }

    # -- browser -------------------------------------------------------------------------------
    def get_client_token(self, customer: CustomerRef) -> ClientToken | None:
        """A Microform capture context (``POST /microform/v2/sessions``), valid 15 minutes.

        It authorizes the page's origin to tokenize one card for this merchant; it is not
        bound to the customer (the transient token is bound to the customer when vaulted).
        """
        origins = self.option("TARGET_ORIGINS")
        if not origins:
            raise UnsupportedOperation(
                "set OPTIONS TARGET_ORIGINS (the https origins of the card form) "
                "to create Microform capture contexts",
                processor=self.name,
            )
        token = self._capture_context([origins] if isinstance(origins, str) else list(origins))
        expires = _jwt_expiry(token) or datetime.now(timezone.utc) + timedelta(minutes=15)
        return ClientToken(token=token, expires_at=expires)

    def _capture_context(self, origins: list[str]) -> str:
        """``POST /microform/v2/sessions``: a capture-context JWT for these page origins."""
        response = self._call(
            "POST",
            "/microform/v2/sessions",
            accept="application/jwt",
            expect_json=False,
            body={
                "clientVersion": str(self.option("MICROFORM_CLIENT_VERSION", "v2")),
                "targetOrigins": origins,
                "allowedCardNetworks": list(self.option("ALLOWED_CARD_NETWORKS", DEFAULT_CARD_NETWORKS)),
                "allowedPaymentTypes": ["CARD"],
            },
        )
        token = response.text.strip()
        if token.count(".") != 2:
            raise ProcessorUnavailable(
                "CyberSource answered without a capture context", code="bad_response", processor=self.name
            )
        return token

    # Microform v2's documented static URLs (BROWSER-SDKS.md §3.2); the capture context names the
    # exact bundle and its SRI hash (ctx[0].data.clientLibrary / clientLibraryIntegrity), which win.
    js_sdk_url = "https://flex.cybersource.com/microform/bundle/v2/flex-microform.min.js"
    js_sdk_test_url = "https://testflex.cybersource.com/microform/bundle/v2/flex-microform.min.js"

    def prepare_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """A capture context for the checkout page's origin (``TARGET_ORIGINS`` when set — the
        docs ask for origins fixed on the server — else the shop's own origin as Django knows it).

        The library URL and SRI hash come from the capture context's ``ctx[0].data`` (as the
        official samples load it), unless ``JS_SDK_URL`` overrides them.  The JWT came straight
        from CyberSource over the authenticated API call, so it is decoded, not re-verified,
        here; Microform verifies it in the browser.
        """
        configured = self.option("TARGET_ORIGINS")
        origins = ([configured] if isinstance(configured, str) else list(configured)) if configured else []
        if not origins:
            if not request.origin:
                raise UnsupportedOperation("no page origin for the capture context: set TARGET_ORIGINS",
                                           processor=self.name)
            origins = [request.origin]
        token = self._capture_context(origins)
        contexts = _jwt_claims(token).get("ctx")
        first = contexts[0] if isinstance(contexts, list) and contexts else {}
        data = _dig(first, "data") or {}
        url, integrity = self.sdk_script()
        if not self.option("JS_SDK_URL"):
            sandbox = urlsplit(str(self.option("BASE_URL") or SANDBOX_URL)).hostname != "api.cybersource.com"
            url = str(data.get("clientLibrary") or (self.js_sdk_test_url if sandbox else self.js_sdk_url))
            integrity = str(data.get("clientLibraryIntegrity") or "")
        return CheckoutSession(
            processor=self.name, sdk_url=url, sdk_integrity=integrity,
            client={"captureContext": token},
            expires_at=_jwt_expiry(token) or datetime.now(timezone.utc) + timedelta(minutes=15),
        )

    # -- webhooks --------------------------------------------------------------------------------
    def _webhook_keys(self) -> list[tuple[str | None, bytes]]:
        """``WEBHOOK_KEYS``: ``{keyId: base64 key}``, a list of base64 keys, or one key."""
        configured = self.option("WEBHOOK_KEYS") or ()
        if isinstance(configured, str):
            configured = [configured]
        pairs = configured.items() if isinstance(configured, Mapping) else ((None, v) for v in configured)
        keys = []
        for key_id, value in pairs:
            try:
                keys.append((key_id, decode_key(value)))
            except ValueError:
                raise ValueError(
                    "OPTIONS WEBHOOK_KEYS holds a key that is not base64"
                    + (f" (keyId {key_id})" if key_id else "")
                ) from None
        return keys

    def verify_webhook(self, request: WebhookRequest) -> None:
        header = request.header("v-c-signature")
        if not header.strip():
            raise WebhookVerificationError("missing v-c-signature header")
        fields = parse_webhook_signature(header)
        stamp, key_id, signature = fields.get("t", ""), fields.get("keyId", ""), fields.get("sig", "")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 16 and signature):
            raise WebhookVerificationError("malformed v-c-signature header")
        try:
            keys = self._webhook_keys()
        except ValueError:
            raise WebhookVerificationError("webhook keys are misconfigured") from None
        if not keys:
            raise WebhookVerificationError("no webhook key is configured")
        candidates = [key for kid, key in keys if kid is None or kid == key_id]
        if not candidates:
            raise WebhookVerificationError("unknown webhook keyId")
        given = signature.encode("utf-8", "replace")
        body = bytes(request.body or b"")
        if not any(
            hmac.compare_digest(webhook_signature(key, stamp, body).encode("ascii"), given)
            for key in candidates
        ):
            raise WebhookVerificationError("bad signature")
        received = _utc(request.received_at)
        now = received.timestamp() if received else time.time()
        skew = now - int(stamp) / 1000.0
        tolerance = float(self.option("WEBHOOK_TOLERANCE", 300))
        if skew > tolerance:
            raise WebhookVerificationError("stale timestamp")
        if skew < -tolerance:
            raise WebhookVerificationError("timestamp in the future")

    @staticmethod
    def _webhook_body(request: WebhookRequest) -> dict[str, Any]:
        try:
            body = json.loads(bytes(request.body or b"").decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise WebhookParseError("body is not JSON") from None
        if not isinstance(body, dict):
            raise WebhookParseError("body is not a JSON object")
        return body

    def webhook_event_id(self, request: WebhookRequest) -> tuple[str, str]:
        body = self._webhook_body(request)
        event_type = str(body.get("eventType") or request.header("v-c-event-type"))
        event_id = str(
            body.get("transactionTraceId")
            or request.header("v-c-transaction-trace-id").strip('" ')
            or _dig(body, "payload", "data", "id")
            or ""
        )
        if not event_id:
            raise WebhookParseError("missing event id")
        return event_id, event_type

    def parse_webhook(self, request: WebhookRequest) -> list[NormalizedEvent]:
        body = self._webhook_body(request)
        event_id, event_type = self.webhook_event_id(request)
        data = _dig(body, "payload", "data")
        data = data if isinstance(data, Mapping) else {}
        try:
            occurred = _utc(datetime.fromisoformat(str(body.get("eventDate"))))
        except ValueError:
            occurred = None
        if event_type != "tms.networktoken.updated":
            return [
                NormalizedEvent(
                    type=EVENT_UNKNOWN,
                    event_id=event_id,
                    processor_event_type=event_type,
                    occurred_at=occurred,
                    raw=body,
                )
            ]
        links = data.get("_links") if isinstance(data.get("_links"), Mapping) else {}
        cards = [link for link in links.get("tokenized-cards") or [] if isinstance(link, Mapping)]
        return [
            NormalizedEvent(
                type=EVENT_PAYMENT_METHOD_UPDATED,
                event_id=event_id,
                processor_event_type=event_type,
                payment_method_ids=self._affected_instruments(links),
                occurred_at=occurred,
                data={
                    "reason": str(data.get("reason") or ""),
                    "network_token_states": [str(c.get("state") or "") for c in cards],
                },
                raw=body,
            )
        ]

    def _affected_instruments(self, links: Mapping[str, Any]) -> tuple[str, ...]:
        """Payment instruments named by the event, and those of every instrument identifier it names
        (``GET /tms/v1/instrumentidentifiers/{id}/paymentinstruments``)."""
        found = [_link_id(link) for link in links.get("paymentInstruments") or []]
        for link in links.get("instrumentIdentifiers") or []:
            identifier = _link_id(link)
            if not identifier:
                continue
            try:
                instruments = self._collect(
                    IDENTIFIER + "/paymentinstruments", {"identifier": identifier}, "paymentInstruments"
                )
            except NotFoundError:
                continue
            found.extend(str(item.get("id") or "") for item in instruments)
        return tuple(dict.fromkeys(i for i in found if i))
