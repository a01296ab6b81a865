"""Caselle Payments API (Govifi) — customers, saved payment methods ("wallets"), payments.

Authentication is OAuth 2.0 client credentials against the account's Cognito domain
(``POST {AUTH_URL}/oauth2/token`` with HTTP Basic ``client_id:client_secret``); the access
token lives one hour and is cached on the processor instance until a few minutes before it
expires.  Every API call carries ``Authorization: Bearer …`` and, being account scoped,
``X-Payment-Account-Uid``.  A 401 from the API refreshes the token once and repeats the call
once.

The browser tokenizes a card with Caselle's payment SDK (Zift "proxynization"), which yields a
15-minute proxynized token plus the card's display data.  The save call needs both, but
``vault_payment_method`` only receives one string, so the browser hands over a *browser token*
that carries the ``payment_method`` object to send (see ``encode_browser_token``); the
server validates it field by field and forwards exactly the documented fields.

Payments run in Caselle's two phases: ``charge(capture=False)`` is the validate phase
(``POST /api/payments``: fee quote, status ``authorized`` here) and ``capture`` the capture
phase (``POST /api/payments/{uid}/capture``, repeating the validated amounts and method).
Caselle documents no way to cancel a validated payment, so ``void`` is unsupported.

See ``docs/processors/caselle.md`` for what is documented and what is inferred.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
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
    EVENT_CHARGE_FAILED,
    EVENT_CHARGE_REFUNDED,
    EVENT_CHARGE_SUCCEEDED,
    EVENT_PAYMENT_METHOD_CLOSED,
    EVENT_PAYMENT_METHOD_UPDATED,
    EVENT_UNKNOWN,
    METHOD_ACH,
    METHOD_ACTIVE,
    METHOD_CARD,
    METHOD_CLOSED,
    METHOD_EXPIRED,
    METHOD_REMOVED,
    VERIFICATION_NOT_REQUESTED,
    AuthenticationError,
    BaseProcessor,
    ChargeRequest,
    ChargeResult,
    CheckoutRequest,
    CheckoutSession,
    CustomerData,
    CustomerRef,
    InvalidRequestError,
    MethodRef,
    NormalizedEvent,
    NotFoundError,
    ProcessorCustomer,
    ProcessorError,
    ProcessorUnavailable,
    TemporaryTokenError,
    UnsupportedOperation,
    VaultedMethod,
    VaultRequest,
    VerificationFailedError,
    WebhookParseError,
    WebhookRequest,
    WebhookVerificationError,
    _repr_without,
    derived_fingerprint,
)
from .http import ProcessorHTTPClient, parse_timeout, redact

DEFAULT_BASE_URL = "https://api.govifi.com"
DEFAULT_SCOPE = "com.govineer.payments/admin"
DEFAULT_SIGNATURE_HEADER = "X-Webhook-Signature"
DEFAULT_IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Caselle's webhook guide rejects deliveries whose signed timestamp is more than 4 hours off.
DEFAULT_WEBHOOK_TOLERANCE = 4 * 60 * 60
ACCOUNT_HEADER = "X-Payment-Account-Uid"
#: Refresh the access token this long before it expires ("a few minutes", per the docs).
TOKEN_REFRESH_MARGIN = 300.0

#: Caselle's payment_method_type for a saved method, and the wallet type that charges it.
PAYMENT_TYPES = {METHOD_CARD: "credit", METHOD_ACH: "ach"}
WALLET_TYPES = {METHOD_CARD: "wallet_credit", METHOD_ACH: "wallet_ach"}
METHOD_TYPE_OF = {
    "credit": METHOD_CARD,
    "ach": METHOD_ACH,
    "wallet_credit": METHOD_CARD,
    "wallet_ach": METHOD_ACH,
}

#: The documented fields of a saved method, per payment_method_type (all that may be sent).
METHOD_FIELDS = {
    "credit": ("fingerprint", "last4", "exp_month", "exp_year", "bin", "card_brand", "holder_name"),
    "ach": (
        "fingerprint",
        "bank_name",
        "routing_number",
        "account_number_suffix",
        "account_type",
        "holder_name",
    ),
}
REQUIRED_METHOD_FIELDS = {
    "credit": ("fingerprint", "last4", "exp_month", "exp_year"),
    "ach": ("fingerprint", "routing_number", "account_number_suffix", "account_type"),
}
_INT_FIELDS = frozenset({"exp_month", "exp_year"})

#: Error codes (Caselle's ``code``) with a meaning of their own here.
TEMPORARY_TOKEN_CODES = frozenset({"invalid_payment_token", "token_expired", "token_used", "session_expired"})
VERIFICATION_CODES = frozenset({"card_declined", "expired_card", "incorrect_cvc", "insufficient_funds"})
DECLINE_CODES = VERIFICATION_CODES
FAILURE_CODES = frozenset({"processing_error", "network_error"})

_PAYMENT_STATUSES = {
    "validated": CHARGE_AUTHORIZED,
    "completed": CHARGE_CAPTURED,
    "captured": CHARGE_CAPTURED,
    "failed": CHARGE_FAILED,
    "declined": CHARGE_DECLINED,
    "refunded": CHARGE_REFUNDED,
    "partially_refunded": CHARGE_REFUNDED,
}
_METHOD_STATUSES = {
    "active": METHOD_ACTIVE,
    "expired": METHOD_EXPIRED,
    "closed": METHOD_CLOSED,
    "deleted": METHOD_REMOVED,
    "removed": METHOD_REMOVED,
}
_EVENT_TYPES = {
    "payment.completed": EVENT_CHARGE_SUCCEEDED,
    "payment.failed": EVENT_CHARGE_FAILED,
    "payment.refunded": EVENT_CHARGE_REFUNDED,
    # An ACH return for insufficient funds, or a reversal by the provider: the payment no
    # longer stands.
    "provider.nsf": EVENT_CHARGE_FAILED,
    "provider.reversal": EVENT_CHARGE_FAILED,
}
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})
#: Keys never copied into ``raw``: the permanent/proxynized token and any account number.
_SECRET_KEYS = frozenset({"fingerprint", "account_number", "card_number", "number", "access_token"})
_HEX_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")
_TIMESTAMP_FIELD = re.compile(rb'"timestamp"\s*:\s*(-?[0-9]{1,15})(?![0-9.eE])')


# --------------------------------------------------------------------------------------
# The browser token: what the shopper's browser hands over after tokenizing.
# --------------------------------------------------------------------------------------

BROWSER_TOKEN_PREFIX = "cstk1."


def encode_browser_token(payment_method_type: str, details: Mapping[str, Any]) -> str:
    """Pack the payment SDK's tokenization result into the one string the browser submits.

    ``details`` are the SDK's proxynized token (``fingerprint``) and the display data
    (``last4``, ``exp_month``… for ``credit``; ``routing_number``, ``account_number_suffix``…
    for ``ach``).  The string is ``"cstk1." + base64url(JSON payment_method object)`` — in the
    browser: ``"cstk1." + btoa(JSON.stringify(pm)).replace(/\\+/g, "-").replace(/\\//g, "_")``.
    """
    if payment_method_type not in METHOD_FIELDS:
        raise ValueError(f"unknown payment_method_type {payment_method_type!r}")
    fields = {k: details[k] for k in METHOD_FIELDS[payment_method_type] if details.get(k) not in (None, "")}
    payload = {"payment_method_type": payment_method_type, payment_method_type: fields}
    raw = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return BROWSER_TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_browser_token(token: str) -> tuple[str, dict[str, Any]]:
    """``(payment_method_type, details)`` from a browser token, or ``TemporaryTokenError``.

    Only the documented fields survive; types are checked so the API's strict schema is met.
    """

    def bad(reason: str) -> TemporaryTokenError:
        return TemporaryTokenError(
            f"the temporary token is not a Caselle tokenization result ({reason})",
            processor=CaselleProcessor.name,
        )

    if not isinstance(token, str) or not token.startswith(BROWSER_TOKEN_PREFIX):
        raise bad("unexpected format")
    encoded = token[len(BROWSER_TOKEN_PREFIX) :]
    try:
        payload = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8"))
    except (ValueError, binascii.Error):
        raise bad("not decodable") from None
    if not isinstance(payload, dict):
        raise bad("not an object")
    ptype = payload.get("payment_method_type")
    if ptype not in METHOD_FIELDS or not isinstance(payload.get(ptype), dict):
        raise bad("unknown payment_method_type")
    given = payload[ptype]
    details: dict[str, Any] = {}
    for key in METHOD_FIELDS[ptype]:
        value = given.get(key)
        if value in (None, ""):
            continue
        if key in _INT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(f"{key} is not an integer")
        elif not isinstance(value, str):
            raise bad(f"{key} is not a string")
        details[key] = value
    missing = [k for k in REQUIRED_METHOD_FIELDS[ptype] if k not in details]
    if missing:
        raise bad(f"missing {', '.join(missing)}")
    return ptype, details


# --------------------------------------------------------------------------------------
# Bulk import
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportItem:
    """One existing processor token to import as a saved method (``import_payment_methods``).

    ``token`` is the permanent processor token; the rest is display data.  Cards use
    ``last4``/``exp_month``/``exp_year``/``bin``/``brand``; ACH uses ``routing_number``/
    ``account_number_suffix``/``account_type``/``bank_name``.
    """

    token: str
    method_type: str = METHOD_CARD
    last4: str = ""
    exp_month: int | None = None
    exp_year: int | None = None
    bin: str = ""
    brand: str = ""
    holder_name: str = ""
    bank_name: str = ""
    routing_number: str = ""
    account_number_suffix: str = ""
    account_type: str = ""

    __repr__ = _repr_without("token")

    def payment_method(self) -> dict[str, Any]:
        ptype = PAYMENT_TYPES.get(self.method_type)
        if ptype is None:
            raise InvalidRequestError(
                f"unknown method type {self.method_type!r}", processor=CaselleProcessor.name
            )
        values = {
            "fingerprint": self.token,
            "last4": self.last4,
            "exp_month": self.exp_month,
            "exp_year": self.exp_year,
            "bin": self.bin,
            "card_brand": self.brand,
            "holder_name": self.holder_name,
            "bank_name": self.bank_name,
            "routing_number": self.routing_number,
            "account_number_suffix": self.account_number_suffix,
            "account_type": self.account_type,
        }
        details = {k: values[k] for k in METHOD_FIELDS[ptype] if values[k] not in (None, "")}
        return {"payment_method_type": ptype, ptype: details}


@dataclass(frozen=True)
class ImportFailure:
    index: int
    code: str
    message: str


@dataclass(frozen=True)
class ImportResult:
    """Imported methods (in request order) and the items Caselle refused (by index)."""

    methods: tuple[VaultedMethod, ...] = ()
    failures: tuple[ImportFailure, ...] = ()


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _error_message(body: Any, response: requests.Response) -> tuple[str, str]:
    """Caselle answers ``{code, message, recoverable, request_id}``; API Gateway ``{message}``;
    the Cognito token endpoint ``{error, error_description}``."""
    if not isinstance(body, dict):
        return "", ""
    error = body.get("error")
    error = error if isinstance(error, str) else ""
    message = body.get("message") or body.get("error_description") or error
    code = body.get("code") or error
    return (str(message) if message else ""), (str(code) if code else "")


#: Words in a Caselle error's ``code`` or ``message`` that name a create conflict.
_CONFLICT_WORDS = ("conflict", "already_exists", "already exists", "already exist", "duplicate", "exists")


def is_create_conflict(exc: ProcessorError) -> bool:
    """Whether a refused ``POST /api/customers`` is the conflict the docs say to answer by fetching.

    Caselle's docs say only that a create can conflict (``reference_id`` is unique per payment
    account); neither the status nor the body is documented.  A 409 is a conflict; so is a
    400/422 whose ``{code, message}`` body (Caselle's error shape) names a conflict, a duplicate
    or an existing reference — ``exc.code`` and ``exc.message`` carry that body's fields.
    """
    if isinstance(exc, NotFoundError) or not isinstance(exc, InvalidRequestError):
        return False
    if exc.http_status == 409:
        return True
    if exc.http_status not in (400, 422):
        return False
    text = f"{exc.code} {exc.message}".lower().replace("-", "_")
    return any(word.replace("-", "_") in text for word in _CONFLICT_WORDS)


def _with_display_data(saved: Any, ptype: str, sent: Mapping[str, Any]) -> dict[str, Any]:
    """The save answer, with the display data we sent where the answer leaves it out.

    Caselle's documented answer to a save is ``{saved_payment_method_uid, payment_method: {credit:
    {fingerprint: <permanent token>, …}}}`` ("Customers & wallets"); the docs then say to show the
    customer last4 and brand, which the answer need not repeat.  What Caselle answers wins; the
    proxynized token we sent is never used as the permanent one.
    """
    saved = dict(saved) if isinstance(saved, Mapping) else {}
    pm: Mapping[str, Any] = saved["payment_method"] if isinstance(saved.get("payment_method"), Mapping) else {}
    answered: Mapping[str, Any] = pm[ptype] if isinstance(pm.get(ptype), Mapping) else {}
    display = {k: v for k, v in sent.items() if k != "fingerprint"}
    saved["payment_method"] = {**pm, "payment_method_type": pm.get("payment_method_type") or ptype,
                               ptype: {**display, **answered}}
    return saved


def _sanitize(value: Any) -> Any:
    """A copy of a Caselle object without tokens or account numbers."""
    if type(value) in _JSON_SCALARS:  # what most of a parsed answer is: no ABC check for it
        return value
    if isinstance(value, Mapping):
        return {k: _sanitize(v) for k, v in value.items() if k not in _SECRET_KEYS}
    if isinstance(value, list):
        return [_sanitize(v) for v in value]
    return value


def _items(body: Any) -> list[dict[str, Any]]:
    """The entries of a list answer: OData's ``{"value": [...]}`` (or a bare list)."""
    if isinstance(body, dict):
        body = body.get("value", body.get("items", []))
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []


