"""ProcessOut (Smart Router API) backend.

* HTTP Basic with the project id (user) and project secret (password); JSON bodies;
  ``API-Version: 1.4.0.0``; ``Idempotency-Key`` on every money or vault POST that has a key.
* Customers are found again by ``reference_id`` through their ``metadata`` (a scan of the
  newest customers) and created with an idempotency key derived from the reference.
* A vaulted method is a *customer token* (``tok_…``) made from a browser card token
  (``card_…``, from processout.js); with ``VERIFY_TOKENS`` ProcessOut verifies the card with
  a zero/one-unit payment first.
* A charge is an invoice: ``POST /invoices`` then ``/invoices/{id}/capture`` (or
  ``/authorize``) with ``source`` = the token, or the customer id to charge its default
  token.  The charge reference is the invoice id.
* Webhooks are not signed: a delivery only names an event.  ``parse_webhook`` re-fetches
  ``GET /events/{id}`` and trusts only that answer ("zero trust").

Amounts: ProcessOut uses decimal strings in the currency's major unit ("19.99"); they are
converted exactly by ``vault_wallets.processors.money`` (``decimal`` and the ISO 4217 exponent).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP
from functools import cached_property
from typing import Any

from requests.auth import HTTPBasicAuth

from .base import (
    CHARGE_AUTHORIZED,
    CHARGE_CAPTURED,
    CHARGE_DECLINED,
    CHARGE_FAILED,
    CHARGE_REFUNDED,
    CHARGE_VOIDED,
    EVENT_CHARGE_FAILED,
    EVENT_CHARGE_REFUNDED,
    EVENT_CHARGE_SUCCEEDED,
    EVENT_PAYMENT_METHOD_CLOSED,
    EVENT_PAYMENT_METHOD_UPDATED,
    EVENT_TYPES,
    EVENT_UNKNOWN,
    EVENT_VERIFICATION_FAILED,
    EVENT_VERIFICATION_SUCCEEDED,
    METHOD_ACTIVE,
    METHOD_CARD,
    METHOD_CLOSED,
    METHOD_EXPIRED,
    VERIFICATION_FAILED,
    VERIFICATION_PENDING,
    VERIFICATION_STATUSES,
    VERIFICATION_SUCCESS,
    VERIFICATION_UNKNOWN,
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
    ProcessorUnavailable,
    TemporaryTokenError,
    UnsupportedOperation,
    VaultedMethod,
    VaultRequest,
    VerificationFailedError,
    WebhookParseError,
    WebhookRequest,
    WebhookVerificationError,
    derived_fingerprint,
)
from .http import ProcessorHTTPClient, parse_timeout
from .money import to_major_string, to_minor

DEFAULT_BASE_URL = "https://api.processout.com"
#: A sandbox credential is the project id with this prefix (processout.js: ``sandbox`` is set when the
#: project id starts with ``test-``); the objects and events of that project carry the id without it.
SANDBOX_PREFIX = "test-"
API_VERSION = "1.4.0.0"
IDEMPOTENCY_HEADER = "Idempotency-Key"
PAGE_LIMIT = 100

#: Customer metadata keys holding vault_wallets' reference (metadata is string → string).
REFERENCE_KEY = "vault_wallets_reference_id"
ACCOUNT_KEY = "vault_wallets_account"

# --------------------------------------------------------------------------------------
# Money
# --------------------------------------------------------------------------------------


def to_minor_units(value: Any, currency: str) -> int:
    """``"19.99", "USD"`` → ``1999``; empty → 0.  Sub-minor digits round half up."""
    if value in (None, ""):
        return 0
    try:
        return to_minor(value, currency, rounding=ROUND_HALF_UP)
    except ValueError:
        raise ProcessorUnavailable(
            "ProcessOut answered with an amount that is not a number", code="bad_response",
            processor="processout",
        ) from None


# --------------------------------------------------------------------------------------
# Sanitizing (what may be kept in ``raw``: never a token id, a card id or a card number)
# --------------------------------------------------------------------------------------

_CARD_FIELDS = ("scheme", "co_scheme", "type", "brand", "bank_name", "iin", "last_4_digits", "exp_month",
                "exp_year", "country_code", "expires_soon", "name", "cvc_check", "avs_check")
_TOKEN_FIELDS = ("type", "is_default", "is_chargeable", "verification_status", "summary", "description",
                 "metadata", "created_at")
_TRANSACTION_FIELDS = ("id", "invoice_id", "customer_id", "name", "status", "amount", "currency",
                       "authorized_amount", "captured_amount", "refunded_amount", "available_amount",
                       "authorized", "captured", "voided", "refunded", "chargedback", "error_code",
                       "gateway_name", "three_d_s_status", "metadata", "sandbox", "created_at")
_CUSTOMER_FIELDS = ("id", "project_id", "currency", "first_name", "last_name", "email", "phone_number",
                    "address1", "address2", "city", "state", "zip", "country_code", "metadata", "sandbox",
                    "created_at")


def _pick(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: obj[k] for k in fields if isinstance(obj, Mapping) and k in obj}


def _card_raw(card: Any) -> dict[str, Any]:
    return _pick(card, _CARD_FIELDS)


def _token_raw(token: Any) -> dict[str, Any]:
    raw = _pick(token, _TOKEN_FIELDS)
    if isinstance(token, Mapping) and isinstance(token.get("card"), Mapping):
        raw["card"] = _card_raw(token["card"])
    return raw


def _transaction_raw(transaction: Any) -> dict[str, Any]:
    return _pick(transaction, _TRANSACTION_FIELDS)


def _error_message(body: Any, response) -> tuple[str, str]:
    """ProcessOut errors: ``{"success": false, "error_type": "…", "message": "…"}``."""
    if isinstance(body, Mapping):
        return str(body.get("message") or ""), str(body.get("error_type") or "")
    return "", ""


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def same_project(object_project_id: Any, credential: Any) -> bool:
    """Whether an object's ``project_id`` names the project of the configured ``PROJECT_ID``.

    ProcessOut's sandbox credential is ``test-proj_X`` while the objects and events of that project
    carry ``project_id`` ``proj_X``: the docs' project id is ``proj_gAO1…`` and every curl example
    authenticates as ``test-proj_gAO1…`` (GitHub ``processout/documentation`` ``source/_projectID.erb``
    and ``source/_header-curl.erb``; ../shared/PROCESSORS.md "Corrections").  So the ``test-`` prefix
    of the credential is ignored, and nothing else: ``proj_Y`` or ``test-proj_Y`` never matches
    ``test-proj_X``.  (Our fact sheet said only that sandbox project ids start with ``test-``; an
    earlier version compared the strings and refused every sandbox event.)
    """
    if not isinstance(object_project_id, str) or not object_project_id or not credential:
        return False
    credential = str(credential)
    bare = credential[len(SANDBOX_PREFIX):] if credential.startswith(SANDBOX_PREFIX) else credential
    return object_project_id in (credential, bare)


_EVENT_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")

#: Transaction events (documented) → normalized types.  Voids have no normalized type.
TRANSACTION_EVENTS = {
    "transaction.authorized": EVENT_CHARGE_SUCCEEDED,
    "transaction.captured": EVENT_CHARGE_SUCCEEDED,
    "transaction.failed": EVENT_CHARGE_FAILED,
    "transaction.refunded": EVENT_CHARGE_REFUNDED,
}


class ProcessOutProcessor(BaseProcessor):
    """ProcessOut customer tokens, invoices and zero-trust webhooks.  See docs/processors/processout.md."""

    name = "processout"
    display_name = "ProcessOut"
    supports_client_token = False
    supports_addresses = False
    required_options = ("PROJECT_ID", "PROJECT_SECRET")
    secret_options = ("PROJECT_SECRET",)

    # -- configuration -------------------------------------------------------------------
    def check_options(self) -> list[str]:
        problems = super().check_options()
        overrides = self.option("EVENT_TYPES") or {}
        if not isinstance(overrides, Mapping):
            problems.append("OPTIONS['EVENT_TYPES'] must map ProcessOut event names to event types")
        else:
            problems += [f"OPTIONS['EVENT_TYPES'][{name!r}] is not one of {EVENT_TYPES}"
                         for name, kind in overrides.items() if kind not in EVENT_TYPES]
        try:
            parse_timeout(self.option("TIMEOUT"))
        except (TypeError, ValueError):
            problems.append("OPTIONS['TIMEOUT'] must be a number or a (connect, read) pair of numbers")
        return problems

    def _secrets(self) -> tuple[str, ...]:
        return tuple(str(self.options[k]) for k in self.secret_options if self.options.get(k))

    @cached_property
    def client(self) -> ProcessorHTTPClient:
        return ProcessorHTTPClient(
            processor=self.name,
            base_url=self.option("BASE_URL") or DEFAULT_BASE_URL,
            timeout=parse_timeout(self.option("TIMEOUT")),
            retries=int(self.option("RETRIES", 2)),
            idempotency_headers=(IDEMPOTENCY_HEADER,),
            default_headers={"API-Version": str(self.option("API_VERSION") or API_VERSION),
                             "Accept": "application/json"},
            error_message=_error_message,
            secrets=self._secrets,
            auth=HTTPBasicAuth(str(self.option("PROJECT_ID", "")), str(self.option("PROJECT_SECRET", ""))),
        )

    # -- transport helpers ---------------------------------------------------------------
    def _call(self, method: str, route: str, *, key: str = "", **kwargs: Any) -> dict[str, Any]:
        """One API call; ``key`` becomes the ``Idempotency-Key`` header (and makes a POST retryable)."""
        headers = {IDEMPOTENCY_HEADER: key} if key else None
        response = self.client.request(method, route, headers=headers, **kwargs)
        body = response.json() if response.content else {}
        if not isinstance(body, dict):
            raise ProcessorUnavailable("ProcessOut answered with an unexpected body", code="bad_response",
                                       http_status=response.status_code, processor=self.name)
        if body.get("success") is False:
            raise self.client.error_for(response)
        return body

    def _object(self, body: Mapping[str, Any], key: str) -> dict[str, Any]:
        obj = body.get(key)
        if not isinstance(obj, dict):
            raise ProcessorUnavailable(f"ProcessOut answered without a {key!r} object", code="bad_response",
                                       processor=self.name)
        return obj

    def _list(self, route: str, key: str, *, path_params: Mapping[str, Any] | None = None,
              order: str = "asc", max_pages: int = 0, **query: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paged list (``limit``/``order``/``start_after``, ``has_more``)."""
        start_after, pages = "", 0
        while True:
            params = {"limit": PAGE_LIMIT, "order": order, **query}
            if start_after:
                params["start_after"] = start_after
            body = self._call("GET", route, path_params=path_params, query=params)
            items = [item for item in body.get(key) or () if isinstance(item, dict)]
            yield from items
            pages += 1
            if not body.get("has_more") or not items or (max_pages and pages >= max_pages):
                return
            start_after = str(items[-1].get("id") or "")
            if not start_after:
                return

    # -- customers -------------------------------------------------------------------------
    def create_customer(self, data: CustomerData) -> ProcessorCustomer:
        existing = self._find_customer(data.reference_id)
        if existing is not None:
            return self._customer(existing)
        body = self._call("POST", "/customers", json=self._customer_payload(data),
                          key=self._customer_key(data.reference_id))
        return self._customer(self._object(body, "customer"))

    def update_customer(self, customer: CustomerRef, data: CustomerData) -> ProcessorCustomer:
        body = self._call("PUT", "/customers/{customer}", path_params={"customer": customer.id},
                          json=self._customer_payload(data))
        if not isinstance(body.get("customer"), dict):
            body = self._call("GET", "/customers/{customer}", path_params={"customer": customer.id})
        return self._customer(self._object(body, "customer"))

    def delete_customer(self, customer: CustomerRef) -> None:
        try:
            self._call("DELETE", "/customers/{customer}", path_params={"customer": customer.id})
        except NotFoundError:
            pass  # already gone (a retried delete whose first answer was lost)

    def _find_customer(self, reference_id: str) -> dict[str, Any] | None:
        """Scan the newest customers for our reference in their metadata (bounded by CUSTOMER_SCAN_PAGES)."""
        pages = int(self.option("CUSTOMER_SCAN_PAGES", 5))
        if pages <= 0:
            return None
        for customer in self._list("/customers", "customers", order="desc", max_pages=pages):
            metadata = customer.get("metadata") or {}
            if (isinstance(metadata, Mapping) and metadata.get(REFERENCE_KEY) == reference_id
                    and metadata.get(ACCOUNT_KEY) == self.account):
                return customer
        return None

    def _customer_key(self, reference_id: str) -> str:
        digest = hashlib.sha256(f"{self.account}\x1f{reference_id}".encode()).hexdigest()
        return f"vw-customer-{digest[:48]}"

    def _customer_payload(self, data: CustomerData) -> dict[str, Any]:
        first, _, last = (data.name or "").strip().partition(" ")
        metadata = {str(k): str(v) for k, v in (data.metadata or {}).items()}
        metadata.update({REFERENCE_KEY: data.reference_id, ACCOUNT_KEY: self.account})
        fields = {"first_name": first, "last_name": last.strip(), "email": data.email,
                  "phone_number": data.phone, "currency": (data.currency or "").upper()}
        if data.address is not None:
            fields.update(address1=data.address.line1, address2=data.address.line2, city=data.address.city,
                          state=data.address.state, zip=data.address.postal_code,
                          country_code=data.address.country.upper())
        return {**{k: v for k, v in fields.items() if v}, "metadata": metadata}

    def _customer(self, obj: Mapping[str, Any]) -> ProcessorCustomer:
        return ProcessorCustomer(id=str(obj.get("id") or ""), currency=str(obj.get("currency") or ""),
                                 default_method_id=str(obj.get("default_token_id") or ""),
                                 raw=_pick(obj, _CUSTOMER_FIELDS))

    # -- payment methods ------------------------------------------------------------------
    def vault_payment_method(self, request: VaultRequest) -> VaultedMethod:
        if request.temporary_token.startswith("tok_"):
            return self._claim_verified_token(request)
        if request.method_type != METHOD_CARD:
            raise UnsupportedOperation("vault_wallets vaults only cards with ProcessOut", processor=self.name)
        payload: dict[str, Any] = {"source": request.temporary_token, "expand": ["card"]}
        if request.make_default:
            payload["set_default"] = True
        if self.option("VERIFY_TOKENS", False):
            payload["verify"] = True
        if request.label:
            payload["metadata"] = {"label": request.label}
        try:
            body = self._call("POST", "/customers/{customer}/tokens", json=payload,
                              path_params={"customer": request.customer.id}, key=request.idempotency_key)
        except InvalidRequestError as exc:
            if exc.code.startswith("request.source"):
                raise TemporaryTokenError(exc.message, code=exc.code, http_status=exc.http_status,
                                          processor=self.name) from None
            raise
        method = self._method(self._object(body, "token"), body.get("customer_action"))
        if method.verification_status == VERIFICATION_FAILED:
            self._discard(request.customer, method.ref)
            raise VerificationFailedError("ProcessOut could not verify the card", processor=self.name)
        return method

    # -- browser checkout ---------------------------------------------------------------------
    # ProcessOut.js refuses to run unless loaded from *.processout.com (processout/processout.js
    # src/processout/processout.ts), so there is no self-hosting; ProcessOut publishes no SRI hash.
    js_sdk_url = "https://js.processout.com/processout.js"

    def prepare_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """ProcessOut.js needs only the public project id to tokenize (``card_…``, then vaulted by
        ``vault_payment_method`` with ``source``).  With ``VERIFY_TOKENS`` the server first creates
        a pending customer token (``POST /customers/{id}/tokens`` with ``verify=true``, seed 001
        step 3) and the browser completes it with ``makeCardToken`` — which needs the customer and
        token ids, so those two are handed to the page too (both useless without the secret)."""
        url, integrity = self.sdk_script()
        client: dict[str, Any] = {"projectId": str(self.option("PROJECT_ID", ""))}
        if self.option("VERIFY_TOKENS", False):
            body = self._call("POST", "/customers/{customer}/tokens", json={"verify": True},
                              path_params={"customer": request.customer.id})
            token = self._object(body, "token")
            client.update(customerId=request.customer.id, customerTokenId=str(token.get("id") or ""))
        return CheckoutSession(processor=self.name, sdk_url=url, sdk_integrity=integrity, client=client)

    def _claim_verified_token(self, request: VaultRequest) -> VaultedMethod:
        """The ``tok_…`` that ``makeCardToken`` completed in the browser: read it back under *this*
        shopper's customer (another customer's token is not found) and keep it if verified."""
        try:
            body = self._call("GET", "/customers/{customer}/tokens/{token}", query={"expand": "card"},
                              path_params={"customer": request.customer.id, "token": request.temporary_token})
        except NotFoundError:
            raise TemporaryTokenError("ProcessOut does not know this customer token for this shopper",
                                      processor=self.name) from None
        method = self._method(self._object(body, "token"))
        if method.verification_status == VERIFICATION_FAILED:
            self._discard(request.customer, method.ref)
            raise VerificationFailedError("ProcessOut could not verify the card", processor=self.name)
        if not method.last4:
            raise TemporaryTokenError("the customer token has no card yet (makeCardToken did not finish)",
                                      processor=self.name)
        if request.make_default and not method.is_default:
            self.set_default_payment_method(request.customer, method.ref)
            method = replace(method, is_default=True)
        return method

    def _discard(self, customer: CustomerRef, method: MethodRef) -> None:
        """Best effort: a token that failed verification is useless; do not leave it at ProcessOut."""
        try:
            self.delete_payment_method(customer, method)
        except (InvalidRequestError, ProcessorUnavailable):
            pass

    def fetch_payment_method(self, customer: CustomerRef, method: MethodRef) -> VaultedMethod:
        body = self._call("GET", "/customers/{customer}/tokens/{token}", query={"expand": "card"},
                          path_params={"customer": customer.id, "token": method.token})
        return self._method(self._object(body, "token"))

    def list_payment_methods(self, customer: CustomerRef) -> list[VaultedMethod]:
        tokens = self._list("/customers/{customer}/tokens", "tokens", path_params={"customer": customer.id},
                            expand="card")
        return [self._method(token) for token in tokens]

    def delete_payment_method(self, customer: CustomerRef, method: MethodRef) -> None:
        try:
            self._call("DELETE", "/customers/{customer}/tokens/{token}",
                       path_params={"customer": customer.id, "token": method.token})
        except NotFoundError:
            pass  # already gone

    def set_default_payment_method(self, customer: CustomerRef, method: MethodRef) -> None:
        self._call("PUT", "/customers/{customer}/tokens/{token}", json={"set_default": True},
                   path_params={"customer": customer.id, "token": method.token})

    def _method(self, token: Mapping[str, Any], customer_action: Any = None) -> VaultedMethod:
        card = token.get("card") if isinstance(token.get("card"), Mapping) else {}
        verification = str(token.get("verification_status") or "")
        raw = _token_raw(token)
        if isinstance(customer_action, Mapping):
            raw["customer_action"] = _pick(customer_action, ("type", "value"))
        token_id = str(token.get("id") or "")
        return VaultedMethod(
            token=token_id,
            method_id=token_id,
            method_type=METHOD_CARD,
            fingerprint=str(card.get("fingerprint") or "") or _derived_fingerprint(card),
            brand=str(card.get("scheme") or ""),
            last4=str(card.get("last_4_digits") or ""),
            exp_month=_as_int(card.get("exp_month")),
            exp_year=_as_int(card.get("exp_year")),
            holder_name=str(card.get("name") or ""),
            verification_status=(verification if verification in VERIFICATION_STATUSES
                                 else VERIFICATION_UNKNOWN),
            status=_token_status(token),
            is_default=bool(token.get("is_default")),
            raw=raw,
        )

    # -- money ------------------------------------------------------------------------------
    def charge(self, request: ChargeRequest) -> ChargeResult:
        if request.amount <= 0:
            raise InvalidRequestError("the amount must be positive", processor=self.name)
        key = request.idempotency_key
        invoice = {
            **(self.option("INVOICE_DEFAULTS") or {}),  # e.g. merchant_initiator_type, statement_descriptor
            "name": request.description or request.reference or "vault_wallets charge",
            "amount": to_major_string(request.amount, request.currency),
            "currency": request.currency.upper(),
            "customer_id": request.customer.id,
            **({"order_id": request.reference} if request.reference else {}),
        }
        body = self._call("POST", "/invoices", json=invoice, key=f"{key}:invoice" if key else "")
        invoice_id = str(self._object(body, "invoice").get("id") or "")
        action = "capture" if request.capture else "authorize"
        source = request.method.token if request.method is not None else request.customer.id
        return self._pay(invoice_id, action, {"source": source}, f"{key}:{action}" if key else "",
                         request.amount, request.currency.upper())

    # Lost answers (docs/reliability.md): the invoice is created under ``<key>:invoice``; sending
    # that request again replays the same invoice (ProcessOut's Idempotency-Key), and its
    # transaction says whether it was authorized/captured.  An invoice is not a payment: creating
    # one (when the first request never arrived) moves no money.
    def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        key = request.idempotency_key
        if not key:
            raise UnsupportedOperation("a ProcessOut charge is found by its idempotency key", processor=self.name)
        invoice = {
            **(self.option("INVOICE_DEFAULTS") or {}),
            "name": request.description or request.reference or "vault_wallets charge",
            "amount": to_major_string(request.amount, request.currency),
            "currency": request.currency.upper(),
            "customer_id": request.customer.id,
            **({"order_id": request.reference} if request.reference else {}),
        }
        body = self._call("POST", "/invoices", json=invoice, key=f"{key}:invoice")
        invoice_id = str(self._object(body, "invoice").get("id") or "")
        try:
            transaction = self._invoice_transaction(invoice_id)
        except NotFoundError:
            return None  # no transaction: never authorized
        result = self._result(invoice_id, transaction)
        status = str(transaction.get("status") or "")
        if result.status == CHARGE_FAILED and status not in ("failed",):
            return None  # waiting / pending: nothing authorized
        return result

    def fetch_charge(self, reference: str) -> ChargeResult:
        return self._result(reference, self._invoice_transaction(reference))

    def capture(self, reference: str, amount: int | None = None, *,
                idempotency_key: str = "") -> ChargeResult:
        transaction = self._invoice_transaction(reference)
        currency = str(transaction.get("currency") or "")
        payload: dict[str, Any] = {}
        if transaction.get("token_id"):
            payload["source"] = transaction["token_id"]
        if amount is not None:
            payload["capture_amount"] = to_major_string(amount, currency)
        total = amount if amount is not None else to_minor_units(transaction.get("amount"), currency)
        return self._pay(reference, "capture", payload, idempotency_key, total, currency)

    def void(self, reference: str, *, idempotency_key: str = "") -> ChargeResult:
        """``POST /invoices/{id}/void``.  A refused void is ``{"success": false, …}`` (raised by
        ``_call``); a ``success: true`` answer means the authorization is voided.

        ProcessOut's API reference documents the answer as ``{"success": true, "transaction": {}}``
        (docs.processout.com/reference/void-an-invoice) while its prose and the SDKs
        (processout-python ``processout/invoice.py`` ``Invoice.void``) read an updated transaction
        from it: both are handled.  When the transaction comes back empty (or without its state) it
        is read again from ``GET /invoices/{id}/transactions`` for the amounts; the status is
        ``voided`` either way, because ProcessOut said the void succeeded.
        """
        body = self._call("POST", "/invoices/{invoice}/void", path_params={"invoice": reference}, json={},
                          key=idempotency_key)
        transaction = body.get("transaction")
        if not isinstance(transaction, dict) or not (transaction.get("amount") and transaction.get("currency")):
            try:
                transaction = self._invoice_transaction(reference)
            except (InvalidRequestError, ProcessorUnavailable):
                # The void itself succeeded: a failed read-back must not make it look failed.
                return ChargeResult(reference=reference, status=CHARGE_VOIDED, amount=0, currency="",
                                    raw={"voided": True})
        result = self._result(reference, transaction)
        if result.status == CHARGE_VOIDED:
            return result
        return replace(result, status=CHARGE_VOIDED, failure_code="", failure_message="",
                       raw={**result.raw, "voided": True})

    def refund(self, reference: str, amount: int | None = None, *, idempotency_key: str = "") -> ChargeResult:
        transaction = self._invoice_transaction(reference)
        currency = str(transaction.get("currency") or "")
        if amount is None:
            amount = to_minor_units(transaction.get("available_amount"), currency)
        payload: dict[str, Any] = {"amount": to_major_string(amount, currency)}
        if self.option("REFUND_REASON"):
            payload["reason"] = str(self.option("REFUND_REASON"))
        path = {"transaction": transaction.get("id") or ""}
        self._call("POST", "/transactions/{transaction}/refunds", path_params=path, json=payload,
                   key=idempotency_key)
        body = self._call("GET", "/transactions/{transaction}", path_params=path)
        return self._result(reference, self._object(body, "transaction"))

    def _invoice_transaction(self, invoice_id: str) -> dict[str, Any]:
        body = self._call("GET", "/invoices/{invoice}/transactions", path_params={"invoice": invoice_id})
        return self._object(body, "transaction")

    _PAY_ROUTES = {"capture": "/invoices/{invoice}/capture", "authorize": "/invoices/{invoice}/authorize"}

    def _pay(self, invoice_id: str, action: str, payload: Mapping[str, Any], key: str, amount: int,
             currency: str) -> ChargeResult:
        try:
            body = self._call("POST", self._PAY_ROUTES[action], path_params={"invoice": invoice_id},
                              json=dict(payload), key=key)
        except InvalidRequestError as exc:
            status = _payment_failure(exc)
            if status is None:
                raise
            return ChargeResult(reference=invoice_id, status=status, amount=amount, currency=currency,
                                failure_code=exc.code, failure_message=exc.message,
                                raw={"error_type": exc.code})
        transaction = self._object(body, "transaction")
        action_required = body.get("customer_action")
        if isinstance(action_required, Mapping) and not transaction.get("authorized"):
            return ChargeResult(
                reference=invoice_id, status=CHARGE_DECLINED, amount=amount, currency=currency,
                failure_code="customer_action_required",
                failure_message="The card requires the customer's authentication (3-D Secure); "
                                "charge it while the customer is present.",
                raw={**_transaction_raw(transaction), "customer_action": _pick(action_required, ("type",))},
            )
        return self._result(invoice_id, transaction)

    def _result(self, reference: str, transaction: Mapping[str, Any]) -> ChargeResult:
        currency = str(transaction.get("currency") or "")
        status, code, message = _transaction_outcome(transaction)
        return ChargeResult(
            reference=reference,
            status=status,
            amount=to_minor_units(transaction.get("amount"), currency),
            currency=currency,
            amount_captured=to_minor_units(transaction.get("captured_amount"), currency),
            amount_refunded=to_minor_units(transaction.get("refunded_amount"), currency),
            failure_code=code,
            failure_message=message,
            raw=_transaction_raw(transaction),
        )

    # -- browser -------------------------------------------------------------------------------
    def get_client_token(self, customer: CustomerRef) -> None:
        """processout.js tokenizes with the (public) project id; there is no per-customer token."""
        return None

    # -- webhooks -------------------------------------------------------------------------------
    def verify_webhook(self, request: WebhookRequest) -> None:
        """Deliveries are unsigned; only their shape is checked here.  ``parse_webhook`` authenticates."""
        self._delivery(request)

    def webhook_event_id(self, request: WebhookRequest) -> tuple[str, str]:
        """The delivery's own claim, for de-duplication only (the type is re-read when parsing)."""
        return self._delivery(request)

    def parse_webhook(self, request: WebhookRequest) -> list[NormalizedEvent]:
        event_id, _claimed_type = self._delivery(request)
        return [self._normalize(self._fetch_event(event_id))]

    @staticmethod
    def _delivery(request: WebhookRequest) -> tuple[str, str]:
        raw = request.body
        try:
            body = json.loads(raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw)
        except (UnicodeDecodeError, ValueError, TypeError, AttributeError):
            raise WebhookParseError("body is not JSON") from None
        if not isinstance(body, dict):
            raise WebhookParseError("body is not a JSON object")
        event_id = body.get("event_id")
        if not isinstance(event_id, str) or not _EVENT_ID_RE.match(event_id):
            raise WebhookParseError("missing or malformed event_id")
        event_type = body.get("event_type")
        return event_id, event_type if isinstance(event_type, str) else ""

    def _fetch_event(self, event_id: str) -> dict[str, Any]:
        try:
            body = self._call("GET", "/events/{event}", path_params={"event": event_id})
        except NotFoundError:
            raise WebhookVerificationError("ProcessOut does not know this event") from None
        except AuthenticationError:
            raise  # our credentials are wrong: not the delivery's fault, let the worker retry and alert
        except InvalidRequestError:
            raise WebhookVerificationError("ProcessOut refused the event id") from None
        event = body.get("event")
        if not isinstance(event, dict) or event.get("id") != event_id:
            raise WebhookVerificationError("the re-fetched event does not match the delivery")
        if not same_project(event.get("project_id"), self.option("PROJECT_ID")):
            raise WebhookVerificationError("the event belongs to another ProcessOut project")
        sandbox = str(self.option("PROJECT_ID") or "").startswith(SANDBOX_PREFIX)
        if isinstance(event.get("sandbox"), bool) and event["sandbox"] != sandbox:
            raise WebhookVerificationError("the event's sandbox flag does not match the configured project")
        return event

    def _normalize(self, event: Mapping[str, Any]) -> NormalizedEvent:
        name = str(event.get("name") or "")
        data = event.get("data") if isinstance(event.get("data"), Mapping) else {}
        transaction = data.get("transaction") if isinstance(data.get("transaction"), Mapping) else None
        token = data.get("token") if isinstance(data.get("token"), Mapping) else None
        fields: dict[str, Any] = {}
        raw_data: dict[str, Any] = {}
        if transaction is not None:
            result = self._result(str(transaction.get("invoice_id") or ""), transaction)
            kind = TRANSACTION_EVENTS.get(name, EVENT_UNKNOWN)
            fields = {"charge_reference": result.reference,
                      "customer_id": str(transaction.get("customer_id") or ""),
                      "data": {"status": result.status, "currency": result.currency,
                               "failure_code": result.failure_code, "amount": result.amount,
                               "amount_captured": result.amount_captured,
                               "amount_refunded": result.amount_refunded}}
            raw_data = {"transaction": result.raw}
        elif token is not None:
            method = self._method(token)
            kind = _token_event_type(name, method)
            fields = {"payment_method_ids": (method.method_id,) if method.method_id else (),
                      "customer_id": str(token.get("customer_id") or ""),
                      "data": {"verification_status": method.verification_status, "status": method.status,
                               "last4": method.last4, "exp_month": method.exp_month,
                               "exp_year": method.exp_year, "brand": method.brand}}
            raw_data = {"token": _token_raw(token)}
        else:
            kind = EVENT_UNKNOWN
        overrides = self.option("EVENT_TYPES") or {}
        if name in overrides and overrides[name] in EVENT_TYPES:
            kind = overrides[name]
        return NormalizedEvent(
            type=kind, event_id=str(event.get("id") or ""), processor_event_type=name,
            occurred_at=_parse_time(event.get("fired_at")),
            raw={**_pick(event, ("id", "name", "sandbox", "fired_at")), "data": raw_data},
            **fields,
        )


