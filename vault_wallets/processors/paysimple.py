"""PaySimple API v4.

Customers, credit-card and ACH accounts, payments (a v4 payment is a sale: there is no
authorization-only payment, so ``capture=False`` is unsupported), void, reverse (refund),
the customer token PaySimpleJS needs, and webhooks.  See ``docs/processors/paysimple.md``
for the endpoint-by-endpoint mapping and for every inferred fact.

Amounts: PaySimple's ``Amount`` is decimal dollars; the interface's integer cents are
converted exactly with ``decimal`` (1999 → 19.99).  PaySimple processes USD only.

Authentication (``AUTH_SCHEME``):

* ``"basic"`` (default, PaySimple's recommended scheme): ``Authorization: basic {user}:{key}``
  literally, with no base64;
* ``"psserver"`` (legacy HMAC): ``PSSERVER accessid={user}; timestamp={ISO-8601};
  signature={base64(HMAC-SHA256(key=api key, msg=timestamp))}``, the timestamp within
  5 minutes of PaySimple's clock; computed afresh for every request.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import cached_property
from typing import Any

import requests

from .base import (
    CHARGE_CAPTURED,
    CHARGE_DECLINED,
    CHARGE_FAILED,
    CHARGE_REFUNDED,
    CHARGE_VOIDED,
    EVENT_CHARGE_FAILED,
    EVENT_CHARGE_REFUNDED,
    EVENT_CHARGE_SUCCEEDED,
    EVENT_CHARGE_VOIDED,
    EVENT_CUSTOMER_UPDATED,
    EVENT_PAYMENT_METHOD_UPDATED,
    EVENT_UNKNOWN,
    METHOD_ACH,
    METHOD_ACTIVE,
    METHOD_CARD,
    METHOD_EXPIRED,
    VERIFICATION_NOT_REQUESTED,
    AddressData,
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
    WebhookParseError,
    WebhookRequest,
    WebhookVerificationError,
    derived_fingerprint,
)
from .http import ProcessorHTTPClient, parse_timeout, redact
from .money import to_major, to_minor

logger = logging.getLogger("vault_wallets.processors.paysimple")

SANDBOX_URL = "https://sandbox-api.paysimple.com"
PRODUCTION_URL = "https://api.paysimple.com"
AUTH_BASIC = "basic"
AUTH_PSSERVER = "psserver"
AUTH_SCHEMES = (AUTH_BASIC, AUTH_PSSERVER)
DEFAULT_SIGNATURE_HEADER = "paysimple-hmac-sha256"
#: PaySimple documents these lifetimes; the token responses carry no expiry of their own.
CUSTOMER_TOKEN_LIFETIME = timedelta(minutes=15)
CHECKOUT_TOKEN_LIFETIME = timedelta(minutes=5)
#: ``Customer.CustomerAccount``: "28 characters max. Useful for assigning non-PaySimple Id".
CUSTOMER_ACCOUNT_MAX = 28
PAGE_SIZE = 200  # PaySimple's default and our page size for customer scans
RECENT_PAYMENTS = 200  # how far back the idempotency look-up reads a customer's payments
MAX_AMOUNT = Decimal("2000000.00")  # documented ceiling of one payment
CURRENCY = "USD"  # PaySimple processes US dollars only

# Payment.Status → normalized charge status, for the payment as it stands.
_SALE_STATUSES = {"authorized", "pending", "posted", "settled"}  # a v4 payment is a sale
_VOIDABLE_STATUSES = {"authorized", "pending", "posted"}
_REFUNDED_STATUSES = {"reversed", "reverseposted", "refundsettled"}
_FAILED_STATUSES = {"failed", "returned", "reversensf", "chargeback"}
# The same statuses as webhook payloads spell them (snake case, lower).
_EVENT_STATUS = {
    **{s: EVENT_CHARGE_SUCCEEDED for s in ("authorized", "pending", "posted", "settled")},
    **{s: EVENT_CHARGE_FAILED for s in ("failed", "returned", "reverse_n_s_f", "chargeback")},
    # documentation.paysimple.com/docs/payment-events lists these payment_status values too.
    **{s: EVENT_CHARGE_REFUNDED for s in ("reversed", "reverse_posted", "refund_settled")},
    "voided": EVENT_CHARGE_VOIDED,
}

_ISSUERS = {
    "visa": "visa", "12": "visa",
    "master": "mastercard", "mastercard": "mastercard", "13": "mastercard",
    "amex": "amex", "americanexpress": "amex", "14": "amex",
    "discover": "discover", "15": "discover",
}
# Account fields that may be kept in ``VaultedMethod.raw``: no id (it is the token), no number.
_RAW_ACCOUNT_FIELDS = ("Issuer", "ExpirationDate", "IsDefault", "BankName", "IsCheckingAccount")
_RAW_PAYMENT_DROP = ("AccountId", "PaymentToken", "CVV", "Cvv")
# Fields of an InvalidInput error that mean "this card or bank account is not acceptable".
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?", re.IGNORECASE
)


# --------------------------------------------------------------------------------------
# Helpers (also used by the fake, so both sides agree on the wire format)
# --------------------------------------------------------------------------------------


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with 7 fractional digits, as PaySimple's own SDK writes it."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def parse_timestamp(text: str) -> datetime:
    """Parse PaySimple's ISO-8601 (up to 9 fractional digits, ``Z``/offset; naive means UTC)."""
    match = _TIMESTAMP.fullmatch(str(text).strip())
    if not match:
        raise ValueError("not an ISO-8601 timestamp")
    base, fraction, zone = match.groups()
    moment = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")
    if fraction:
        moment = moment.replace(microsecond=int(fraction[:6].ljust(6, "0")))
    if zone and zone.upper() != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        return moment.replace(tzinfo=timezone(sign * offset))
    return moment.replace(tzinfo=timezone.utc)