def _odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _derived_fingerprint(method_type: str, details: Mapping[str, Any]) -> str:
    """A stable identifier from non-secret display data (Caselle exposes no card identifier)."""
    if method_type == METHOD_ACH:
        return derived_fingerprint("ach", details.get("routing_number"), details.get("account_number_suffix"),
                                   details.get("account_type"))
    return derived_fingerprint("card", str(details.get("card_brand") or "").upper(), details.get("bin"),
                               details.get("last4"), details.get("exp_month"), details.get("exp_year"))


class _AccessTokenCache:
    """One OAuth access token per processor instance, shared by its threads."""

    def __init__(self, fetch):
        self._fetch = fetch
        self._lock = threading.Lock()
        self._value = ""
        self._refresh_at = 0.0

    @property
    def current(self) -> str:
        return self._value

    def get(self) -> str:
        with self._lock:  # held while fetching, so concurrent callers wait for one fetch
            if not self._value or time.monotonic() >= self._refresh_at:
                value, expires_in = self._fetch()
                self._value = value
                self._refresh_at = time.monotonic() + max(expires_in - TOKEN_REFRESH_MARGIN, expires_in / 2)
            return self._value

    def invalidate(self, value: str) -> None:
        with self._lock:
            if self._value == value:
                self._value = ""