# --------------------------------------------------------------------------------------
# Mapping helpers
# --------------------------------------------------------------------------------------


def _derived_fingerprint(card: Mapping[str, Any]) -> str:
    """Weaker stand-in when ProcessOut sends no ``fingerprint``."""
    if not (card.get("iin") or card.get("last_4_digits")):
        return ""
    return derived_fingerprint("card", *(card.get(k) or "" for k in
                                         ("scheme", "iin", "last_4_digits", "exp_month", "exp_year")))


def _token_status(token: Mapping[str, Any]) -> str:
    """``closed`` when ProcessOut says the token is not chargeable (and not merely awaiting verification)."""
    card = token.get("card") if isinstance(token.get("card"), Mapping) else {}
    if token.get("is_chargeable") is False and token.get("verification_status") != VERIFICATION_PENDING:
        return METHOD_CLOSED
    month, year = _as_int(card.get("exp_month")), _as_int(card.get("exp_year"))
    if month and year and 1 <= month <= 12:
        today = date.today()
        if (year, month) < (today.year, today.month):
            return METHOD_EXPIRED
    return METHOD_ACTIVE


def _token_event_type(name: str, method: VaultedMethod) -> str:
    lowered = name.lower()
    if "delet" in lowered:
        return EVENT_UNKNOWN  # removed by the merchant: nothing to notify
    if "verif" in lowered:
        if method.verification_status == VERIFICATION_SUCCESS:
            return EVENT_VERIFICATION_SUCCEEDED
        if method.verification_status == VERIFICATION_FAILED:
            return EVENT_VERIFICATION_FAILED
    if method.status == METHOD_CLOSED:
        return EVENT_PAYMENT_METHOD_CLOSED
    return EVENT_PAYMENT_METHOD_UPDATED