def psserver_signature(api_key: str, timestamp: str) -> str:
    """base64(HMAC-SHA256(key=api key, msg=timestamp)), both UTF-8, the key not decoded."""
    digest = hmac.new(api_key.encode("utf-8"), timestamp.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def psserver_authorization(username: str, api_key: str, timestamp: str) -> str:
    signature = psserver_signature(api_key, timestamp)
    return f"PSSERVER accessid={username}; timestamp={timestamp}; signature={signature}"


def basic_authorization(username: str, api_key: str) -> str:
    """PaySimple's ``basic`` scheme: user and key literally, no base64."""
    return f"basic {username}:{api_key}"


def webhook_signature(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of the raw body keyed with the subscription secret."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def to_dollars(amount: int) -> Decimal:
    """Integer cents → PaySimple's decimal dollars, exactly (1999 → Decimal('19.99'))."""
    return to_major(amount, CURRENCY)


def to_cents(value: Any) -> int:
    """PaySimple's decimal dollars → integer cents; refuses fractions of a cent (``ValueError``)."""
    return to_minor(value, CURRENCY)


def customer_account_value(reference_id: str) -> str:
    """The value stored in ``Customer.CustomerAccount`` for a vault_wallets reference.

    References of up to 28 characters are stored as they are; longer ones as ``vw-`` plus
    25 hex digits of their SHA-256 (still unique in practice, and stable).
    """
    if len(reference_id) <= CUSTOMER_ACCOUNT_MAX:
        return reference_id
    return "vw-" + hashlib.sha256(reference_id.encode("utf-8")).hexdigest()[: CUSTOMER_ACCOUNT_MAX - 3]


def card_brand(issuer: Any) -> str:
    key = re.sub(r"[^a-z0-9]", "", str(issuer or "").lower())
    return _ISSUERS.get(key, key)


def _error_message(body: Any, response: requests.Response) -> tuple[str, str]:
    """``(message, code)`` from PaySimple's ``Meta.Errors``; 401s carry no body at all."""
    if response.status_code == 401:
        return ("PaySimple rejected the API credentials (check API_USERNAME, API_KEY and, for "
                "PSSERVER, the server clock)", "Unauthorized")
    errors = ((body or {}).get("Meta") or {}).get("Errors") if isinstance(body, dict) else None
    if not isinstance(errors, dict):
        return "", ""
    parts = []
    for item in errors.get("ErrorMessages") or ():
        if isinstance(item, dict) and item.get("Message"):
            parts.append(f"{item['Field']}: {item['Message']}" if item.get("Field") else str(item["Message"]))
    message = "; ".join(parts) or str(errors.get("ErrorCode") or "")
    if errors.get("TraceCode"):
        message += f" (trace code {errors['TraceCode']})"
    return message, str(errors.get("ErrorCode") or "")


def _status_key(status: Any) -> str:
    return re.sub(r"[^a-z]", "", str(status or "").lower())


# --------------------------------------------------------------------------------------
# The processor
# --------------------------------------------------------------------------------------


class PaySimpleProcessor(BaseProcessor):
    """PaySimple API v4 (``https://sandbox-api.paysimple.com`` unless ``BASE_URL`` says otherwise)."""

    name = "paysimple"
    display_name = "PaySimple"
    supports_client_token = True
    supports_addresses = False
    required_options = ("API_USERNAME", "API_KEY")
    secret_options = ("API_KEY", "WEBHOOK_SECRET")
    webhook_secret_headers = (DEFAULT_SIGNATURE_HEADER,)
    #: A PaySimple account id is the vaulted method's token (what a payment is made with).
    webhook_token_fields = ("account_id", "account_ids", "accounts")

    def __init__(self, account: str, options: Mapping[str, Any] | None = None):
        super().__init__(account, options)
        header = self.option("WEBHOOK_SIGNATURE_HEADER") or DEFAULT_SIGNATURE_HEADER
        self.signature_header = str(header).lower()
        self.webhook_secret_headers = (self.signature_header,)

    # -- configuration -----------------------------------------------------------------
    def check_options(self) -> list[str]:
        problems = super().check_options()
        if self.option("AUTH_SCHEME", AUTH_BASIC) not in AUTH_SCHEMES:
            problems.append(f"AUTH_SCHEME must be one of {', '.join(AUTH_SCHEMES)}")
        try:
            parse_timeout(self.option("TIMEOUT"))
        except (TypeError, ValueError):
            problems.append("TIMEOUT must be seconds or a (connect, read) pair of seconds")
        return problems

    @cached_property
    def _http(self) -> ProcessorHTTPClient:
        scheme = self.option("AUTH_SCHEME", AUTH_BASIC)
        if scheme not in AUTH_SCHEMES:
            raise InvalidRequestError(f"AUTH_SCHEME must be one of {', '.join(AUTH_SCHEMES)}",
                                      code="misconfigured", processor=self.name)
        return ProcessorHTTPClient(
            processor=self.name,
            base_url=self.option("BASE_URL") or SANDBOX_URL,
            timeout=parse_timeout(self.option("TIMEOUT")),
            retries=int(self.option("RETRIES", 2)),
            idempotency_headers=(),  # PaySimple has none: POSTs are never retried
            default_headers={"Accept": "application/json"},
            error_message=_error_message,
            secrets=self._secrets,
            prepare=self._authorize,
        )

    def _secrets(self) -> list[str]:
        return [str(self.option("API_KEY") or ""), *self._webhook_secrets()]

    def _authorize(self, prepared: requests.PreparedRequest) -> None:
        username, api_key = str(self.option("API_USERNAME", "")), str(self.option("API_KEY", ""))
        if self.option("AUTH_SCHEME", AUTH_BASIC) == AUTH_PSSERVER:
            timestamp = format_timestamp(datetime.now(timezone.utc))
            prepared.headers["Authorization"] = psserver_authorization(username, api_key, timestamp)
        else:
            prepared.headers["Authorization"] = basic_authorization(username, api_key)

    def _call(self, method: str, route: str, *, params: Mapping[str, Any] | None = None, **kwargs) -> Any:
        """Send a request and return the envelope's ``Response`` (None for 204 No Content)."""
        response = self._http.request(method, route, path_params=params, **kwargs)
        if not response.content:
            return None
        return response.json().get("Response")

    # -- customers -----------------------------------------------------------------------
    def create_customer(self, data: CustomerData) -> ProcessorCustomer:
        """``POST /v4/customer``, unless a customer with this reference exists already.

        PaySimple has no unique external id, so the reference is stored in
        ``CustomerAccount`` and looked for (``GET /v4/customer``, all pages) first.
        """
        marker = customer_account_value(data.reference_id)
        existing = self._find_customer(marker)
        if existing is not None:
            return self._customer(existing)
        created = self._call("POST", "/v4/customer", json=self._customer_body(data))
        return self._customer(created)

    def _find_customer(self, marker: str) -> dict | None:
        page = 1
        while True:
            response = self._http.request("GET", "/v4/customer", query={"page": page, "pagesize": PAGE_SIZE})
            envelope = response.json()
            items = envelope.get("Response") or []
            for item in items:
                if isinstance(item, dict) and item.get("CustomerAccount") == marker:
                    return item
            paging = (envelope.get("Meta") or {}).get("PagingDetails") or {}
            total = int(paging.get("TotalItems") or 0)
            if len(items) < PAGE_SIZE or page * PAGE_SIZE >= total:
                return None
            page += 1

    def update_customer(self, customer: CustomerRef, data: CustomerData) -> ProcessorCustomer:
        """``GET`` the customer, overlay our fields, ``PUT /v4/customer`` (Id in the body)."""
        current = self._call("GET", "/v4/customer/{customer_id}", params={"customer_id": customer.id})
        body = {**(current or {}), **self._customer_body(data), "Id": current["Id"]}
        for key in ("CreatedOn", "LastModified"):
            body.pop(key, None)
        return self._customer(self._call("PUT", "/v4/customer", json=body))

    def delete_customer(self, customer: CustomerRef) -> None:
        """``DELETE /v4/customer/{id}``; an already deleted customer counts as deleted."""
        try:
            self._call("DELETE", "/v4/customer/{customer_id}", params={"customer_id": customer.id})
        except NotFoundError:
            pass

    def _customer_body(self, data: CustomerData) -> dict[str, Any]:
        first, _, last = " ".join((data.name or "").split()).partition(" ")
        body: dict[str, Any] = {
            "FirstName": (first or "Customer")[:100],
            "LastName": (last or "-")[:100],
            "CustomerAccount": customer_account_value(data.reference_id),
            "ShippingSameAsBilling": True,
        }
        if data.email:
            body["Email"] = data.email[:100]
        phone = re.sub(r"\D", "", data.phone or "")
        if len(phone) == 11 and phone.startswith("1"):
            phone = phone[1:]
        if len(phone) == 10:
            body["Phone"] = phone
        address = _address_body(data.address)
        if address:
            body["BillingAddress"] = address
        return body

    def _customer(self, raw: Mapping[str, Any]) -> ProcessorCustomer:
        return ProcessorCustomer(id=str(raw["Id"]), currency="USD", raw=dict(raw))

    # -- payment methods ---------------------------------------------------------------------
    def vault_payment_method(self, request: VaultRequest) -> VaultedMethod:
        """Keep the account PaySimpleJS created for this shopper (the ``accountRetrieved`` event).

        The browser submits ``account.id`` from ``accountRetrieved``; PaySimpleJS ran with the
        customer token of *our* PaySimple customer (``prepare_checkout``), so the account is
        already vaulted under it.  The server reads the account back
        (``GET /v4/account/creditcard/{id}`` or ``/ach/{id}``) and keeps it only if its
        ``CustomerId`` is this shopper's PaySimple customer: an id from the browser is never
        trusted on its own.

        Not ``POST /v4/paymenttoken``: the official SDK's request for that route is
        ``{CustomerAccountId, CustomerId, Cvv}`` (PaySimple/PaySimpleSDK
        ``src/PaySimpleSdk/Payments/PaymentTokenRequest.cs``) — it issues a single-use token for
        an account that already exists; it does not redeem a browser token.
        """
        account_id = str(request.temporary_token or "").strip()
        if not re.fullmatch(r"[1-9][0-9]{0,17}", account_id):
            raise TemporaryTokenError("the browser result is not a PaySimple account id (accountRetrieved "
                                      "account.id)", code="invalid_account_id", processor=self.name)
        # PaySimpleJS's card and bank modes both answer account.id (one id space): look in the
        # requested kind first, then the other.
        other = METHOD_ACH if request.method_type == METHOD_CARD else METHOD_CARD
        for method_type in (request.method_type, other):
            ref = MethodRef(token=account_id, method_type=method_type)
            try:
                raw = self._account(request.customer, ref)
            except NotFoundError:
                continue
            if request.make_default and not raw.get("IsDefault"):
                self.set_default_payment_method(request.customer, ref)
                raw = {**raw, "IsDefault": True}
            return self._method(raw, method_type)
        raise TemporaryTokenError("PaySimple does not know this account for this shopper",
                                  code="account_not_found", processor=self.name)

    def fetch_payment_method(self, customer: CustomerRef, method: MethodRef) -> VaultedMethod:
        """``GET /v4/account/creditcard/{id}`` (or ``/ach/``), checked to belong to ``customer``."""
        return self._method(self._account(customer, method), method.method_type)

    def _account(self, customer: CustomerRef, method: MethodRef) -> dict:
        kind = "ach" if method.method_type == METHOD_ACH else "creditcard"
        raw = self._call("GET", f"/v4/account/{kind}/{{account_id}}", params={"account_id": method.method_id})
        if not raw or str(raw.get("CustomerId")) != str(customer.id):
            raise NotFoundError("this account does not belong to the customer", processor=self.name)
        return raw

    def list_payment_methods(self, customer: CustomerRef) -> list[VaultedMethod]:
        """``GET /v4/customer/{id}/accounts`` (credit cards and ACH accounts)."""
        accounts = self._call("GET", "/v4/customer/{customer_id}/accounts",
                              params={"customer_id": customer.id}) or {}
        cards = [self._method(raw, METHOD_CARD) for raw in accounts.get("CreditCardAccounts") or ()]
        banks = [self._method(raw, METHOD_ACH) for raw in accounts.get("AchAccounts") or ()]
        if any(card.is_default for card in cards):
            # One default per customer, as ``charge(method=None)`` sees it: the default card first.
            banks = [_replace(bank, is_default=False) for bank in banks]
        return cards + banks

    def delete_payment_method(self, customer: CustomerRef, method: MethodRef) -> None:
        """``DELETE /v4/account/creditcard/{id}`` (or ``/ach/``) after checking the owner."""
        kind = "ach" if method.method_type == METHOD_ACH else "creditcard"
        try:
            self._account(customer, method)
            self._call("DELETE", f"/v4/account/{kind}/{{account_id}}",
                       params={"account_id": method.method_id})
        except NotFoundError:
            pass  # already gone

    def set_default_payment_method(self, customer: CustomerRef, method: MethodRef) -> None:
        """``PUT /v4/customer/{customerId}/{accountId}`` (PaySimple keeps one per account type)."""
        self._call("PUT", "/v4/customer/{customer_id}/{account_id}",
                   params={"customer_id": customer.id, "account_id": method.method_id})

    def _method(self, raw: Mapping[str, Any], method_type: str) -> VaultedMethod:
        account_id = str(raw["Id"])
        sanitized = {key: raw[key] for key in _RAW_ACCOUNT_FIELDS if key in raw}
        sanitized["AccountType"] = "ach" if method_type == METHOD_ACH else "creditcard"
        common = {"token": account_id, "method_id": account_id, "is_default": bool(raw.get("IsDefault")),
                  "verification_status": VERIFICATION_NOT_REQUESTED, "raw": sanitized}
        if method_type == METHOD_ACH:
            last4 = _last4(raw.get("AccountNumber"))
            checking = raw.get("IsCheckingAccount")
            return VaultedMethod(
                method_type=METHOD_ACH, last4=last4, bank_name=str(raw.get("BankName") or ""),
                account_type="checking" if checking or checking is None else "savings",
                fingerprint=derived_fingerprint("ach", raw.get("RoutingNumber"), last4, checking), **common,
            )
        brand = card_brand(raw.get("Issuer"))
        last4 = _last4(raw.get("CreditCardNumber"))
        exp_month, exp_year = _expiry(raw.get("ExpirationDate"))
        expired = bool(exp_year and exp_month) and (exp_year, exp_month) < _this_month()
        return VaultedMethod(
            method_type=METHOD_CARD, brand=brand, last4=last4, exp_month=exp_month, exp_year=exp_year,
            fingerprint=derived_fingerprint("card", brand, last4, raw.get("ExpirationDate")),
            status=METHOD_EXPIRED if expired else METHOD_ACTIVE, **common,
        )

    # -- money ------------------------------------------------------------------------------
    def charge(self, request: ChargeRequest) -> ChargeResult:
        """``POST /v4/payment``: a sale (PaySimple v4 has no authorization-only payment).

        ``method=None`` charges the default credit card, else the default ACH account.  With an
        ``idempotency_key`` (stored in ``OrderId``) the customer's recent payments are searched
        first, so a retried charge returns the payment already made instead of paying twice.
        """
        if not request.capture:
            raise UnsupportedOperation("PaySimple API v4 has no authorization-only payments",
                                       processor=self.name)
        if (request.currency or "USD").upper() != "USD":
            raise InvalidRequestError("PaySimple processes USD only", code="unsupported_currency",
                                      processor=self.name)
        if request.amount <= 0 or to_dollars(request.amount) > MAX_AMOUNT:
            raise InvalidRequestError("the amount must be between 0.01 and 2,000,000.00 USD",
                                      code="invalid_amount", processor=self.name)
        key = request.idempotency_key[:50]
        if key:
            earlier = self._payment_with_order_id(request.customer, key)
            if earlier is not None:
                return self._charge_result(earlier)
        if request.method is not None:
            account_id = request.method.method_id
        else:
            account_id = self._default_account_id(request.customer)
        body: dict[str, Any] = {"AccountId": _int_id(account_id, "account"),
                                "Amount": float(to_dollars(request.amount))}
        if key or request.reference:
            body["OrderId"] = key or request.reference[:50]
        if request.reference:
            body["PurchaseOrderNumber"] = request.reference[:50]
        if request.description:
            body["Description"] = request.description[:2048]
        return self._charge_result(self._call("POST", "/v4/payment", json=body))

    def _payment_with_order_id(self, customer: CustomerRef, order_id: str) -> dict | None:
        payments = self._call(
            "GET", "/v4/customer/{customer_id}/payments", params={"customer_id": customer.id},
            query={"pagesize": RECENT_PAYMENTS, "sortby": "PaymentId", "direction": "DESC"},
        )
        for payment in payments or ():
            # A refund's credit transaction carries the same OrderId with a negative amount.
            if not isinstance(payment, dict) or payment.get("OrderId") != order_id:
                continue
            if (payment.get("Amount") or 0) > 0:
                return payment
        return None

    def _default_account_id(self, customer: CustomerRef) -> str:
        for kind in ("defaultcreditcard", "defaultach"):
            try:
                account = self._call("GET", f"/v4/customer/{{customer_id}}/{kind}",
                                     params={"customer_id": customer.id})
            except NotFoundError:
                continue
            if account and account.get("Id"):
                return str(account["Id"])
        raise InvalidRequestError("the customer has no default payment account at PaySimple",
                                  code="no_default_method", processor=self.name)

    def capture(self, reference: str, amount: int | None = None, *,
                idempotency_key: str = "") -> ChargeResult:
        raise UnsupportedOperation("PaySimple API v4 payments are captured when made", processor=self.name)

    def void(self, reference: str, *, idempotency_key: str = "") -> ChargeResult:
        """``PUT /v4/payment/{id}/void`` (before ``CanVoidUntil``); a repeat finds it voided."""
        try:
            payment = self._call("PUT", "/v4/payment/{payment_id}/void", params={"payment_id": reference})
        except InvalidRequestError as exc:
            if isinstance(exc, NotFoundError):
                raise
            payment = self._payment(reference)
            if _status_key(payment.get("Status")) != "voided":
                raise
        return self._charge_result(payment, status=CHARGE_VOIDED)

    def refund(self, reference: str, amount: int | None = None, *, idempotency_key: str = "") -> ChargeResult:
        """Refund the whole payment.

        PaySimple refunds (``PUT /v4/payment/{id}/reverse``) only ``Settled`` payments and only in
        full.  Before settlement it tells you to void instead, so a payment still inside its void
        window is voided: the customer is never charged, and the result reports it refunded.
        """
        payment = self._payment(reference)
        total = to_cents(payment.get("Amount", 0))
        if amount is not None and amount != total:
            raise UnsupportedOperation("PaySimple refunds only the full amount of a payment",
                                       code="partial_refund_unsupported", processor=self.name)
        status = _status_key(payment.get("Status"))
        if status in _FAILED_STATUSES:
            raise InvalidRequestError(f"a payment in status {payment.get('Status')} cannot be refunded",
                                      code="not_refundable", processor=self.name)
        if status == "settled":
            payment = self._call("PUT", "/v4/payment/{payment_id}/reverse", params={"payment_id": reference})
        elif status in _VOIDABLE_STATUSES and _voidable(payment):
            payment = self._call("PUT", "/v4/payment/{payment_id}/void", params={"payment_id": reference})
        elif status not in _REFUNDED_STATUSES and status != "voided":
            raise InvalidRequestError(
                "PaySimple can refund this payment only once it is Settled (its void window has passed)",
                code="not_settled", processor=self.name)
        return self._charge_result(payment, status=CHARGE_REFUNDED, amount=total)

    def _payment(self, reference: str) -> dict:
        return self._call("GET", "/v4/payment/{payment_id}", params={"payment_id": reference})

    # Lost answers (docs/reliability.md): the key is the payment's OrderId, searched among the
    # customer's recent payments — the same search ``charge`` makes before paying.
    def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        key = request.idempotency_key[:50]
        if not key:
            raise UnsupportedOperation("a PaySimple payment is found by its OrderId: charge with a key",
                                       processor=self.name)
        payment = self._payment_with_order_id(request.customer, key)
        return self._charge_result(payment) if payment is not None else None

    def fetch_charge(self, reference: str) -> ChargeResult:
        return self._charge_result(self._payment(reference))

    def _charge_result(self, payment: Mapping[str, Any], *, status: str = "", amount: int | None = None
                       ) -> ChargeResult:
        amount = to_cents(abs(Decimal(str(payment.get("Amount", 0))))) if amount is None else amount
        failure = payment.get("FailureData") or {}
        state = _status_key(payment.get("Status"))
        if not status:
            if state in _FAILED_STATUSES:
                declined = failure.get("IsDecline") or payment.get("IsDecline")
                status = CHARGE_DECLINED if declined else CHARGE_FAILED
            elif state == "voided":
                status = CHARGE_VOIDED
            elif state in _REFUNDED_STATUSES:
                status = CHARGE_REFUNDED
            elif state in _SALE_STATUSES:
                status = CHARGE_CAPTURED
            else:
                raise ProcessorUnavailable("PaySimple answered with an unknown payment status",
                                           code="bad_response", processor=self.name)
        unsuccessful = status in (CHARGE_DECLINED, CHARGE_FAILED)
        return ChargeResult(
            reference=str(payment["Id"]),
            status=status,
            amount=amount,
            currency="USD",
            amount_captured=amount if status in (CHARGE_CAPTURED, CHARGE_REFUNDED) else 0,
            amount_refunded=amount if status == CHARGE_REFUNDED else 0,
            failure_code=str(failure.get("Code") or "") if unsuccessful else "",
            failure_message=str(failure.get("Description") or "") if unsuccessful else "",
            raw={k: v for k, v in payment.items() if k not in _RAW_PAYMENT_DROP},
        )

    # -- browser ----------------------------------------------------------------------------
    def get_client_token(self, customer: CustomerRef) -> ClientToken:
        """``GET /v4/customer/{id}/token``: PaySimpleJS's ``auth.token`` for a known customer (15 minutes)."""
        result = self._call("GET", "/v4/customer/{customer_id}/token", params={"customer_id": customer.id})
        return ClientToken(token=str(result["JwtToken"]),
                           expires_at=datetime.now(timezone.utc) + CUSTOMER_TOKEN_LIFETIME)

    def get_checkout_token(self) -> ClientToken:
        """``POST /v4/checkouttoken``: PaySimpleJS's ``auth`` token for the page (5 minutes).

        PaySimple-specific: the checkout page needs it besides the customer token.
        """
        result = self._call("POST", "/v4/checkouttoken", json={})
        expires = datetime.now(timezone.utc) + CHECKOUT_TOKEN_LIFETIME
        if result.get("Expiration"):
            try:
                expires = parse_timestamp(result["Expiration"])
            except ValueError:
                pass
        return ClientToken(token=str(result["JwtToken"]), expires_at=expires)

    # PaySimpleJS as working integrations load it (BROWSER-SDKS.md §1.1; PaySimple's own
    # "Vaulting Accounts" page that should state it is not public): sandbox or production by
    # BASE_URL.  PaySimple publishes no SRI hash.
    js_sdk_path = "/paysimplejs/v1/scripts/client.js"
    js_sdk_url = PRODUCTION_URL + js_sdk_path

    def sdk_script(self) -> tuple[str, str]:
        if self.option("JS_SDK_URL"):
            return super().sdk_script()
        base = str(self.option("BASE_URL") or SANDBOX_URL).rstrip("/")
        return (PRODUCTION_URL if base == PRODUCTION_URL else SANDBOX_URL) + self.js_sdk_path, ""

    def prepare_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """PaySimpleJS runs with the customer token of this shopper's PaySimple customer
        (``GET /v4/customer/{id}/token``, 15 minutes), so ``retrieveAccount`` adds the card to
        that customer.  The browser gets the token and the shopper's name and email (which
        ``retrieveAccount`` sends along) — no PaySimple id."""
        token = self.get_client_token(request.customer)
        data = request.customer_data
        first, _, last = (data.name if data else "").strip().partition(" ")
        url, integrity = self.sdk_script()
        return CheckoutSession(
            processor=self.name, sdk_url=url, sdk_integrity=integrity, expires_at=token.expires_at,
            client={"auth": {"token": token.token}, "mode": "cc-key-enter",
                    "customer": {"firstName": first, "lastName": last or first,
                                 "email": data.email if data else ""}},
        )

    # -- webhooks ---------------------------------------------------------------------------
    def _webhook_secrets(self) -> list[str]:
        value = self.option("WEBHOOK_SECRET") or ()
        values = [value] if isinstance(value, str) else list(value)
        return [str(v) for v in values if v]

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Hex HMAC-SHA256 of the raw body with the subscription secret, in ``paysimple-hmac-sha256``.

        The scheme carries no timestamp (PaySimple re-sends the same message hourly for 72 hours),
        so replays are stopped by de-duplicating on ``event_id``.
        """
        secrets = self._webhook_secrets()
        if not secrets:
            raise WebhookVerificationError("webhook secret not configured")
        try:
            provided = str(request.header(self.signature_header) or "").strip().lower()
            body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
        except Exception:  # a malformed delivery must only ever fail verification
            raise WebhookVerificationError("malformed delivery") from None
        if not provided:
            raise WebhookVerificationError("missing signature")
        if not _HEX_SHA256.fullmatch(provided):
            raise WebhookVerificationError("malformed signature")
        if not any(hmac.compare_digest(webhook_signature(secret, body), provided) for secret in secrets):
            raise WebhookVerificationError("bad signature")

    def webhook_event_id(self, request: WebhookRequest) -> tuple[str, str]:
        message = _webhook_message(request)
        return message["event_id"], str(message.get("event_type") or "")

    def parse_webhook(self, request: WebhookRequest) -> list[NormalizedEvent]:
        """Translate one message.

        * ``payment_*`` → ``charge.*`` by the payload's ``payment_status``;
        * ``customer_updated`` → ``customer.updated``, a customer-level ``payment_method.updated``
          (no ids: refresh every method saved for the customer, which is how a card PaySimple's
          account updater removed is found closed) and a ``payment_method.updated`` naming every
          account PaySimple lists for the customer now.  PaySimple sends no event of its own when
          the account updater changes a card;
        * ``customer_deleted`` → the customer-level ``payment_method.updated`` (its accounts are gone);
        * anything else → ``unknown``.
        """
        message = _webhook_message(request)
        event_type = str(message.get("event_type") or "")
        data = message.get("data") if isinstance(message.get("data"), dict) else {}
        common = {
            "event_id": message["event_id"],
            "processor_event_type": event_type,
            "customer_id": str(data.get("customer_id") or ""),
            "occurred_at": _event_time(message.get("created_at")),
            "raw": message,
        }
        if event_type.startswith("payment_") and data.get("payment_id") is not None:
            status = str(data.get("payment_status") or "").lower()
            kind = _EVENT_STATUS.get(status, EVENT_UNKNOWN)
            if event_type == "payment_failed":
                kind = EVENT_CHARGE_FAILED
            facts = {"payment_status": status, "account_id": str(data.get("account_id") or "")}
            if data.get("amount") is not None:
                try:
                    facts["amount"] = to_cents(data["amount"])
                except ValueError:
                    pass
            reference = str(data["payment_id"])
            return [NormalizedEvent(type=kind, charge_reference=reference, data=facts, **common)]
        if event_type in ("customer_updated", "customer_deleted") and common["customer_id"]:
            reason = {"reason": event_type}
            refresh_all = NormalizedEvent(type=EVENT_PAYMENT_METHOD_UPDATED, data=reason, **common)
            if event_type == "customer_deleted":
                return [refresh_all]
            events = [NormalizedEvent(type=EVENT_CUSTOMER_UPDATED, **common), refresh_all]
            try:
                methods = self.list_payment_methods(CustomerRef(id=common["customer_id"]))
            except NotFoundError:
                return events
            if methods:
                events.append(NormalizedEvent(
                    type=EVENT_PAYMENT_METHOD_UPDATED, payment_method_ids=tuple(m.method_id for m in methods),
                    data=reason, **common))
            return events
        return [NormalizedEvent(type=EVENT_UNKNOWN, **common)]

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets())


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _int_id(value: Any, what: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise InvalidRequestError(f"not a PaySimple {what} id", code="invalid_id",
                                  processor=PaySimpleProcessor.name) from None


def _address_body(address: AddressData | None) -> dict[str, Any] | None:
    """A ``BillingAddress``: PaySimple wants street, city and a 5–10 character zip code together."""
    if address is None or not (address.line1 and address.city and 5 <= len(address.postal_code) <= 10):
        return None
    body = {"StreetAddress1": address.line1, "City": address.city, "ZipCode": address.postal_code}
    if address.line2:
        body["StreetAddress2"] = address.line2
    if address.state:
        body["StateCode"] = address.state.upper()
    if address.country:
        body["Country"] = address.country.upper()
    return body


def _last4(masked: Any) -> str:
    digits = re.sub(r"\D", "", str(masked or ""))
    return digits[-4:] if len(digits) >= 4 else ""


def _expiry(value: Any) -> tuple[int | None, int | None]:
    match = re.fullmatch(r"\s*(\d{1,2})/(\d{2}|\d{4})\s*", str(value or ""))
    if not match:
        return None, None
    month, year = int(match.group(1)), int(match.group(2))
    return (month if 1 <= month <= 12 else None), (year + 2000 if year < 100 else year)


def _this_month() -> tuple[int, int]:
    now = datetime.now(timezone.utc)
    return now.year, now.month




def _replace(method: VaultedMethod, **changes: Any) -> VaultedMethod:
    return dataclasses.replace(method, **changes)


def _voidable(payment: Mapping[str, Any]) -> bool:
    until = payment.get("CanVoidUntil")
    if not until:
        return False
    try:
        return parse_timestamp(until) > datetime.now(timezone.utc)
    except ValueError:
        return False


def _event_time(value: Any) -> datetime | None:
    try:
        return parse_timestamp(value) if value else None
    except ValueError:
        return None


def _webhook_message(request: WebhookRequest) -> dict[str, Any]:
    try:
        message = json.loads(request.body)
    except (TypeError, ValueError):
        raise WebhookParseError("body is not JSON") from None
    event_id = message.get("event_id") if isinstance(message, dict) else None
    if not event_id or not isinstance(event_id, str):
        raise WebhookParseError("no event_id")
    return message


__all__ = [
    "PaySimpleProcessor",
    "basic_authorization",
    "customer_account_value",
    "format_timestamp",
    "parse_timestamp",
    "psserver_authorization",
    "psserver_signature",
    "to_cents",
    "to_dollars",
    "webhook_signature",
]
