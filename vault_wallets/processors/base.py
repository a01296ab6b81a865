"""The processor boundary.

Everything that crosses it is a plain, frozen dataclass defined here; no Django model,
queryset or request object goes into a processor, and no HTTP happens outside
``vault_wallets.processors``.  A processor is a class configured in settings by dotted
path plus ``OPTIONS``; its credentials live on the instance, never in module globals::

    VAULT_WALLETS = {
        "ACCOUNTS": {
            "default": {
                "PROCESSOR": "vault_wallets.processors.sandbox.SandboxProcessor",
                "OPTIONS": {"WEBHOOK_SECRETS": ["whsec_..."]},
            },
        },
    }

Amounts are always integer minor units (cents) here; a processor converts to its own
representation (decimal dollars for PaySimple) exactly, with ``decimal``.

A processor raises only the exceptions below.  Their messages are the processor's own
explanation with credentials, tokens and card numbers removed; callers may log them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

from .. import safejson

# --------------------------------------------------------------------------------------
# Vocabularies shared by every processor and the models.
# --------------------------------------------------------------------------------------

METHOD_CARD = "card"
METHOD_ACH = "ach"
METHOD_TYPES = (METHOD_CARD, METHOD_ACH)

# Verification status, as ProcessOut documents it for customer tokens.
VERIFICATION_SUCCESS = "success"
VERIFICATION_PENDING = "pending"
VERIFICATION_FAILED = "failed"
VERIFICATION_NOT_REQUESTED = "not-requested"
VERIFICATION_UNKNOWN = "unknown"
VERIFICATION_STATUSES = (
    VERIFICATION_SUCCESS,
    VERIFICATION_PENDING,
    VERIFICATION_FAILED,
    VERIFICATION_NOT_REQUESTED,
    VERIFICATION_UNKNOWN,
)

METHOD_ACTIVE = "active"
METHOD_EXPIRED = "expired"
METHOD_CLOSED = "closed"
METHOD_REMOVED = "removed"
METHOD_STATUSES = (METHOD_ACTIVE, METHOD_EXPIRED, METHOD_CLOSED, METHOD_REMOVED)

CHARGE_AUTHORIZED = "authorized"
CHARGE_CAPTURED = "captured"
CHARGE_DECLINED = "declined"
CHARGE_FAILED = "failed"
CHARGE_VOIDED = "voided"
CHARGE_REFUNDED = "refunded"
CHARGE_STATUSES = (
    CHARGE_AUTHORIZED,
    CHARGE_CAPTURED,
    CHARGE_DECLINED,
    CHARGE_FAILED,
    CHARGE_VOIDED,
    CHARGE_REFUNDED,
)
# Local states of a Charge (never a processor's answer): written before the processor call, and
# after a call whose answer was lost (timeout, dropped connection, 5xx) until it is resolved.
CHARGE_PENDING = "pending"
CHARGE_UNKNOWN = "unknown"
LOCAL_CHARGE_STATUSES = (CHARGE_PENDING, CHARGE_UNKNOWN, *CHARGE_STATUSES)

# Normalized webhook event types (see ``NormalizedEvent``).
EVENT_PAYMENT_METHOD_UPDATED = "payment_method.updated"
EVENT_PAYMENT_METHOD_CLOSED = "payment_method.closed"
EVENT_VERIFICATION_SUCCEEDED = "payment_method.verification_succeeded"
EVENT_VERIFICATION_FAILED = "payment_method.verification_failed"
EVENT_CHARGE_SUCCEEDED = "charge.succeeded"
EVENT_CHARGE_FAILED = "charge.failed"
EVENT_CHARGE_REFUNDED = "charge.refunded"
EVENT_CHARGE_VOIDED = "charge.voided"
EVENT_CUSTOMER_UPDATED = "customer.updated"
EVENT_UNKNOWN = "unknown"
EVENT_TYPES = (
    EVENT_PAYMENT_METHOD_UPDATED,
    EVENT_PAYMENT_METHOD_CLOSED,
    EVENT_VERIFICATION_SUCCEEDED,
    EVENT_VERIFICATION_FAILED,
    EVENT_CHARGE_SUCCEEDED,
    EVENT_CHARGE_FAILED,
    EVENT_CHARGE_REFUNDED,
    EVENT_CHARGE_VOIDED,
    EVENT_CUSTOMER_UPDATED,
    EVENT_UNKNOWN,
)


# --------------------------------------------------------------------------------------
# Exceptions
# --------------------------------------------------------------------------------------


class ProcessorError(Exception):
    """Base of every error a processor raises.

    ``message`` is safe to show to staff and to log: processors never put credentials,
    tokens or card numbers in it.  ``code`` is a short machine-readable reason
    (the processor's own code where it has one).  ``http_status`` is the processor's
    HTTP status when there was one.
    """

    default_code = "processor_error"

    def __init__(self, message: str = "", *, code: str | None = None, http_status: int | None = None,
                 processor: str | None = None):
        self.message = message or (self.__class__.__doc__ or type(self).__name__).strip().splitlines()[0]
        self.code = code or self.default_code
        self.http_status = http_status
        self.processor = processor
        super().__init__(self.message)


class InvalidRequestError(ProcessorError):
    """The processor rejected the request as invalid."""

    default_code = "invalid_request"


class NotFoundError(InvalidRequestError):
    """The processor does not know this object."""

    default_code = "not_found"


class TemporaryTokenError(InvalidRequestError):
    """The temporary token is expired, already used or unknown."""

    default_code = "invalid_temporary_token"


class VerificationFailedError(ProcessorError):
    """The processor refused to verify the payment method."""

    default_code = "verification_failed"


class DeclinedError(ProcessorError):
    """The payment was declined."""

    default_code = "card_declined"


class AuthenticationError(ProcessorError):
    """The processor rejected the account's credentials."""

    default_code = "authentication_failed"


class ProcessorUnavailable(ProcessorError):
    """The processor could not be reached or failed (timeout, connection error, 5xx)."""

    default_code = "processor_unavailable"


class UnsupportedOperation(ProcessorError):
    """This processor does not offer this operation."""

    default_code = "unsupported"


class WebhookVerificationError(Exception):
    """A webhook delivery failed authentication.  ``reason`` is short and safe to return."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class WebhookParseError(WebhookVerificationError):
    """A webhook body could not be understood (malformed JSON, missing event id)."""


# --------------------------------------------------------------------------------------
# Data in and out
# --------------------------------------------------------------------------------------


def _repr_without(*secret_fields: str):
    """A ``__repr__`` that masks the named fields, so tokens never reach a log or traceback."""

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in secret_fields and value:
                value = "<redacted>"
            parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    return __repr__


@dataclass(frozen=True)
class AddressData:
    line1: str = ""
    line2: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""
    country: str = ""  # ISO 3166-1 alpha-2
    label: str = ""
    name: str = ""
    is_default: bool = False
    processor_id: str = ""  # the processor's id for this address, when it stores addresses


@dataclass(frozen=True)
class CustomerData:
    """What vault_wallets knows about a customer, sent to create or update it."""

    reference_id: str
    name: str = ""
    email: str = ""
    phone: str = ""
    currency: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    address: AddressData | None = None


@dataclass(frozen=True)
class ProcessorCustomer:
    """A customer as the processor holds it.

    ``id`` identifies the customer at the processor.  ``secret`` is for processors whose
    customer record carries a credential of its own (Exact's customer token charges the
    default method): it is stored encrypted and never shown.
    """

    id: str
    secret: str = ""
    currency: str = ""
    default_method_id: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)

    __repr__ = _repr_without("secret")


@dataclass(frozen=True)
class CustomerRef:
    """How a processor call names a customer: its processor id (and secret, if any)."""

    id: str
    secret: str = ""
    reference_id: str = ""

    __repr__ = _repr_without("secret")


@dataclass(frozen=True)
class MethodRef:
    """How a processor call names a vaulted method.

    ``method_id`` is the processor's identifier for the saved method (Caselle's
    ``spm_…`` uid, CyberSource's instrument id); ``token`` is what is charged.  For most
    processors the two are the same string.
    """

    token: str
    method_id: str = ""
    method_type: str = METHOD_CARD

    def __post_init__(self):
        if not self.method_id:
            object.__setattr__(self, "method_id", self.token)

    __repr__ = _repr_without("token", "method_id")


@dataclass(frozen=True)
class VaultRequest:
    """Exchange a temporary (browser) token for a permanent vaulted method."""

    customer: CustomerRef
    temporary_token: str
    method_type: str = METHOD_CARD
    label: str = ""
    make_default: bool = False
    holder_name: str = ""
    billing_address: AddressData | None = None
    idempotency_key: str = ""
    #: What the shop knows of the customer, for processors that want billing data with the card
    #: (CyberSource's ``orderInformation.billTo``); the billing address is the default address.
    email: str = ""
    customer_name: str = ""

    __repr__ = _repr_without("temporary_token")


@dataclass(frozen=True)
class VaultedMethod:
    """A vaulted payment method as the processor reports it.

    ``fingerprint`` is the processor's stable identifier of the underlying card or bank
    account, when it has one (never a card number); vault_wallets keys it with HMAC before
    storing it, to find duplicates.
    """

    token: str
    method_id: str = ""
    method_type: str = METHOD_CARD
    fingerprint: str = ""
    brand: str = ""
    last4: str = ""
    exp_month: int | None = None
    exp_year: int | None = None
    holder_name: str = ""
    bank_name: str = ""
    account_type: str = ""  # checking | savings for ACH
    verification_status: str = VERIFICATION_UNKNOWN
    status: str = METHOD_ACTIVE
    is_default: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict)  # sanitized: no token, no number

    def __post_init__(self):
        if not self.method_id:
            object.__setattr__(self, "method_id", self.token)

    @property
    def ref(self) -> MethodRef:
        return MethodRef(token=self.token, method_id=self.method_id, method_type=self.method_type)

    __repr__ = _repr_without("token", "method_id", "fingerprint")


@dataclass(frozen=True)
class ChargeRequest:
    """Authorize (``capture=False``) or charge (``capture=True``) an amount.

    ``method`` None charges the customer's default method at the processor.
    """

    customer: CustomerRef
    amount: int
    currency: str
    method: MethodRef | None = None
    capture: bool = True
    idempotency_key: str = ""
    reference: str = ""  # the shop's order reference
    description: str = ""


@dataclass(frozen=True)
class ChargeResult:
    """What the processor answered.  ``status`` is one of ``CHARGE_STATUSES``.

    A decline is a result (``status="declined"``), not an exception: it is recorded.
    """

    reference: str
    status: str
    amount: int
    currency: str
    amount_captured: int = 0
    amount_refunded: int = 0
    failure_code: str = ""
    failure_message: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientToken:
    """A short-lived processor-side token that lets the shopper's browser act for one customer."""

    token: str
    expires_at: datetime | None = None

    __repr__ = _repr_without("token")


@dataclass(frozen=True)
class CheckoutRequest:
    """Ask for what the processor's browser library needs before it tokenizes a card.

    ``customer`` is the logged-in shopper's processor customer (resolved on the server from
    ``request.user``, never from the browser).  ``origin`` is the checkout page's origin
    (``https://shop.example``) as the *server* knows it (Django's validated host), for
    processors that bind their browser session to an origin (CyberSource ``targetOrigins``).
    ``customer_data`` is what the shop knows about the shopper (for libraries that show it).
    """

    customer: CustomerRef
    origin: str = ""
    customer_data: CustomerData | None = None
    reference: str = ""  # a short, unique, non-secret reference for processors that want one


@dataclass(frozen=True)
class CheckoutSession:
    """What the shopper's browser gets to drive the processor's own library.

    ``sdk_url`` / ``sdk_integrity`` name the library script (the processor's documented URL,
    or the account's ``JS_SDK_URL`` override) and its SRI hash where the processor publishes
    one.  ``client`` holds only the short-lived or public values the library needs (a
    customer token, a capture context, an order access token, a public project id…); every
    processor's docs page lists them.  ``expires_at`` is when they stop working.
    """

    processor: str
    sdk_url: str = ""
    sdk_integrity: str = ""
    client: Mapping[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None

    __repr__ = _repr_without("client")


@dataclass(frozen=True)
class WebhookRequest:
    """A webhook delivery as received: header names are lower-cased."""

    headers: Mapping[str, str]
    body: bytes
    remote_addr: str = ""
    received_at: datetime | None = None

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    @cached_property
    def payload(self) -> Any:
        """The body parsed as untrusted JSON (``safejson.loads``), once however many callers ask
        (the endpoint's safety check and the processor module's own parse); raises
        ``safejson.UnsafeJSON`` — a ``ValueError`` — for anything ``safejson`` refuses."""
        return safejson.loads(self.body)


@dataclass(frozen=True)
class NormalizedEvent:
    """A processor event translated into vault_wallets' vocabulary.

    ``payment_method_ids`` name affected vaulted methods by their processor ``method_id``;
    ``charge_reference`` names a charge by the processor's reference.  ``data`` holds any
    further facts in the normalized vocabulary; ``raw`` the processor's payload.
    """

    type: str
    event_id: str
    processor_event_type: str = ""
    customer_id: str = ""
    payment_method_ids: tuple[str, ...] = ()
    charge_reference: str = ""
    occurred_at: datetime | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


def derived_fingerprint(kind: str, *parts: Any) -> str:
    """A stable identifier for processors that expose no card/account fingerprint.

    A digest of non-secret display data (brand, BIN, last4, expiry; routing number and
    account suffix for bank accounts): weaker than a processor's own fingerprint — two cards
    can share it, and a reissued card with a new expiry does not match.  ``""`` when every
    part is empty.
    """
    values = ["" if part is None else str(part) for part in parts]
    if not any(values):
        return ""
    return "derived:" + hashlib.sha256("|".join([kind, *values]).encode("utf-8")).hexdigest()


REDACTED = "[redacted]"
#: Key fragments withheld from the staff view of every webhook body, whatever the processor
#: (compared lower-case, without "_" and "-").
ALWAYS_REDACTED_KEY_WORDS = ("token", "secret", "password", "fingerprint", "signature", "cvv", "cvc", "cvd",
                             "cardnumber", "accountnumber", "routingnumber")
#: Whole keys withheld likewise.
ALWAYS_REDACTED_KEYS = ("pan", "number")


def _key_words(key: Any) -> str:
    return str(key).lower().replace("_", "").replace("-", "")


def redact_keys(value: Any, keys: Iterable[str] = ()) -> Any:
    """A copy of a parsed JSON value with the values of ``keys`` (any depth, case-insensitive)
    and of any key containing one of ``ALWAYS_REDACTED_KEY_WORDS`` replaced by ``REDACTED``
    (lists and objects included, whole).  Raises ``RecursionError`` for absurdly deep values."""
    wanted = {_key_words(k) for k in (*keys, *ALWAYS_REDACTED_KEYS)}

    def walk(item: Any) -> Any:
        if isinstance(item, Mapping):
            out = {}
            for key, inner in item.items():
                words = _key_words(key)
                hidden = words in wanted or any(w in words for w in ALWAYS_REDACTED_KEY_WORDS)
                out[key] = REDACTED if hidden and inner not in (None, "", [], {}) else walk(inner)
            return out
        if isinstance(item, list):
            return [walk(inner) for inner in item]
        return item

    return walk(value)


# --------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------


class BaseProcessor:
    """Subclass this once per processor, in its own module under ``processors/``.

    ``account`` is the configured account name; ``options`` the account's ``OPTIONS``
    dict (keys upper-case, as in Django settings).  Construct no network client at import
    time; build it lazily on the instance.
    """

    #: Short machine name, used in docs, admin and logs.
    name: ClassVar[str] = "base"
    #: Human name.
    display_name: ClassVar[str] = "Processor"
    #: Whether ``get_client_token`` returns a token.
    supports_client_token: ClassVar[bool] = False
    #: Whether ``fetch_payment_method`` may run in several threads at once (a large NOC's chunks
    #: fetch concurrently); False for a processor whose "server" is this process's database.
    concurrent_fetches: ClassVar[bool] = True
    #: Whether the processor stores addresses itself (``save_address`` works).
    supports_addresses: ClassVar[bool] = False
    #: Options that must be present; checked by the system checks.
    required_options: ClassVar[tuple[str, ...]] = ()
    #: Options whose values are secrets (never shown in admin or checks output).
    secret_options: ClassVar[tuple[str, ...]] = ()
    #: Webhook request headers that carry a secret or signature (never stored); names in lower case.
    #: Headers whose names contain "signature", "secret", "token", "authorization" or "cookie"
    #: are dropped anyway.
    webhook_secret_headers: ClassVar[tuple[str, ...]] = ()
    #: Keys of this processor's webhook bodies (any depth) whose values are processor tokens or
    #: vaulted-method ids: staff see ``[redacted]`` in their place (``redact_webhook_payload``).
    webhook_token_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, account: str, options: Mapping[str, Any] | None = None):
        self.account = account
        self.options = dict(options or {})

    def __repr__(self) -> str:  # never the options: they hold credentials
        return f"<{type(self).__name__} account={self.account!r}>"

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def check_options(self) -> list[str]:
        """Return human-readable problems with ``options`` (used by the system checks)."""
        return [f"OPTIONS is missing {key!r}" for key in self.required_options if not self.options.get(key)]

    # -- customers ------------------------------------------------------------------
    def create_customer(self, data: CustomerData) -> ProcessorCustomer:
        """Create the customer, or return the existing one with the same reference_id."""
        raise NotImplementedError

    def update_customer(self, customer: CustomerRef, data: CustomerData) -> ProcessorCustomer:
        raise NotImplementedError

    def delete_customer(self, customer: CustomerRef) -> None:
        raise NotImplementedError

    # -- payment methods -------------------------------------------------------------
    def vault_payment_method(self, request: VaultRequest) -> VaultedMethod:
        """Exchange the temporary token for a permanent one.

        Raise ``TemporaryTokenError`` for an expired, used or unknown token and
        ``VerificationFailedError`` when the processor refuses to verify the method.
        """
        raise NotImplementedError

    def fetch_payment_method(self, customer: CustomerRef, method: MethodRef) -> VaultedMethod:
        """Fetch the current state of a vaulted method (used for notifications of change)."""
        raise NotImplementedError

    def fetch_payment_methods(self, customer: CustomerRef, methods: list[MethodRef]) -> list[VaultedMethod | None]:
        """Several methods of one customer, in order; None for one the processor no longer knows.

        Fetches each in turn; a processor whose API answers them together (one wallet listing)
        overrides it.  A large notification of change calls it once per customer.
        """
        answers: list[VaultedMethod | None] = []
        for method in methods:
            try:
                answers.append(self.fetch_payment_method(customer, method))
            except NotFoundError:
                answers.append(None)
        return answers

    def list_payment_methods(self, customer: CustomerRef) -> list[VaultedMethod]:
        raise NotImplementedError

    def delete_payment_method(self, customer: CustomerRef, method: MethodRef) -> None:
        raise NotImplementedError

    def set_default_payment_method(self, customer: CustomerRef, method: MethodRef) -> None:
        raise NotImplementedError

    # -- addresses (processors that store them) ---------------------------------------
    def save_address(self, customer: CustomerRef, address: AddressData) -> AddressData:
        raise UnsupportedOperation(f"{self.display_name} does not store addresses", processor=self.name)

    def delete_address(self, customer: CustomerRef, address: AddressData) -> None:
        raise UnsupportedOperation(f"{self.display_name} does not store addresses", processor=self.name)

    # -- money -------------------------------------------------------------------------
    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Authorize, and capture too when ``request.capture``.  A decline is a result."""
        raise NotImplementedError

    def capture(self, reference: str, amount: int | None = None, *, idempotency_key: str = "") -> ChargeResult:
        raise NotImplementedError

    def void(self, reference: str, *, idempotency_key: str = "") -> ChargeResult:
        raise NotImplementedError

    def refund(self, reference: str, amount: int | None = None, *, idempotency_key: str = "") -> ChargeResult:
        raise NotImplementedError

    # -- recovering lost answers (see docs/reliability.md) ---------------------------------
    #: Seconds after an unanswered charge before ``find_charge`` finding nothing is believed
    #: (a request may still be in flight at the processor).  0 where the lookup is authoritative.
    charge_lookup_settle_seconds: ClassVar[float] = 120.0

    def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        """The charge ``request`` made, if the processor has one, found by what this processor
        allows (idempotency key, the reference sent with it); None when it has none.

        Never creates a charge.  Raise ``UnsupportedOperation`` when the processor offers no way
        to look a charge up (the charge then waits for the processor's webhook or staff).
        """
        raise UnsupportedOperation(f"{self.display_name} cannot look a charge up", processor=self.name)

    def fetch_charge(self, reference: str) -> ChargeResult:
        """The current state of the charge with this processor reference (refunded amount included)."""
        raise UnsupportedOperation(f"{self.display_name} cannot fetch a charge", processor=self.name)

    # -- browser -----------------------------------------------------------------------
    def get_client_token(self, customer: CustomerRef) -> ClientToken | None:
        """A processor-side token for the shopper's browser, or None if it has none."""
        return None

    #: The processor's documented browser library URL (the account option ``JS_SDK_URL`` overrides it).
    js_sdk_url: ClassVar[str] = ""
    #: Its published SRI hash, if the processor publishes one for that URL.
    js_sdk_integrity: ClassVar[str] = ""

    def sdk_script(self) -> tuple[str, str]:
        """``(url, integrity)`` of the browser library: ``JS_SDK_URL`` when set (no SRI then:
        a self-hosted or stand-in copy has its own hash), else the documented URL."""
        override = str(self.option("JS_SDK_URL") or "")
        if override:
            return override, str(self.option("JS_SDK_INTEGRITY") or "")
        return self.js_sdk_url, self.js_sdk_integrity

    def prepare_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """What the browser library needs before tokenizing (one server call at most).

        The browser's result is then saved with ``vault_payment_method``: its
        ``temporary_token`` is whatever the processor's adapter (``static/vault_wallets/
        adapters/<name>.js``) submits, as that processor's docs page describes.
        """
        raise UnsupportedOperation(f"{self.display_name} has no browser checkout", processor=self.name)

    # -- webhooks ----------------------------------------------------------------------
    def verify_webhook(self, request: WebhookRequest) -> None:
        """Authenticate a delivery; raise ``WebhookVerificationError`` if it fails."""
        raise NotImplementedError

    def webhook_event_id(self, request: WebhookRequest) -> tuple[str, str]:
        """``(event_id, processor_event_type)`` of a verified delivery, for de-duplication.

        Raise ``WebhookParseError`` for a body that cannot be parsed.
        """
        raise NotImplementedError

    def redact_webhook_payload(self, payload: Any) -> Any:
        """A copy of a stored delivery's parsed JSON body that is safe to show staff.

        Runs in the admin, so it never calls the processor.  The default withholds the values
        of ``webhook_token_fields`` and of keys that name a token, secret or card number;
        override it when a token can only be recognised by its value.
        """
        return redact_keys(payload, self.webhook_token_fields)

    def parse_webhook(self, request: WebhookRequest) -> list[NormalizedEvent]:
        """Translate a stored, verified delivery into normalized events.

        Runs in a worker, not in the request; it may call the processor (ProcessOut
        authenticates by re-fetching the event).
        """
        raise NotImplementedError