# --------------------------------------------------------------------------------------
# The processor
# --------------------------------------------------------------------------------------


class CaselleProcessor(BaseProcessor):
    name = "caselle"
    display_name = "Caselle Payments (Govifi)"
    supports_client_token = False
    supports_addresses = False
    required_options = ("CLIENT_ID", "CLIENT_SECRET", "PAYMENT_ACCOUNT_UID", "AUTH_URL")
    secret_options = ("CLIENT_SECRET", "WEBHOOK_SECRET")
    #: Saved-method uids are what we charge with; ``_SECRET_KEYS`` are tokens and account numbers.
    webhook_token_fields = ("saved_payment_method_ids", "saved_payment_method_id", "saved_payment_method_uid",
                            *_SECRET_KEYS)

    def __init__(self, account: str, options: Mapping[str, Any] | None = None):
        super().__init__(account, options)
        self._tokens = _AccessTokenCache(self._fetch_access_token)

    # -- configuration -----------------------------------------------------------------
    def check_options(self) -> list[str]:
        problems = super().check_options()
        for key in ("BASE_URL", "AUTH_URL"):
            url = str(self.options.get(key) or (DEFAULT_BASE_URL if key == "BASE_URL" else ""))
            parts = urlsplit(url)
            if url and (parts.scheme not in ("https", "http") or not parts.netloc):
                problems.append(f"OPTIONS[{key!r}] is not an http(s) URL")
            elif url and parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
                problems.append(f"OPTIONS[{key!r}] must use https outside loopback")
        try:
            self._webhook_tolerance  # noqa: B018 - validates the option
        except (TypeError, ValueError):
            problems.append("OPTIONS['WEBHOOK_TOLERANCE'] must be a number of seconds")
        return problems

    @property
    def _account_uid(self) -> str:
        return str(self.option("PAYMENT_ACCOUNT_UID", ""))

    @property
    def _idempotency_header(self) -> str:
        return str(self.option("IDEMPOTENCY_HEADER", DEFAULT_IDEMPOTENCY_HEADER) or "")

    @property
    def _webhook_tolerance(self) -> float:
        return float(self.option("WEBHOOK_TOLERANCE", DEFAULT_WEBHOOK_TOLERANCE))

    def _webhook_secrets(self) -> list[str]:
        value = self.option("WEBHOOK_SECRET")
        if isinstance(value, str):
            return [value] if value else []
        return [str(v) for v in (value or ()) if v]

    def _secrets(self) -> list[str]:
        return [
            str(self.option("CLIENT_SECRET") or ""),
            str(self.option("CLIENT_ID") or ""),
            self._tokens.current,
            *self._webhook_secrets(),
        ]

    def _client(self, base_url: str, idempotency_headers: Iterable[str], headers: Mapping[str, str]):
        return ProcessorHTTPClient(
            processor=self.name,
            base_url=base_url,
            timeout=parse_timeout(self.option("TIMEOUT")),
            retries=int(self.option("RETRIES", 2)),
            idempotency_headers=tuple(idempotency_headers),
            default_headers={"Accept": "application/json", **headers},
            error_message=_error_message,
            secrets=self._secrets,
        )

    @cached_property
    def http(self) -> ProcessorHTTPClient:
        """The API client (``BASE_URL``); POSTs are retried only with an idempotency key."""
        header = self._idempotency_header
        return self._client(
            str(self.option("BASE_URL") or DEFAULT_BASE_URL),
            (header,) if header else (),
            {ACCOUNT_HEADER: self._account_uid},
        )

    @cached_property
    def auth_http(self) -> ProcessorHTTPClient:
        """The token-endpoint client (``AUTH_URL``).

        A client-credentials grant has no side effect, so token POSTs may always be retried:
        the Basic ``Authorization`` header every token request carries selects the retrying
        policy.
        """
        return self._client(str(self.option("AUTH_URL") or ""), ("Authorization",), {})

    # -- authentication ----------------------------------------------------------------
    def _fetch_access_token(self) -> tuple[str, float]:
        response = self.auth_http.request(
            "POST",
            "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": self.option("SCOPE") or DEFAULT_SCOPE},
            auth=(str(self.option("CLIENT_ID") or ""), str(self.option("CLIENT_SECRET") or "")),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            allow_statuses=(400, 401, 403),
        )
        body = self._json(response)
        if response.status_code >= 400:
            message, code = _error_message(body, response)
            code = code or "authentication_failed"
            text = redact(f"Caselle refused the client credentials ({message or code})", self._secrets())
            raise AuthenticationError(text, code=code, http_status=response.status_code, processor=self.name)
        token, expires_in = body.get("access_token"), body.get("expires_in", 3600)
        if (
            not isinstance(token, str)
            or not token
            or str(body.get("token_type", "Bearer")).lower() != "bearer"
            or isinstance(expires_in, bool)
            or not isinstance(expires_in, (int, float))
        ):
            raise ProcessorUnavailable(
                "Caselle's token endpoint answered without a bearer token",
                code="bad_response",
                http_status=response.status_code,
                processor=self.name,
            )
        return token, float(expires_in)

    def _json(self, response: requests.Response) -> Any:
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise ProcessorUnavailable(
                "Caselle answered with a body that is not JSON",
                code="bad_response",
                http_status=response.status_code,
                processor=self.name,
            ) from None

    def _call(
        self,
        method: str,
        route: str,
        *,
        path_params: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str = "",
    ) -> Any:
        """One API call with the bearer token; a 401 refreshes the token and repeats it once."""
        headers = {}
        if idempotency_key and self._idempotency_header:
            headers[self._idempotency_header] = idempotency_key
        for attempt in (1, 2):
            token = self._tokens.get()
            response = self.http.request(
                method,
                route,
                path_params=path_params,
                query=query,
                json=json,
                headers={**headers, "Authorization": f"Bearer {token}"},
                expect_json=False,
                allow_statuses=(401,) if attempt == 1 else (),
            )
            if response.status_code != 401:
                return self._json(response)
            self._tokens.invalidate(token)
        raise AssertionError("unreachable: the second 401 raises")  # pragma: no cover

    # -- customers ---------------------------------------------------------------------
    @staticmethod
    def _customer_fields(data: CustomerData) -> dict[str, str]:
        return {k: v for k, v in (("name", data.name), ("email", data.email)) if v}

    def _customer(self, body: Mapping[str, Any]) -> ProcessorCustomer:
        uid = body.get("uid")
        if not uid:
            raise ProcessorUnavailable(
                "Caselle answered without a customer uid", code="bad_response", processor=self.name
            )
        return ProcessorCustomer(
            id=str(uid),
            default_method_id=str(body.get("default_saved_payment_method_uid") or ""),
            raw=_sanitize(body),
        )

    def find_customer(self, reference_id: str) -> ProcessorCustomer | None:
        """The customer with this ``reference_id`` (unique per payment account), if any."""
        body = self._call(
            "GET",
            "/api/customers",
            query={"$filter": f"reference_id eq {_odata_string(reference_id)}", "$top": 1},
        )
        found = [c for c in _items(body) if c.get("reference_id") == reference_id]
        return self._customer(found[0]) if found else None

    def create_customer(self, data: CustomerData) -> ProcessorCustomer:
        try:
            return self._customer(
                self._call(
                    "POST",
                    "/api/customers",
                    json={"reference_id": data.reference_id, **self._customer_fields(data)},
                )
            )
        except InvalidRequestError as exc:
            if not is_create_conflict(exc):
                raise
            # Documented ("Customers & wallets"): "If a create conflicts, fetch instead: another
            # request may have created the customer concurrently."  How a conflict is answered is not
            # documented, so the status (409) and the body (``{code, message, …}`` naming a conflict
            # or an existing reference_id, at 400/409/422) both count; the fetch decides.
            existing = self.find_customer(data.reference_id)
            if existing is None:
                raise
            return existing

    def update_customer(self, customer: CustomerRef, data: CustomerData) -> ProcessorCustomer:
        return self._customer(
            self._call(
                "PUT",
                "/api/customers/{customer}",
                path_params={"customer": customer.id},
                json=self._customer_fields(data),
            )
        )

    def delete_customer(self, customer: CustomerRef) -> None:
        self._call("DELETE", "/api/customers/{customer}", path_params={"customer": customer.id})

    # -- payment methods -----------------------------------------------------------------
    def _method(self, item: Mapping[str, Any], token: str = "") -> VaultedMethod:
        pm = item.get("payment_method") or {}
        ptype = pm.get("payment_method_type") or ("ach" if "ach" in pm else "credit")
        method_type = METHOD_TYPE_OF.get(ptype, METHOD_CARD)
        details = pm.get(PAYMENT_TYPES[method_type]) or {}
        uid = item.get("saved_payment_method_uid") or item.get("uid")
        if not uid:
            raise ProcessorUnavailable(
                "Caselle answered without a saved_payment_method_uid",
                code="bad_response",
                processor=self.name,
            )
        return VaultedMethod(
            token=token or str(details.get("fingerprint") or ""),
            method_id=str(uid),
            method_type=method_type,
            fingerprint=_derived_fingerprint(method_type, details),
            brand=str(details.get("card_brand") or ""),
            last4=str(details.get("last4") or details.get("account_number_suffix") or ""),
            exp_month=details.get("exp_month"),
            exp_year=details.get("exp_year"),
            holder_name=str(details.get("holder_name") or ""),
            bank_name=str(details.get("bank_name") or ""),
            account_type=str(details.get("account_type") or ""),
            verification_status=VERIFICATION_NOT_REQUESTED,
            status=_METHOD_STATUSES.get(str(item.get("status") or "active"), METHOD_ACTIVE),
            is_default=bool(item.get("is_default")),
            raw=_sanitize(item),
        )

    def vault_payment_method(self, request: VaultRequest) -> VaultedMethod:
        ptype, details = decode_browser_token(request.temporary_token)
        if METHOD_TYPE_OF[ptype] != request.method_type:
            raise InvalidRequestError(
                f"the temporary token holds a {METHOD_TYPE_OF[ptype]} method, not a {request.method_type}",
                code="method_type_mismatch",
                processor=self.name,
            )
        if request.holder_name:
            details["holder_name"] = request.holder_name
        try:
            saved = self._call(
                "POST",
                "/api/customers/{customer}/payment-methods",
                path_params={"customer": request.customer.id},
                json={"payment_method": {"payment_method_type": ptype, ptype: details}},
                idempotency_key=request.idempotency_key,
            )
        except InvalidRequestError as exc:
            if exc.code in TEMPORARY_TOKEN_CODES:
                raise TemporaryTokenError(
                    exc.message, code=exc.code, http_status=exc.http_status, processor=self.name
                ) from None
            if exc.code in VERIFICATION_CODES:
                raise VerificationFailedError(
                    exc.message, code=exc.code, http_status=exc.http_status, processor=self.name
                ) from None
            raise
        method = self._method(_with_display_data(saved, ptype, details))
        if not method.token:
            raise ProcessorUnavailable(
                "Caselle saved the method but answered without its permanent token",
                code="bad_response",
                processor=self.name,
            )
        if request.make_default and not method.is_default:
            self.set_default_payment_method(request.customer, method.ref)
            method = replace(method, is_default=True)
        return method

    # -- browser checkout -------------------------------------------------------------------
    def prepare_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """The client config for Caselle's payment SDK (``GET /api/paymentaccounts/{uid}/
        client-config``): ``processor`` ("zift"), ``config`` (``account_id``, ``api_key``, a
        ``temporary_password`` that expires at ``expiration_date`` — Zift's browser credentials,
        made for the page) and ``supported_methods``.  The browser gets exactly that; Caselle's
        API client secret and bearer token never.

        ``@caselle/payment-sdk`` is distributed as a package and no script URL is published:
        the shop hosts its browser build and names it in ``JS_SDK_URL`` (required here).
        """
        url, integrity = self.sdk_script()
        if not url:
            raise UnsupportedOperation(
                "Caselle publishes no script URL for its payment SDK: host the browser build of "
                "@caselle/payment-sdk and set OPTIONS['JS_SDK_URL']", processor=self.name)
        body = self._call("GET", "/api/paymentaccounts/{uid}/client-config",
                          path_params={"uid": self._account_uid})
        body = body if isinstance(body, Mapping) else {}
        config = body.get("config") if isinstance(body.get("config"), Mapping) else {}
        if not config.get("temporary_password"):
            raise ProcessorUnavailable("Caselle answered without a client config", code="bad_response",
                                       processor=self.name)
        expires = None
        try:
            expires = datetime.fromisoformat(str(config.get("expiration_date")).replace("Z", "+00:00"))
        except ValueError:
            pass
        return CheckoutSession(
            processor=self.name, sdk_url=url, sdk_integrity=integrity, expires_at=expires,
            client={"processor": str(body.get("processor") or ""),
                    "config": {k: config[k] for k in ("account_id", "api_key", "temporary_password",
                                                      "expiration_date") if k in config},
                    "supportedMethods": [m for m in body.get("supported_methods") or () if isinstance(m, str)]},
        )

    def _saved_methods(self, customer: CustomerRef) -> list[dict[str, Any]]:
        return _items(
            self._call(
                "GET", "/api/customers/{customer}/payment-methods", path_params={"customer": customer.id}
            )
        )

    def list_payment_methods(self, customer: CustomerRef) -> list[VaultedMethod]:
        """Caselle's list is sanitized: the methods come back without their token (``token == ""``)."""
        return [self._method(item) for item in self._saved_methods(customer)]

    def fetch_payment_method(self, customer: CustomerRef, method: MethodRef) -> VaultedMethod:
        for item in self._saved_methods(customer):
            if item.get("saved_payment_method_uid") == method.method_id:
                return self._method(item, token=method.token)
        raise NotFoundError("Caselle has no such saved payment method for this customer", processor=self.name)

    def fetch_payment_methods(self, customer: CustomerRef, methods: list[MethodRef]) -> list[VaultedMethod | None]:
        """One wallet listing answers for all of them (Caselle documents no single-method GET)."""
        try:
            items = {item.get("saved_payment_method_uid"): item for item in self._saved_methods(customer)}
        except NotFoundError:  # the customer itself is gone
            return [None] * len(methods)
        return [self._method(items[m.method_id], token=m.token) if m.method_id in items else None for m in methods]

    def delete_payment_method(self, customer: CustomerRef, method: MethodRef) -> None:
        self._call(
            "DELETE",
            "/api/customers/{customer}/payment-methods/{method}",
            path_params={"customer": customer.id, "method": method.method_id},
        )

    def set_default_payment_method(self, customer: CustomerRef, method: MethodRef) -> None:
        self._call(
            "PUT",
            "/api/customers/{customer}/default-payment-method",
            path_params={"customer": customer.id},
            json={"saved_payment_method_uid": method.method_id},
        )

    def import_payment_methods(self, customer: CustomerRef, items: Sequence[ImportItem]) -> ImportResult:
        """Bulk-import existing processor tokens as saved methods of ``customer``."""
        if not items:
            return ImportResult()
        body = self._call(
            "POST",
            "/api/saved-payment-methods/import",
            json={
                "items": [
                    {"customer_uid": customer.id, "payment_method": item.payment_method()} for item in items
                ]
            },
        )
        imported = body.get("imported") if isinstance(body, dict) else None
        failed = body.get("failed") if isinstance(body, dict) else None
        methods = [self._method(entry) for entry in (imported or []) if isinstance(entry, dict)]
        failures = [
            ImportFailure(
                index=int(f.get("index", -1)),
                code=str(f.get("code") or ""),
                message=redact(str(f.get("message") or ""), self._secrets()),
            )
            for f in (failed or [])
            if isinstance(f, dict)
        ]
        return ImportResult(methods=tuple(methods), failures=tuple(failures))

    # -- money -------------------------------------------------------------------------
    def _check_amount(self, amount: Any) -> int:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise InvalidRequestError(
                "amount must be a positive integer number of cents",
                code="invalid_amount",
                processor=self.name,
            )
        return amount

    def _default_method(self, customer: CustomerRef) -> MethodRef:
        for method in self.list_payment_methods(customer):
            if method.is_default:
                return MethodRef(
                    token=method.token or method.method_id,
                    method_id=method.method_id,
                    method_type=method.method_type,
                )
        raise InvalidRequestError(
            "the customer has no default saved payment method at Caselle",
            code="no_default_method",
            processor=self.name,
        )

    def _result(
        self, payment: Mapping[str, Any], status: str | None = None, *, currency: str = ""
    ) -> ChargeResult:
        status = status or _PAYMENT_STATUSES.get(str(payment.get("status") or ""), CHARGE_FAILED)
        amount = int(payment.get("base_amount") or 0)
        captured = status in (CHARGE_CAPTURED, CHARGE_REFUNDED)
        return ChargeResult(
            reference=str(payment.get("uid") or ""),
            status=status,
            amount=amount,
            currency=str(payment.get("currency") or currency),
            amount_captured=amount if captured else 0,
            amount_refunded=int(payment.get("refunded_amount") or 0),
            raw=_sanitize(payment),
        )

    def _refused(self, exc: InvalidRequestError, reference: str, amount: int, currency: str) -> ChargeResult:
        """A decline or processor failure as a result; any other refusal is raised."""
        if exc.code in DECLINE_CODES:
            status = CHARGE_DECLINED
        elif exc.code in FAILURE_CODES:
            status = CHARGE_FAILED
        else:
            raise exc
        return ChargeResult(
            reference=reference,
            status=status,
            amount=amount,
            currency=currency,
            failure_code=exc.code,
            failure_message=exc.message,
            raw={"code": exc.code, "http_status": exc.http_status},
        )

    def charge(self, request: ChargeRequest) -> ChargeResult:
        amount = self._check_amount(request.amount)
        currency = request.currency.upper()
        method = request.method or self._default_method(request.customer)
        key = request.idempotency_key
        body = {
            "base_amount": amount,
            "tax_amount": 0,
            "currency": currency,
            "reference_id": request.reference or key or uuid.uuid4().hex,
            "payment_method": {
                "payment_method_type": WALLET_TYPES.get(method.method_type, "wallet_credit"),
                "wallet": {"saved_payment_method_uid": method.method_id},
            },
        }
        try:  # phase 1: validate (fee quote)
            payment = self._call(
                "POST", "/api/payments", json=body, idempotency_key=key and f"{key}-validate"
            )
        except InvalidRequestError as exc:
            return self._refused(exc, "", amount, currency)
        if not payment.get("uid"):
            raise ProcessorUnavailable(
                "Caselle answered without a payment uid", code="bad_response", processor=self.name
            )
        validated = {**body, **payment}
        if not request.capture:
            return self._result(validated, CHARGE_AUTHORIZED)
        return self._capture(validated, body["payment_method"], key and f"{key}-capture")

    def _capture(
        self, payment: Mapping[str, Any], payment_method: Mapping[str, Any], key: str
    ) -> ChargeResult:
        """Phase 2: capture, repeating exactly the validated amounts and method."""
        body = {
            k: payment[k]
            for k in ("base_amount", "tax_amount", "processing_fee_amount", "currency", "reference_id")
            if k in payment
        }
        body["payment_method"] = payment_method
        try:
            captured = self._call(
                "POST",
                "/api/payments/{payment}/capture",
                path_params={"payment": payment["uid"]},
                json=body,
                idempotency_key=key,
            )
        except InvalidRequestError as exc:
            return self._refused(
                exc,
                str(payment["uid"]),
                int(payment.get("base_amount") or 0),
                str(payment.get("currency") or ""),
            )
        return self._result({**payment, **captured}, CHARGE_CAPTURED)

    def _payment(self, reference: str) -> dict[str, Any]:
        return self._call("GET", "/api/payments/{payment}", path_params={"payment": reference})

    # Lost answers (docs/reliability.md): sending the validation again under ``<key>-validate``
    # replays the same payment (Caselle's Idempotency-Key; a validation is only a fee quote, so a
    # new one moves no money), and the payment's status says whether it was captured.
    def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        key = request.idempotency_key
        if not key:
            raise UnsupportedOperation("a Caselle payment is found by its idempotency key", processor=self.name)
        method = request.method or self._default_method(request.customer)
        body = {
            "base_amount": self._check_amount(request.amount),
            "tax_amount": 0,
            "currency": request.currency.upper(),
            "reference_id": request.reference or key,
            "payment_method": {
                "payment_method_type": WALLET_TYPES.get(method.method_type, "wallet_credit"),
                "wallet": {"saved_payment_method_uid": method.method_id},
            },
        }
        try:
            validated = self._call("POST", "/api/payments", json=body, idempotency_key=f"{key}-validate")
        except InvalidRequestError:
            return None  # refused at validation: nothing was charged
        if not validated.get("uid"):
            return None
        payment = self._payment(str(validated["uid"]))
        state = _PAYMENT_STATUSES.get(str(payment.get("status")))
        if state in (None, CHARGE_AUTHORIZED) and request.capture:
            return None  # validated only: the capture never happened
        return self._result({**body, **payment}, state or CHARGE_AUTHORIZED)

    def fetch_charge(self, reference: str) -> ChargeResult:
        payment = self._payment(reference)
        return self._result(payment, _PAYMENT_STATUSES.get(str(payment.get("status")), CHARGE_AUTHORIZED))

    def capture(
        self, reference: str, amount: int | None = None, *, idempotency_key: str = ""
    ) -> ChargeResult:
        payment = self._payment(reference)
        if _PAYMENT_STATUSES.get(str(payment.get("status"))) == CHARGE_CAPTURED:
            return self._result(payment)  # already captured (e.g. a retry after a lost answer)
        if amount is not None and amount != payment.get("base_amount"):
            raise InvalidRequestError(
                "Caselle captures exactly the validated amount; validate a new payment "
                "for a different amount",
                code="partial_capture_unsupported",
                processor=self.name,
            )
        echo = payment.get("payment_method") or {}
        wallet = echo.get("wallet") or {}
        if echo.get("payment_method_type") not in WALLET_TYPES.values() or not wallet.get(
            "saved_payment_method_uid"
        ):
            raise InvalidRequestError(
                "only wallet payments can be captured from their reference",
                code="not_a_wallet_payment",
                processor=self.name,
            )
        method = {
            "payment_method_type": echo["payment_method_type"],
            "wallet": {"saved_payment_method_uid": wallet["saved_payment_method_uid"]},
        }
        return self._capture(payment, method, idempotency_key)

    def void(self, reference: str, *, idempotency_key: str = "") -> ChargeResult:
        raise UnsupportedOperation(
            "Caselle has no operation to cancel a validated payment; a validation is a "
            "fee quote and is simply never captured",
            processor=self.name,
        )

    def refund(self, reference: str, amount: int | None = None, *, idempotency_key: str = "") -> ChargeResult:
        body = {} if amount is None else {"amount": self._check_amount(amount)}
        payment = self._call(
            "POST",
            "/api/payments/{payment}/refund",
            path_params={"payment": reference},
            json=body,
            idempotency_key=idempotency_key,
        )
        return self._result(payment, CHARGE_REFUNDED)

    # -- webhooks ----------------------------------------------------------------------
    def fetch_webhook_secret(self) -> str:
        """The payment account's signing secret (``GET /api/webhooks/secret``); store it as WEBHOOK_SECRET."""
        body = self._call("GET", "/api/webhooks/secret")
        secret = body.get("secret") if isinstance(body, dict) else None
        if not isinstance(secret, str) or not secret:
            raise ProcessorUnavailable(
                "Caselle answered without a webhook secret", code="bad_response", processor=self.name
            )
        return secret

    @staticmethod
    def _payload(request: WebhookRequest, error: type[WebhookVerificationError]) -> dict[str, Any]:
        try:
            payload = json.loads(request.body)
        except (ValueError, TypeError):
            raise error("body is not JSON") from None
        if not isinstance(payload, dict):
            raise error("body is not a JSON object")
        return payload

    def verify_webhook(self, request: WebhookRequest) -> None:
        """HMAC-SHA256 (hex) over ``"{timestamp}.{raw body}"``, the timestamp being the body's own."""
        secrets = self._webhook_secrets()
        if not secrets:
            raise WebhookVerificationError("no webhook secret configured")
        header = str(self.option("WEBHOOK_SIGNATURE_HEADER") or DEFAULT_SIGNATURE_HEADER)
        provided = request.header(header).strip()
        if not provided:
            raise WebhookVerificationError("missing signature")
        if provided.lower().startswith("sha256="):
            provided = provided[len("sha256=") :]
        provided = provided.lower()
        if not _HEX_SIGNATURE.match(provided):
            raise WebhookVerificationError("malformed signature")
        if not isinstance(request.body, (bytes, bytearray)):
            raise WebhookVerificationError("body is not bytes")
        body = bytes(request.body)
        # Verify first, parse after: the signed timestamp sits inside the body, so its candidates
        # are found with a bounded pattern and the HMAC checked before the (unauthenticated) body is
        # parsed as JSON; the parsed top-level timestamp must then be the one that was signed.
        candidates = list(dict.fromkeys(m.group(1) for m in _TIMESTAMP_FIELD.finditer(body)))[:4]
        signed_stamp = next((
            stamp for stamp in candidates
            if any(hmac.compare_digest(hmac.new(s.encode("utf-8"), stamp + b"." + body, hashlib.sha256).hexdigest(),
                                       provided) for s in secrets)
        ), None)
        if signed_stamp is None:
            raise WebhookVerificationError("bad signature" if candidates else "missing or malformed timestamp")
        payload = self._payload(request, WebhookVerificationError)
        timestamp = payload.get("timestamp")
        if isinstance(timestamp, bool) or not isinstance(timestamp, int) or str(timestamp).encode() != signed_stamp:
            raise WebhookVerificationError("missing or malformed timestamp")
        now = (request.received_at or datetime.now(timezone.utc)).timestamp()
        if abs(now - timestamp) > self._webhook_tolerance:
            raise WebhookVerificationError("timestamp outside tolerance")

    def webhook_event_id(self, request: WebhookRequest) -> tuple[str, str]:
        payload = self._payload(request, WebhookParseError)
        event_id = payload.get("webhook_id")
        if not isinstance(event_id, str) or not event_id:
            raise WebhookParseError("missing webhook_id")
        return event_id, str(payload.get("event_type") or "")

    def parse_webhook(self, request: WebhookRequest) -> list[NormalizedEvent]:
        payload = self._payload(request, WebhookParseError)
        event_id, event_type = self.webhook_event_id(request)
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        timestamp = payload.get("timestamp")
        occurred = (
            datetime.fromtimestamp(timestamp, timezone.utc)
            if isinstance(timestamp, int) and not isinstance(timestamp, bool)
            else None
        )
        common = {
            "event_id": event_id,
            "processor_event_type": event_type,
            "occurred_at": occurred,
            "raw": _sanitize(payload),
        }
        if event_type == "provider.noc":
            ids = tuple(str(i) for i in data.get("saved_payment_method_ids") or () if i)
            closed = data.get("change_type") == "account_closed"
            return [
                NormalizedEvent(
                    type=EVENT_PAYMENT_METHOD_CLOSED if closed else EVENT_PAYMENT_METHOD_UPDATED,
                    customer_id=str(data.get("customer_uid") or ""),
                    payment_method_ids=ids,
                    data={"change_type": str(data.get("change_type") or "")},
                    **common,
                )
            ]
        if event_type in _EVENT_TYPES:
            payment = data.get("payment") if isinstance(data.get("payment"), dict) else {}
            reference = data.get("payment_uid") or data.get("uid") or payment.get("uid") or ""
            facts = {
                k: data[k]
                for k in (
                    "status",
                    "base_amount",
                    "total_amount",
                    "refunded_amount",
                    "reference_id",
                    "code",
                    "message",
                )
                if k in data
            }
            if event_type.startswith("provider."):
                facts["reason"] = event_type.split(".", 1)[1]
            return [
                NormalizedEvent(
                    type=_EVENT_TYPES[event_type],
                    charge_reference=str(reference),
                    customer_id=str(data.get("customer_uid") or ""),
                    data=facts,
                    **common,
                )
            ]
        # checkout_session.* (hosted sessions, not used here), provider.chargeback, anything new.
        return [NormalizedEvent(type=EVENT_UNKNOWN, **common)]
