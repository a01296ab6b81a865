"""Exact Payments: the Customer Vault, payment methods linked to customers, and payments.

* Auth: ``Authorization: {API_TOKEN}``, the raw application token with no scheme.  Partner
  (organization) tokens act for a merchant through routes prefixed ``/account/{accountId}``
  (``OPTIONS["ACCOUNT_ID"]``).
* A customer has an ``id`` (to manage it) and a ``token``: the token is a payment credential
  that charges the customer's default method, so it is returned as ``ProcessorCustomer.secret``
  and charged when ``ChargeRequest.method`` is None.
* A linked payment method is named by its ``token``, which is also what is charged: the
  method id *is* the secret.  Every route containing it passes it in ``path_params`` so only
  the route template is logged.
* Exact has no customer reference field and no search, so ``create_customer`` marks the
  customer with a labelled address entry (``vault_wallets:{reference_id}``) and finds it
  again by scanning the newest customers (``REFERENCE_LOOKUP_LIMIT``).
* Exact documents no Idempotency-Key: POSTs are never retried automatically.
* Webhooks carry no signature.  A custom header registered with the webhook
  (``WEBHOOK_HEADER``, value ``WEBHOOK_SECRET``) is required and compared in constant time;
  with no secret configured every delivery is rejected.

See ``docs/processors/exact.md`` for the endpoint-by-endpoint mapping and what is inferred.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from . import base as p
from .base import (
    AddressData,
    BaseProcessor,
    ChargeRequest,
    ChargeResult,
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
    VaultedMethod,
    VaultRequest,
    VerificationFailedError,
    WebhookParseError,
    WebhookRequest,
    WebhookVerificationError,
    derived_fingerprint,
)
from .http import ProcessorHTTPClient, parse_timeout, redact

DEFAULT_BASE_URL = "https://api.exactpaysandbox.com"
PRODUCTION_BASE_URL = "https://api-p2.exactpay.com"
DEFAULT_WEBHOOK_HEADER = "X-Exact-Webhook-Secret"
DEFAULT_REFERENCE_LOOKUP_LIMIT = 500
PAGE_LIMIT = 100  # Exact's maximum ``$limit``
REFERENCE_LABEL_PREFIX = "vault_wallets:"

_UUID_RE = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_DROPPED_KEYS = frozenset({"number", "cvc", "cvd", "accountnumber", "routingnumber"})

# ISO 3166-1 alpha-2 -> alpha-3 (Exact's addresses take alpha-3 country codes), from iso-codes.
_ALPHA3 = {pair[:2]: pair[2:] for pair in """
ADAND AEARE AFAFG AGATG AIAIA ALALB AMARM AOAGO AQATA ARARG ASASM ATAUT AUAUS AWABW AXALA AZAZE BABIH BBBRB
BDBGD BEBEL BFBFA BGBGR BHBHR BIBDI BJBEN BLBLM BMBMU BNBRN BOBOL BQBES BRBRA BSBHS BTBTN BVBVT BWBWA BYBLR
BZBLZ CACAN CCCCK CDCOD CFCAF CGCOG CHCHE CICIV CKCOK CLCHL CMCMR CNCHN COCOL CRCRI CUCUB CVCPV CWCUW CXCXR
CYCYP CZCZE DEDEU DJDJI DKDNK DMDMA DODOM DZDZA ECECU EEEST EGEGY EHESH ERERI ESESP ETETH FIFIN FJFJI FKFLK
FMFSM FOFRO FRFRA GAGAB GBGBR GDGRD GEGEO GFGUF GGGGY GHGHA GIGIB GLGRL GMGMB GNGIN GPGLP GQGNQ GRGRC GSSGS
GTGTM GUGUM GWGNB GYGUY HKHKG HMHMD HNHND HRHRV HTHTI HUHUN IDIDN IEIRL ILISR IMIMN ININD IOIOT IQIRQ IRIRN
ISISL ITITA JEJEY JMJAM JOJOR JPJPN KEKEN KGKGZ KHKHM KIKIR KMCOM KNKNA KPPRK KRKOR KWKWT KYCYM KZKAZ LALAO
LBLBN LCLCA LILIE LKLKA LRLBR LSLSO LTLTU LULUX LVLVA LYLBY MAMAR MCMCO MDMDA MEMNE MFMAF MGMDG MHMHL MKMKD
MLMLI MMMMR MNMNG MOMAC MPMNP MQMTQ MRMRT MSMSR MTMLT MUMUS MVMDV MWMWI MXMEX MYMYS MZMOZ NANAM NCNCL NENER
NFNFK NGNGA NINIC NLNLD NONOR NPNPL NRNRU NUNIU NZNZL OMOMN PAPAN PEPER PFPYF PGPNG PHPHL PKPAK PLPOL PMSPM
PNPCN PRPRI PSPSE PTPRT PWPLW PYPRY QAQAT REREU ROROU RSSRB RURUS RWRWA SASAU SBSLB SCSYC SDSDN SESWE SGSGP
SHSHN SISVN SJSJM SKSVK SLSLE SMSMR SNSEN SOSOM SRSUR SSSSD STSTP SVSLV SXSXM SYSYR SZSWZ TCTCA TDTCD TFATF
TGTGO THTHA TJTJK TKTKL TLTLS TMTKM TNTUN TOTON TRTUR TTTTO TVTUV TWTWN TZTZA UAUKR UGUGA UMUMI USUSA UYURY
UZUZB VAVAT VCVCT VEVEN VGVGB VIVIR VNVNM VUVUT WFWLF WSWSM YEYEM YTMYT ZAZAF ZMZMB ZWZWE
""".split()}

# cvcCheck values (the seed shows "full-match" and "not-verified") -> vault_wallets' vocabulary.
_CVC_VERIFICATION = {
    "full-match": p.VERIFICATION_SUCCESS,
    "match": p.VERIFICATION_SUCCESS,
    "no-match": p.VERIFICATION_FAILED,
    "not-verified": p.VERIFICATION_NOT_REQUESTED,
    "not-provided": p.VERIFICATION_NOT_REQUESTED,
    "not-checked": p.VERIFICATION_NOT_REQUESTED,
}

# Event names are "{resource}.{action}" (Exact's own example: "accounts.create"); resources are
# compared with dashes, underscores and a plural "s" removed ("payment-methods" -> "paymentmethod").
_METHOD_EVENTS = {"update": p.EVENT_PAYMENT_METHOD_UPDATED, "delete": p.EVENT_PAYMENT_METHOD_CLOSED}
_CUSTOMER_EVENTS = {"update": p.EVENT_CUSTOMER_UPDATED}
_PAYMENT_ACTIONS = frozenset({"create", "capture", "refund", "void"})
_ACTION_ALIASES = {"created": "create", "updated": "update", "deleted": "delete", "removed": "delete",
                   "remove": "delete", "captured": "capture", "refunded": "refund", "voided": "void"}
_CHARGE_EVENTS = {
    p.CHARGE_CAPTURED: p.EVENT_CHARGE_SUCCEEDED,
    p.CHARGE_AUTHORIZED: p.EVENT_CHARGE_SUCCEEDED,
    p.CHARGE_DECLINED: p.EVENT_CHARGE_FAILED,
    p.CHARGE_FAILED: p.EVENT_CHARGE_FAILED,
    p.CHARGE_REFUNDED: p.EVENT_CHARGE_REFUNDED,
    p.CHARGE_VOIDED: p.EVENT_CHARGE_VOIDED,
}


# --------------------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(body: Any) -> list[Mapping[str, Any]]:
    """A list answer: Exact answers a bare array; a Feathers ``{"data": [...]}`` page is accepted too."""
    if isinstance(body, Mapping):
        body = body.get("data")
    return [item for item in body if isinstance(item, Mapping)] if isinstance(body, list) else []


def _payment_id(payment: Mapping[str, Any]) -> str:
    return _text(payment.get("id") or payment.get("paymentId"))


def _json(response) -> Any:
    return response.json() if response.content else {}


def _json_or_none(response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def sanitize(value: Any) -> Any:
    """A copy of an Exact payload without tokens (any key ending in "token") or card/account numbers."""
    if isinstance(value, Mapping):
        return {
            key: sanitize(item) for key, item in value.items()
            if not (str(key).lower().endswith("token") or str(key).lower() in _DROPPED_KEYS)
        }
    if isinstance(value, list):
        return [sanitize(item) for item in value]
    return value


def without_values(value: Any, secrets: set[str]) -> Any:
    """A copy of ``value`` with every string in ``secrets`` replaced by "[redacted]"."""
    if isinstance(value, Mapping):
        return {key: without_values(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [without_values(item, secrets) for item in value]
    return "[redacted]" if isinstance(value, str) and value in secrets else value


def error_message(body: Any, response: Any = None) -> tuple[str, str]:
    """``(message, code)`` from Exact's error shapes.

    Current shape: ``{code, type, message, pathIssues: [{field, type, details}], requestId}``;
    the testing pages still show ``{"messages": ["..."]}``.  UUIDs (payment and customer
    tokens) are removed from the text before the request id is appended.
    """
    if not isinstance(body, Mapping):
        return "", ""
    parts = [_text(body.get("message")).strip()]
    messages = body.get("messages")
    if isinstance(messages, list):
        parts.extend(_text(m).strip() for m in messages)
    issues = []
    for issue in body.get("pathIssues") or ():
        issue = _dict(issue)
        details = issue.get("details")
        if isinstance(details, list):
            detail = "; ".join(map(_text, details))
        else:
            detail = _text(details or issue.get("type"))
        issues.append(f"{_text(issue.get('field'))}: {detail}" if issue.get("field") else detail)
    if any(issues):
        parts.append("(" + "; ".join(i for i in issues if i) + ")")
    text = _UUID_RE.sub("[redacted]", " ".join(part for part in parts if part))
    request_id = body.get("requestId")
    if text and isinstance(request_id, str) and request_id:
        text = f"{text} [request {request_id}]"
    return text, _text(body.get("code") or body.get("type"))


def _issue_fields(body: Any) -> set[str]:
    return {_text(_dict(i).get("field")).rsplit(".", 1)[-1] for i in _dict(body).get("pathIssues") or ()}


def cents(value: Any, default: int = 0) -> int:
    """An amount Exact reports (integer cents, typed as a number) as ``int``, exactly."""
    if value is None or isinstance(value, bool):
        return default
    try:
        return int(Decimal(str(value)).to_integral_value(rounding=ROUND_HALF_UP))
    except (InvalidOperation, ValueError):
        return default


def _amount(amount: Any) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidRequestError("amount must be a positive whole number of minor units (cents)",
                                  code="invalid_amount", processor="exact")
    return amount


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _year(value: Any) -> int | None:
    year = _int(value)
    return year + 2000 if year is not None and year < 100 else year


def alpha3(country: str) -> str:
    code = (country or "").strip().upper()
    return _ALPHA3.get(code, code) if len(code) == 2 else code


def reference_label(reference_id: str) -> str:
    return f"{REFERENCE_LABEL_PREFIX}{reference_id}"




def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _address_body(address: AddressData) -> dict[str, Any]:
    body: dict[str, Any] = {"label": address.label or "Billing", "isDefault": True}
    for key, value in (("line1", address.line1), ("line2", address.line2), ("city", address.city),
                       ("state", address.state), ("postalCode", address.postal_code),
                       ("country", alpha3(address.country))):
        if value:
            body[key] = value
    return body


def customer_body(data: CustomerData, *, creating: bool = True) -> dict[str, Any]:
    """``NewCustomer``/``UpdateCustomer``: name, email, phone, addresses (+ the reference marker).

    ``name`` is required on create (falling back to the email, then the reference); an update
    without one leaves Exact's as it is.
    """
    body: dict[str, Any] = {}
    if data.name or creating:
        body["name"] = data.name or data.email or data.reference_id
    if data.email:
        body["email"] = data.email
    if data.phone:
        body["phone"] = data.phone
    addresses = [_address_body(data.address)] if data.address else []
    if data.reference_id:
        addresses.append({"label": reference_label(data.reference_id), "isDefault": False})
    if addresses:
        body["addresses"] = addresses
    return body


def exact_code_normal(code: str) -> bool:
    """Whether an ``exactResponse.code`` says "Transaction Normal".

    Exact's documented approved payment carries ``"0000"`` (OpenAPI example, recorded in
    ../shared/PROCESSORS.md "Corrections"); the older response-codes page writes it ``"00"``.
    Any all-zero code is normal; everything else failed inside Exact's network.
    """
    return bool(code) and code.isdigit() and int(code) == 0


#: Exact's limits on ``reference`` (OpenAPI ``NewPayment``): longer values are refused with a 400.
REFERENCE_NO_MAX = 20
CUSTOMER_REF_MAX = 20
CORRELATION_ID_MAX = 60
_DIGEST_CHARS = 8


def fit_reference(value: str, limit: int) -> str:
    """``value`` if it fits in ``limit`` characters, else a deterministic stand-in that does.

    The stand-in keeps the start of the value (readable in Exact's dashboard) and ends with
    ``-`` + the first 8 hex digits of its SHA-256, so the same value always maps to the same
    reference (an idempotent retry sends the same one) and two long values that share a prefix
    still differ.  A value that is one long opaque key (a UUID idempotency key) keeps fewer of
    its own characters, but the mapping is the same.
    """
    value = _text(value).strip()
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:_DIGEST_CHARS]
    keep = limit - _DIGEST_CHARS - 1
    return f"{value[:keep].rstrip('-')}-{digest}" if keep > 0 else digest[:limit]


def payment_reference(*, reference: str, idempotency_key: str, customer_ref: str) -> dict[str, str]:
    """The ``reference`` object of a new payment, within Exact's field limits.

    ``referenceNo`` is the shop's order reference (or, without one, the idempotency key);
    ``customerRef`` the customer's reference id; ``correlationId`` the idempotency key (Exact's
    documented way to find a payment whose answer was lost).  Each is passed through
    ``fit_reference``: deterministic, so retries under one idempotency key send identical values.
    """
    reference_no = reference or idempotency_key
    if not reference_no:
        return {}
    body = {"referenceNo": fit_reference(reference_no, REFERENCE_NO_MAX)}
    if customer_ref:
        body["customerRef"] = fit_reference(customer_ref, CUSTOMER_REF_MAX)
    if idempotency_key:
        body["correlationId"] = fit_reference(idempotency_key, CORRELATION_ID_MAX)
    return body


def charge_status(payment: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(status, failure_code, failure_message)`` of an Exact payment record.

    A non-zero ``exactResponse`` code (approved is ``"0000"``) failed inside Exact's network
    (never sent to the bank); an unapproved payment was declined by the bank (``bankResponse``).
    Capture, refund and void are transactions of their own (``type``), or flags on the original payment.
    """
    exact = _dict(payment.get("exactResponse"))
    code = _text(exact.get("code")).strip()
    if code and not exact_code_normal(code):
        return p.CHARGE_FAILED, f"exact_{code}", _text(exact.get("message"))
    if not payment.get("approved"):
        bank = _dict(payment.get("bankResponse"))
        return p.CHARGE_DECLINED, _text(bank.get("code")) or "declined", _text(bank.get("message"))
    kind = _text(payment.get("type")).lower()
    if kind == "void" or payment.get("voided"):
        return p.CHARGE_VOIDED, "", ""
    if kind == "refund" or payment.get("refunded"):
        return p.CHARGE_REFUNDED, "", ""
    if kind == "capture" or payment.get("captured"):
        return p.CHARGE_CAPTURED, "", ""
    return p.CHARGE_AUTHORIZED, "", ""