def _payment_failure(exc: InvalidRequestError) -> str | None:
    """A refused payment is a result: ``card.*`` → declined, ``gateway.*`` or HTTP 402 → failed."""
    if isinstance(exc, NotFoundError):
        return None
    if exc.code.startswith("card."):
        return CHARGE_DECLINED
    if exc.code.startswith("gateway.") or exc.http_status == 402:
        return CHARGE_FAILED
    return None


def _transaction_outcome(transaction: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(status, failure_code, failure_message)`` of a ProcessOut transaction."""
    status = str(transaction.get("status") or "")
    code = str(transaction.get("error_code") or "")
    if transaction.get("voided") or status == "voided":
        return CHARGE_VOIDED, "", ""
    if transaction.get("refunded") or status in ("refunded", "partially-refunded"):
        return CHARGE_REFUNDED, "", ""
    if transaction.get("captured") or status == "completed":
        return CHARGE_CAPTURED, "", ""
    if transaction.get("authorized") or status == "authorized":
        return CHARGE_AUTHORIZED, "", ""
    if status == "failed":
        return (CHARGE_DECLINED if code.startswith("card.") else CHARGE_FAILED), code, "The payment failed."
    return CHARGE_FAILED, code or status or "unknown", (
        f"ProcessOut reports the transaction as {status or 'unknown'}; its outcome arrives by webhook."
    )