def _event_resource(name: str) -> tuple[str, str]:
    resource, _, action = name.strip().lower().rpartition(".")
    resource = resource.replace("-", "").replace("_", "")
    return (resource[:-1] if resource.endswith("s") else resource), _ACTION_ALIASES.get(action, action)


def _resource_id(event: Mapping[str, Any], *keys: str) -> str:
    for container in (_dict(event.get("resources")), event):
        for key in keys:
            value = container.get(key)
            if isinstance(value, str) and value:
                return value
    return ""


# --------------------------------------------------------------------------------------
# The processor
# --------------------------------------------------------------------------------------


class ExactProcessor(BaseProcessor):
    """Exact Payments (``https://api.exactpaysandbox.com``; production ``https://api-p2.exactpay.com``)."""

    name = "exact"
    display_name = "Exact Payments"
    supports_client_token = False
    supports_addresses = False
    required_options = ("API_TOKEN",)
    secret_options = ("API_TOKEN", "WEBHOOK_SECRET")
    webhook_secret_headers = (DEFAULT_WEBHOOK_HEADER.lower(),)
    #: A payment method's id is its permanent token (``resources.paymentMethod``); keys ending in
    #: "token" are withheld anyway.
    webhook_token_fields = ("paymentMethod", "paymentMethodToken", "paymentToken", *_DROPPED_KEYS)

    def __init__(self, account: str, options: Mapping[str, Any] | None = None):
        super().__init__(account, options)
        # The configured header carries the shared secret: it must never be stored with a delivery.
        self.webhook_secret_headers = (self.webhook_header.lower(),)

    # -- configuration -------------------------------------------------------------------
    def check_options(self) -> list[str]:
        problems = super().check_options()
        base_url = urlsplit(str(self.option("BASE_URL") or DEFAULT_BASE_URL))
        if base_url.scheme not in ("http", "https") or not base_url.netloc:
            problems.append("BASE_URL must be an http(s) URL")
        if not self._webhook_secrets():
            problems.append("WEBHOOK_SECRET is not set: every Exact webhook delivery will be rejected "
                            "(Exact does not sign webhooks; register the secret as a custom header)")
        elif any(len(secret) < 16 for secret in self._webhook_secrets()):
            problems.append("WEBHOOK_SECRET should be at least 16 characters long")
        if not _HEADER_NAME_RE.match(self.webhook_header):
            problems.append("WEBHOOK_HEADER is not a valid HTTP header name")
        currency = self.option("CURRENCY", "USD")
        if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha()):
            problems.append("CURRENCY must be a three-letter ISO 4217 code")
        try:
            parse_timeout(self.option("TIMEOUT"))
        except (TypeError, ValueError):
            problems.append("TIMEOUT must be a number of seconds or a (connect, read) pair")
        return problems

    @property
    def currency(self) -> str:
        return str(self.option("CURRENCY") or "USD").upper()

    @property
    def webhook_header(self) -> str:
        return str(self.option("WEBHOOK_HEADER") or DEFAULT_WEBHOOK_HEADER)

    def _webhook_secrets(self) -> list[str]:
        value = self.option("WEBHOOK_SECRET")
        values = [value] if isinstance(value, str) else list(value or ())
        return [v for v in values if isinstance(v, str) and v]

    def _secrets(self) -> list[str]:
        return [str(self.option("API_TOKEN") or ""), *self._webhook_secrets()]

    @cached_property
    def client(self) -> ProcessorHTTPClient:
        token = self.option("API_TOKEN")
        if not token:
            raise p.AuthenticationError("OPTIONS is missing API_TOKEN", code="missing_credentials",
                                        processor=self.name)
        return ProcessorHTTPClient(
            processor=self.name,
            base_url=str(self.option("BASE_URL") or DEFAULT_BASE_URL),
            timeout=parse_timeout(self.option("TIMEOUT")),
            retries=int(self.option("RETRIES", 2)),
            idempotency_headers=(),  # Exact documents none: a POST is never retried
            default_headers={"Authorization": str(token), "Accept": "application/json"},
            error_message=error_message,
            secrets=self._secrets,
        )

    # -- transport -------------------------------------------------------------------------
    def _call(self, method: str, route: str, params: Mapping[str, Any] | None = None, **kwargs):
        path_params = dict(params or {})
        account = self.option("ACCOUNT_ID")
        if account:
            route = "/account/{account_id}" + route
            path_params["account_id"] = account
        return self.client.request(method, route, path_params=path_params, **kwargs)

    def _get(self, route: str, params: Mapping[str, Any] | None = None, **kwargs) -> Any:
        return _json(self._call("GET", route, params, **kwargs))

    def _post(self, route: str, params: Mapping[str, Any] | None = None, **kwargs) -> Any:
        return _json(self._call("POST", route, params, **kwargs))

    def _delete(self, route: str, params: Mapping[str, Any]) -> None:
        try:
            self._call("DELETE", route, params)
        except NotFoundError:
            pass  # already gone: deleting is idempotent

    def _paged(self, route: str, params: Mapping[str, Any] | None = None, *,
               query: Mapping[str, Any] | None = None,
               maximum: int | None = None) -> Iterator[Mapping[str, Any]]:
        skip = 0
        while maximum is None or skip < maximum:
            limit = PAGE_LIMIT if maximum is None else min(PAGE_LIMIT, maximum - skip)
            page = _items(self._get(route, params, query={**(query or {}), "$limit": limit, "$skip": skip}))
            yield from page
            if len(page) < limit:
                return
            skip += limit

    def _bad_response(self, what: str) -> ProcessorUnavailable:
        return ProcessorUnavailable(f"Exact answered {what}", code="bad_response", processor=self.name)

    # -- customers -------------------------------------------------------------------------
    def _customer(self, body: Any, secret: str = "") -> ProcessorCustomer:
        body = _dict(body)
        if not body.get("id"):
            raise self._bad_response("a customer without an id")
        return ProcessorCustomer(id=_text(body["id"]), secret=_text(body.get("token")) or secret,
                                 raw=sanitize(body))

    def find_customer(self, reference_id: str) -> ProcessorCustomer | None:
        """The customer marked with ``reference_id`` among the newest ``REFERENCE_LOOKUP_LIMIT``."""
        limit = int(self.option("REFERENCE_LOOKUP_LIMIT", DEFAULT_REFERENCE_LOOKUP_LIMIT))
        if not reference_id or limit <= 0:
            return None
        label = reference_label(reference_id)
        for customer in self._paged("/customer", query={"$sort[createdAt]": -1}, maximum=limit):
            if any(_dict(a).get("label") == label for a in customer.get("addresses") or ()):
                return self._customer(customer)
        return None

    def create_customer(self, data: CustomerData) -> ProcessorCustomer:
        return self.find_customer(data.reference_id) or self._customer(
            self._post("/customer", json=customer_body(data)))

    def update_customer(self, customer: CustomerRef, data: CustomerData) -> ProcessorCustomer:
        body = _json(self._call("PUT", "/customer/{customer_id}", {"customer_id": customer.id},
                                json=customer_body(data, creating=False)))
        return self._customer(body or {"id": customer.id}, secret=customer.secret)

    def delete_customer(self, customer: CustomerRef) -> None:
        self._delete("/customer/{customer_id}", {"customer_id": customer.id})

    def _customer_token(self, customer: CustomerRef) -> str:
        token = customer.secret or self._customer(
            self._get("/customer/{customer_id}", {"customer_id": customer.id})).secret
        if not token:
            raise self._bad_response("a customer without a token")
        return token

    # -- payment methods ---------------------------------------------------------------------
    def _method(self, body: Any) -> VaultedMethod:
        body = _dict(body)
        token = _text(body.get("token"))
        if not token:
            raise self._bad_response("a payment method without a token")
        common = {"token": token, "is_default": bool(body.get("isDefault")), "raw": sanitize(body),
                  "holder_name": _text(_dict(body.get("billingDetails")).get("name"))}
        if _text(body.get("type")).lower() == "ach" or body.get("ach"):
            ach = _dict(body.get("ach"))
            verified = ach.get("verified")
            return VaultedMethod(
                method_type=p.METHOD_ACH, last4=_text(ach.get("lastFour")),
                account_type=_text(ach.get("bankAccountType")).lower(),
                verification_status=(p.VERIFICATION_UNKNOWN if verified is None else
                                     p.VERIFICATION_SUCCESS if verified else p.VERIFICATION_PENDING),
                **common)
        card = _dict(body.get("card"))
        expiry = _dict(card.get("expiry"))
        month, year = _int(expiry.get("month")), _year(expiry.get("year"))
        brand, last4 = _text(card.get("brand")).lower(), _text(card.get("lastFour"))
        today = date.today()
        expired = month is not None and year is not None and (year, month) < (today.year, today.month)
        return VaultedMethod(
            method_type=p.METHOD_CARD, brand=brand, last4=last4, exp_month=month, exp_year=year,
            fingerprint=derived_fingerprint("card", brand.lower(), last4, month, year),  # Exact has none
            verification_status=_CVC_VERIFICATION.get(_text(_dict(card.get("checks")).get("cvcCheck")).lower(),
                                                       p.VERIFICATION_UNKNOWN),
            status=p.METHOD_EXPIRED if expired else p.METHOD_ACTIVE,
            **common)

    def vault_payment_method(self, request: VaultRequest) -> VaultedMethod:
        body: dict[str, Any] = {"token": request.temporary_token}
        if request.label:
            body["label"] = request.label
        if request.make_default:
            body["isDefault"] = True
        response = self._call("POST", "/customer/{customer_id}/payment-method",
                              {"customer_id": request.customer.id}, json=body, allow_statuses=(400, 404, 422))
        if response.status_code >= 400:
            raise self._link_error(response, request.temporary_token)
        return self._method(_json(response))

    def _link_error(self, response, temporary_token: str) -> ProcessorError:
        body = _json_or_none(response)
        message, code = error_message(body, response)
        message = redact(message, [*self._secrets(), temporary_token])
        status = response.status_code
        kwargs = {"code": code or None, "http_status": status, "processor": self.name}
        if status == 422:
            return VerificationFailedError(message or "Exact refused to verify the payment method", **kwargs)
        names_token = "token" in _issue_fields(body) or (
            status == 404 and ("token" in message.lower() or "payment method" in message.lower()))
        if names_token:
            return TemporaryTokenError(message or "the payment method token is expired, used or unknown",
                                       **kwargs)
        return self.client.error_for(response)

    def fetch_payment_method(self, customer: CustomerRef, method: MethodRef) -> VaultedMethod:
        return self._method(self._get("/customer/{customer_id}/payment-method/{token}",
                                      {"customer_id": customer.id, "token": method.token}))

    def list_payment_methods(self, customer: CustomerRef) -> list[VaultedMethod]:
        return [self._method(item) for item in
                self._paged("/customer/{customer_id}/payment-method", {"customer_id": customer.id})]

    def delete_payment_method(self, customer: CustomerRef, method: MethodRef) -> None:
        self._delete("/customer/{customer_id}/payment-method/{token}",
                     {"customer_id": customer.id, "token": method.token})

    def set_default_payment_method(self, customer: CustomerRef, method: MethodRef) -> None:
        # Exact has no update route for a linked method: linking it again with isDefault moves the default.
        self._post("/customer/{customer_id}/payment-method", {"customer_id": customer.id},
                   json={"token": method.token, "isDefault": True})

    # -- money -------------------------------------------------------------------------------
    def _check_currency(self, currency: str) -> None:
        if (currency or "").upper() != self.currency:
            raise InvalidRequestError(
                f"this Exact account charges in {self.currency}, not {currency or 'an unnamed currency'}",
                code="unsupported_currency", processor=self.name)

    def _result(self, payment: Any, reference: str, amount: int) -> ChargeResult:
        payment = _dict(payment)
        status, failure_code, failure_message = charge_status(payment)
        amount = cents(payment.get("amount"), amount)
        return ChargeResult(
            reference=reference or _payment_id(payment),
            status=status,
            amount=amount,
            currency=_text(payment.get("currencyCode")).upper() or self.currency,
            amount_captured=amount if status == p.CHARGE_CAPTURED else 0,
            amount_refunded=amount if status == p.CHARGE_REFUNDED else 0,
            failure_code=failure_code,
            failure_message=failure_message,
            raw=sanitize(payment),
        )

    def charge(self, request: ChargeRequest) -> ChargeResult:
        amount = _amount(request.amount)
        self._check_currency(request.currency)
        token = request.method.token if request.method else self._customer_token(request.customer)
        body: dict[str, Any] = {"amount": amount, "capture": bool(request.capture),
                                "paymentMethod": {"token": token}}
        # referenceNo/customerRef at most 20 characters, correlationId at most 60 (OpenAPI NewPayment):
        # longer order references and keys are shortened deterministically (``fit_reference``).
        reference = payment_reference(reference=request.reference, idempotency_key=request.idempotency_key,
                                      customer_ref=request.customer.reference_id)
        if reference:
            body["reference"] = reference
        payment = self._post("/payments", json=body)
        result = self._result(payment, "", amount)
        if not result.reference:
            raise self._bad_response("a payment without an id")
        return result

    def _payment(self, payment_id: str) -> Mapping[str, Any]:
        return _dict(self._get("/payments/{payment_id}", {"payment_id": payment_id}))

    #: How many of the newest payments ``find_charge`` reads (pages of 100).
    FIND_PAGES = 5

    # Lost answers (docs/reliability.md): the charge carries ``reference.correlationId`` = the key;
    # the newest payments are listed (``GET /payments``, newest first) and matched on it.
    def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        key = request.idempotency_key
        if not key:
            raise p.UnsupportedOperation("an Exact payment is found by its correlationId: charge with a key",
                                       processor=self.name)
        for payment in self._paged("/payments", query={"$sort[createdAt]": -1}, maximum=self.FIND_PAGES * 100):
            payment = _dict(payment)
            if _text(_dict(payment.get("reference")).get("correlationId")) == key and \
                    payment.get("type") in ("payment", "authorization"):
                return self.fetch_charge(_payment_id(payment))
        return None

    def fetch_charge(self, reference: str) -> ChargeResult:
        payment = self._payment(reference)
        result = self._result(payment, reference, cents(payment.get("amount")))
        remaining = _dict(payment.get("refundDetails")).get("remaining")
        captures = _dict(payment.get("captureDetails")).get("captures")
        if captures:  # refunds are made on the capture
            capture = self._payment(_text(captures[-1]))
            remaining = _dict(capture.get("refundDetails")).get("remaining")
            captured = cents(capture.get("amount"))
            result = dataclasses.replace(result, amount_captured=captured)
        if remaining is not None:
            refunded = max((result.amount_captured or result.amount) - cents(remaining), 0)
            result = dataclasses.replace(result, amount_refunded=refunded)
        return result

    def _referenced(self, action: str, payment: Mapping[str, Any], amount: int) -> Mapping[str, Any]:
        """POST a ``ReferencedPayment`` (amount + the original authorization code) to capture/refund/void."""
        body = {"amount": amount, "authorization": _text(payment.get("authorization"))}
        route = "/payments/{payment_id}/" + action
        return _dict(self._post(route, {"payment_id": _payment_id(payment)}, json=body))

    def capture(self, reference: str, amount: int | None = None, *,
                idempotency_key: str = "") -> ChargeResult:
        original = self._payment(reference)
        status = charge_status(original)[0]
        if status == p.CHARGE_CAPTURED:  # already captured: answer from state, capture nothing twice
            return self._result(original, reference, cents(original.get("amount")))
        if status != p.CHARGE_AUTHORIZED:
            raise InvalidRequestError(f"this payment is {status} and cannot be captured",
                                      code="not_capturable", processor=self.name)
        remaining = _dict(original.get("captureDetails")).get("remaining")
        amount = _amount(amount) if amount is not None else cents(remaining, cents(original.get("amount")))
        return self._result(self._referenced("capture", original, amount), reference, amount)

    def void(self, reference: str, *, idempotency_key: str = "") -> ChargeResult:
        original = self._payment(reference)
        if original.get("voided"):
            return ChargeResult(reference=reference, status=p.CHARGE_VOIDED,
                                amount=cents(original.get("amount")),
                                currency=_text(original.get("currencyCode")).upper() or self.currency,
                                raw=sanitize(original))
        amount = cents(original.get("amount"))
        return self._result(self._referenced("void", original, amount), reference, amount)

    def refund(self, reference: str, amount: int | None = None, *, idempotency_key: str = "") -> ChargeResult:
        target = self._payment(reference)
        captures = _dict(target.get("captureDetails")).get("captures")
        if captures:  # an authorization captured later: the capture transaction is what is refunded
            target = self._payment(_text(captures[-1]))
        remaining = _dict(target.get("refundDetails")).get("remaining")
        amount = _amount(amount) if amount is not None else cents(remaining, cents(target.get("amount")))
        return self._result(self._referenced("refund", target, amount), reference, amount)

    # -- browser -------------------------------------------------------------------------------
    # -- browser checkout ----------------------------------------------------------------------
    # ExactJS: sandbox https://api.exactpaysandbox.com/js/v1/exact.js (Exact's demos); production
    # by the same pattern on the production API host — Exact's overview page names the domains but
    # the copy we have lost the URL, so verify it before going live (docs/processors/exact.md).
    # No SRI hash is published.
    js_sdk_path = "/js/v1/exact.js"
    js_sdk_url = PRODUCTION_BASE_URL + js_sdk_path

    def sdk_script(self) -> tuple[str, str]:
        if self.option("JS_SDK_URL"):
            return super().sdk_script()
        base = str(self.option("BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        return (PRODUCTION_BASE_URL if base == PRODUCTION_BASE_URL else DEFAULT_BASE_URL) + self.js_sdk_path, ""

    def prepare_checkout(self, request: p.CheckoutRequest) -> p.CheckoutSession:
        """An Order (``POST /account/{accountId}/orders``) whose ``accessToken`` lets ExactJS call
        Exact for 15 minutes — the API token never reaches the page.  ``CHECKOUT_ORDER_AMOUNT``
        (cents, default 0: the checkout only tokenizes; the demo's order carries the cart amount,
        and whether Exact accepts 0 is not documented) and the request's short reference."""
        amount = int(self.option("CHECKOUT_ORDER_AMOUNT", 0))
        order = _dict(self._post("/orders", json={"amount": amount,
                                                  "reference": {"referenceNo": request.reference[:20]}}))
        access = _dict(order.get("accessToken"))
        order_id, token = _text(order.get("id")), _text(access.get("token"))
        if not order_id or not token:
            raise self._bad_response("an order without an id or access token")
        url, integrity = self.sdk_script()
        return p.CheckoutSession(
            processor=self.name, sdk_url=url, sdk_integrity=integrity,
            client={"accessToken": token, "orderId": order_id},
            expires_at=_datetime(access.get("expiresAt")) or datetime.now(timezone.utc) + timedelta(minutes=15),
        )

    def get_client_token(self, customer: CustomerRef) -> None:
        return None  # the customer token is a payment credential, never for a browser

    # -- webhooks ------------------------------------------------------------------------------
    def verify_webhook(self, request: WebhookRequest) -> None:
        secrets = self._webhook_secrets()
        if not secrets:
            raise WebhookVerificationError("no webhook secret is configured")
        try:
            presented = request.header(self.webhook_header)
            candidate = presented.strip().encode("utf-8", "surrogatepass") if presented else b""
        except Exception:  # not a string, or not encodable: never anything but a verification error
            raise WebhookVerificationError("malformed webhook secret header") from None
        if not candidate:
            raise WebhookVerificationError("missing webhook secret header")
        matched = False
        for secret in secrets:  # compare against every secret: no early exit, constant time each
            matched |= hmac.compare_digest(candidate, secret.encode("utf-8", "surrogatepass"))
        if not matched:
            raise WebhookVerificationError("webhook secret does not match")

    def _event(self, request: WebhookRequest) -> Mapping[str, Any]:
        try:
            event = json.loads(request.body)
        except (TypeError, ValueError):
            raise WebhookParseError("body is not JSON") from None
        if not isinstance(event, Mapping):
            raise WebhookParseError("body is not a JSON object")
        if not (isinstance(event.get("id"), str) and event["id"]):
            raise WebhookParseError("event has no id")
        if not (isinstance(event.get("event"), str) and event["event"]):
            raise WebhookParseError("event has no name")
        return event

    @staticmethod
    def _event_key(event: Mapping[str, Any]) -> str:
        # One Exact event is delivered once per lifecycle status (start, success, failure, finish).
        status = _text(event.get("status")).lower()
        return f"{event['id']}:{status}" if status else event["id"]

    def webhook_event_id(self, request: WebhookRequest) -> tuple[str, str]:
        event = self._event(request)
        return self._event_key(event), event["event"]

    def parse_webhook(self, request: WebhookRequest) -> list[NormalizedEvent]:
        event = self._event(request)
        resource, action = _event_resource(event["event"])
        status = _text(event.get("status") or "success").lower()
        customer_id = _resource_id(event, "customer", "customerId")
        when = event.get("finishedAt") or event.get("createdAt") or event.get("startedAt")
        common = {"event_id": self._event_key(event), "processor_event_type": event["event"],
                  "customer_id": customer_id, "raw": sanitize(event), "occurred_at": _datetime(when)}
        kind, extra = p.EVENT_UNKNOWN, {}
        token = _resource_id(event, "paymentMethod", "paymentMethodToken", "paymentToken")
        if token:  # the method's id is its token: keep it out of the stored payload
            common["raw"] = without_values(common["raw"], {token})
        if resource == "paymentmethod" and status == "success" and action in _METHOD_EVENTS and token:
            kind, extra = _METHOD_EVENTS[action], {"payment_method_ids": (token,)}
        elif resource == "customer" and status == "success" and action in _CUSTOMER_EVENTS and customer_id:
            kind = _CUSTOMER_EVENTS[action]
        elif resource == "payment" and action in _PAYMENT_ACTIONS:
            kind, extra = self._payment_event(event, action, status)
        return [NormalizedEvent(type=kind, **common, **extra)]

    def _payment_event(self, event: Mapping[str, Any], action: str,
                       status: str) -> tuple[str, dict[str, Any]]:
        payment_id = _resource_id(event, "payment", "paymentId")
        if not payment_id or status not in ("success", "failure"):
            return p.EVENT_UNKNOWN, {}
        if status == "failure":
            kind = p.EVENT_CHARGE_FAILED if action in ("create", "capture") else p.EVENT_UNKNOWN
            return kind, {"charge_reference": payment_id}
        # The event names the payment but says nothing of its outcome: ask Exact.
        try:
            payment = self._payment(payment_id)
        except NotFoundError:
            raise WebhookVerificationError("the event names a payment Exact does not know") from None
        result = self._result(payment, payment_id, 0)
        data = {"status": result.status, "amount": result.amount, "currency": result.currency}
        if result.failure_code:
            data.update(failure_code=result.failure_code, failure_message=result.failure_message)
        kind = _CHARGE_EVENTS.get(result.status, p.EVENT_UNKNOWN)
        return kind, {"charge_reference": payment_id, "data": data}
