"""The embedded sandbox processor: no network, no account.

Its "server" is ``vault_wallets.sandbox.engine`` (the ``vault_wallets.sandbox`` app must be
installed); this module is its client and speaks only the dataclasses of ``base``.  Webhooks
are signed with the Standard Webhooks scheme (``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256>``), secrets configured as ``whsec_…`` strings in
``OPTIONS["WEBHOOK_SECRETS"]`` (a list: several are accepted so secrets rotate without
downtime; the first one signs).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from datetime import datetime, timezone
from typing import Any

from . import base as p
from .base import (
    BaseProcessor,
    ChargeRequest,
    ChargeResult,
    CustomerData,
    CustomerRef,
    MethodRef,
    NormalizedEvent,
    ProcessorCustomer,
    VaultedMethod,
    VaultRequest,
    WebhookParseError,
    WebhookRequest,
    WebhookVerificationError,
)

SANDBOX_EVENT_TYPES = {
    "provider.noc": p.EVENT_PAYMENT_METHOD_UPDATED,
    "payment_method.verification_succeeded": p.EVENT_VERIFICATION_SUCCEEDED,
    "payment_method.verification_failed": p.EVENT_VERIFICATION_FAILED,
    "charge.succeeded": p.EVENT_CHARGE_SUCCEEDED,
    "charge.failed": p.EVENT_CHARGE_FAILED,
    "charge.refunded": p.EVENT_CHARGE_REFUNDED,
}


class SandboxFaults:
    """Make the next sandbox calls fail as a network processor would (for tests).

    ``fail_next`` fails before the call (nothing happens); ``drop_next`` ("apply, then drop the
    answer") and ``late_next`` ("apply, then answer late": after ``seconds``, past the caller's
    timeout) let the sandbox do the operation — committed, as a real processor's would be — and
    then raise ``ProcessorUnavailable`` instead of answering.  ``only`` limits the after-call faults
    to one operation (``"charge"``, ``"refund"``, ``"capture"``, ``"void"``, …).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: list[p.ProcessorError] = []
        self._after: list[tuple[float, str]] = []

    def fail_next(self, count: int = 1, kind: str = "5xx") -> None:
        error = (p.ProcessorUnavailable("the sandbox did not answer in time", code="timeout", processor="sandbox")
                 if kind == "timeout" else
                 p.ProcessorUnavailable("the sandbox answered HTTP 503", code="processor_unavailable",
                                        http_status=503, processor="sandbox"))
        with self._lock:
            self._pending.extend([error] * count)

    def drop_next(self, count: int = 1, only: str = "") -> None:
        with self._lock:
            self._after.extend([(0.0, only)] * count)

    def late_next(self, seconds: float = 1.0, count: int = 1, only: str = "") -> None:
        with self._lock:
            self._after.extend([(seconds, only)] * count)

    def reset(self) -> None:
        with self._lock:
            self._pending.clear()
            self._after.clear()

    def check(self) -> None:
        with self._lock:
            error = self._pending.pop(0) if self._pending else None
        if error is not None:
            raise error

    def after(self, operation: str) -> None:
        """Called once the operation was applied: drop or delay its answer if asked to."""
        with self._lock:
            index = next((i for i, (_, only) in enumerate(self._after) if not only or only == operation), None)
            fault = self._after.pop(index) if index is not None else None
        if fault is None:
            return
        if fault[0]:
            time.sleep(fault[0])
            raise p.ProcessorUnavailable("the sandbox did not answer in time", code="timeout", processor="sandbox")
        raise p.ProcessorUnavailable("the sandbox closed the connection without answering",
                                     code="connection_error", processor="sandbox")


def _secret_bytes(secret: str) -> bytes:
    raw = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


class SandboxProcessor(BaseProcessor):
    name = "sandbox"
    display_name = "Sandbox"
    secret_options = ("WEBHOOK_SECRETS",)
    #: ``sbxpm_…`` ids are the sandbox's permanent tokens.
    webhook_token_fields = ("payment_method_id", "payment_method_ids")
    concurrent_fetches = False  # its engine is this database: fetched in the caller's thread

    def __init__(self, account: str, options: dict[str, Any] | None = None):
        super().__init__(account, options)
        self.faults = SandboxFaults()

    # -- plumbing ----------------------------------------------------------------------
    def _call(self, operation: str, *args, **kwargs):
        from vault_wallets.sandbox import engine  # the "server"; imported on use, never at import time

        self.faults.check()
        try:
            answer = getattr(engine, operation)(self.account, *args, **kwargs)
        except engine.EngineError as exc:
            raise self._error(exc) from None
        self.faults.after(operation)
        return answer

    def _error(self, exc) -> p.ProcessorError:
        kwargs = {"code": exc.code, "http_status": exc.status, "processor": self.name}
        if exc.code in ("token_not_found", "token_used", "token_expired"):
            return p.TemporaryTokenError(exc.message, **kwargs)
        if exc.code == "verification_failed":
            return p.VerificationFailedError(exc.message, **kwargs)
        if exc.status == 404:
            return p.NotFoundError(exc.message, **kwargs)
        return p.InvalidRequestError(exc.message, **kwargs)

    def check_options(self) -> list[str]:
        problems = super().check_options()
        secrets = self.options.get("WEBHOOK_SECRETS") or []
        if isinstance(secrets, str):
            problems.append("WEBHOOK_SECRETS must be a list of 'whsec_…' strings")
            secrets = []
        for secret in secrets:
            try:
                if not _secret_bytes(secret):
                    raise ValueError
            except (binascii.Error, ValueError, TypeError):
                problems.append("a WEBHOOK_SECRETS entry is not 'whsec_' + base64")
        return problems

    # -- customers -----------------------------------------------------------------------
    @staticmethod
    def _customer(data: dict) -> ProcessorCustomer:
        return ProcessorCustomer(id=data["id"], currency=data["currency"], default_method_id=data["default_method"],
                                 raw={k: v for k, v in data.items() if k != "id"})

    def create_customer(self, data: CustomerData) -> ProcessorCustomer:
        return self._customer(self._call("create_customer", data.reference_id, name=data.name, email=data.email,
                                         phone=data.phone, currency=data.currency))

    def update_customer(self, customer: CustomerRef, data: CustomerData) -> ProcessorCustomer:
        return self._customer(self._call("update_customer", customer.id, name=data.name, email=data.email,
                                         phone=data.phone, currency=data.currency))

    def delete_customer(self, customer: CustomerRef) -> None:
        self._call("delete_customer", customer.id)

    # -- methods ---------------------------------------------------------------------------
    @staticmethod
    def _method(data: dict) -> VaultedMethod:
        return VaultedMethod(
            token=data["id"], method_type=p.METHOD_ACH if data["type"] == "ach" else p.METHOD_CARD,
            fingerprint=data["fingerprint"], brand=data["brand"], last4=data["last4"],
            exp_month=data["exp_month"], exp_year=data["exp_year"], holder_name=data["holder_name"],
            bank_name=data["bank_name"], account_type=data["account_type"],
            verification_status=data["verification_status"],
            status={"active": p.METHOD_ACTIVE, "closed": p.METHOD_CLOSED}.get(data["state"], p.METHOD_REMOVED),
            is_default=data["is_default"],
            raw={k: data[k] for k in ("type", "brand", "last4", "exp_month", "exp_year", "state", "label")},
        )

    def prepare_checkout(self, request: p.CheckoutRequest) -> p.CheckoutSession:
        """The sandbox needs nothing before tokenizing: its tokenizer is the app's own
        ``POST /wallet/sandbox/tokens/`` (the adapter reads its URL from the page config)."""
        return p.CheckoutSession(processor=self.name)

    def vault_payment_method(self, request: VaultRequest) -> VaultedMethod:
        return self._method(self._call("vault", request.customer.id, request.temporary_token,
                                       make_default=request.make_default, label=request.label,
                                       idempotency_key=request.idempotency_key))

    def fetch_payment_method(self, customer: CustomerRef, method: MethodRef) -> VaultedMethod:
        return self._method(self._call("get_method", customer.id, method.method_id))

    def list_payment_methods(self, customer: CustomerRef) -> list[VaultedMethod]:
        return [self._method(m) for m in self._call("list_methods", customer.id)]

    def delete_payment_method(self, customer: CustomerRef, method: MethodRef) -> None:
        self._call("delete_method", customer.id, method.method_id)

    def set_default_payment_method(self, customer: CustomerRef, method: MethodRef) -> None:
        self._call("set_default", customer.id, method.method_id)

    # -- money -------------------------------------------------------------------------------
    @staticmethod
    def _charge(data: dict) -> ChargeResult:
        return ChargeResult(
            reference=data["id"], status=data["status"], amount=data["amount"], currency=data["currency"],
            amount_captured=data["amount_captured"], amount_refunded=data["amount_refunded"],
            failure_code=data["failure_code"], failure_message=data["failure_message"], raw=dict(data),
        )

    def charge(self, request: ChargeRequest) -> ChargeResult:
        return self._charge(self._call(
            "charge", request.customer.id, request.method.method_id if request.method else None,
            request.amount, request.currency, capture=request.capture, idempotency_key=request.idempotency_key,
        ))

    def capture(self, reference: str, amount: int | None = None, *, idempotency_key: str = "") -> ChargeResult:
        return self._charge(self._call("capture", reference, amount, idempotency_key=idempotency_key))

    def void(self, reference: str, *, idempotency_key: str = "") -> ChargeResult:
        return self._charge(self._call("void", reference, idempotency_key=idempotency_key))

    def refund(self, reference: str, amount: int | None = None, *, idempotency_key: str = "") -> ChargeResult:
        return self._charge(self._call("refund", reference, amount, idempotency_key=idempotency_key))

    # The sandbox's look-up is authoritative at once: its operations commit before they answer.
    charge_lookup_settle_seconds = 0.0

    def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        """By idempotency key (the sandbox keeps every keyed request's answer)."""
        if not request.idempotency_key:
            return None
        found = self._call("find_charge", request.idempotency_key)
        return self._charge(found) if found else None

    def fetch_charge(self, reference: str) -> ChargeResult:
        return self._charge(self._call("get_charge", reference))

    # -- webhooks (Standard Webhooks) ---------------------------------------------------------
    def _secrets(self) -> list[str]:
        secrets = self.options.get("WEBHOOK_SECRETS") or []
        return [secrets] if isinstance(secrets, str) else list(secrets)

    def sign_webhook(self, event_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """Headers for a delivery of ``body`` (what the sandbox "server" sends); first secret signs."""
        from standardwebhooks.webhooks import Webhook

        secrets = self._secrets()
        if not secrets:
            raise p.InvalidRequestError("the sandbox account has no WEBHOOK_SECRETS", processor=self.name)
        ts = int(time.time()) if timestamp is None else timestamp
        signature = Webhook(_secret_bytes(secrets[0])).sign(
            event_id, datetime.fromtimestamp(ts, tz=timezone.utc), body.decode("utf-8"))
        return {"webhook-id": event_id, "webhook-timestamp": str(ts), "webhook-signature": signature}

    def make_webhook(self, event_type: str, data: dict, *, event_id: str = "",
                     timestamp: int | None = None) -> tuple[dict[str, str], bytes]:
        """A signed delivery of a sandbox event, as the sandbox "server" would POST it."""
        import secrets

        event_id = event_id or f"evt_sbx_{secrets.token_urlsafe(12)}"
        body = json.dumps({"id": event_id, "type": event_type, "created_at": datetime.now(timezone.utc).isoformat(),
                           "account": self.account, "data": data}, separators=(",", ":")).encode()
        headers = self.sign_webhook(event_id, body, timestamp)
        headers["content-type"] = "application/json"
        return headers, body

    def deliver_webhook(self, url: str, event_type: str, data: dict, timeout: float = 10.0) -> tuple[int, str]:
        """POST a signed event to a webhook URL, as the sandbox "server" would; ``(status, body)``."""
        import requests

        headers, body = self.make_webhook(event_type, data)
        try:
            response = requests.post(url, data=body, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            raise p.ProcessorUnavailable(f"could not deliver the webhook: {type(exc).__name__}",
                                         processor=self.name) from None
        return response.status_code, response.text

    def verify_webhook(self, request: WebhookRequest) -> None:
        from standardwebhooks.webhooks import Webhook
        from standardwebhooks.webhooks import WebhookVerificationError as StdError

        secrets = self._secrets()
        if not secrets:
            raise WebhookVerificationError("no webhook secret configured")
        headers = {k: request.header(k) for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        if not all(headers.values()):
            raise WebhookVerificationError("missing signature headers")
        try:
            body = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookVerificationError("body is not UTF-8")
        reason = "no matching signature"
        for secret in secrets:
            try:
                Webhook(_secret_bytes(secret)).verify(body, headers, json_parse=False)
                return
            except StdError as exc:
                reason = str(exc).lower()
                if "timestamp" in reason or "invalid signature headers" in reason:
                    break  # the same for every secret
            except (ValueError, binascii.Error, TypeError):
                reason = "malformed signature header"
                break
        raise WebhookVerificationError(reason)

    @staticmethod
    def _payload(request: WebhookRequest) -> dict:
        try:
            payload = request.payload  # parsed once per delivery (the endpoint's safety check shares it)
        except (ValueError, UnicodeDecodeError):
            raise WebhookParseError("malformed JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("id"), str) or not payload["id"]:
            raise WebhookParseError("missing event id")
        return payload

    def webhook_event_id(self, request: WebhookRequest) -> tuple[str, str]:
        payload = self._payload(request)
        return payload["id"], str(payload.get("type", ""))

    def parse_webhook(self, request: WebhookRequest) -> list[NormalizedEvent]:
        payload = self._payload(request)
        kind = str(payload.get("type", ""))
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        normalized = SANDBOX_EVENT_TYPES.get(kind, p.EVENT_UNKNOWN)
        method_ids = data.get("payment_method_ids") or ([data["payment_method_id"]]
                                                        if data.get("payment_method_id") else [])
        occurred = None
        if isinstance(payload.get("created_at"), str):
            try:
                occurred = datetime.fromisoformat(payload["created_at"])
            except ValueError:
                occurred = None
        return [NormalizedEvent(
            type=normalized, event_id=payload["id"], processor_event_type=kind,
            customer_id=str(data.get("customer_id", "")),
            payment_method_ids=tuple(str(m) for m in method_ids if isinstance(m, str)),
            charge_reference=str(data.get("charge_id", "")), occurred_at=occurred, raw=payload,
            data={k: str(data[k]) for k in ("idempotency_key", "reference") if isinstance(data.get(k), str)},
        )]

    # -- what the sandbox "server" does on its own (tests, the vault_sandbox command) --------
    def tokenize_card(self, number: str, exp_month: int, exp_year: int, cvc: str = "123",
                      holder_name: str = "") -> str:
        return self._call("tokenize_card", number, exp_month, exp_year, cvc, holder_name)["token"]

    def tokenize_bank_account(self, routing_number: str, account_number: str, account_type: str = "checking",
                              holder_name: str = "") -> str:
        return self._call("tokenize_bank_account", routing_number, account_number, account_type,
                          holder_name)["token"]

    def network_update(self, method_id: str, **changes) -> VaultedMethod:
        return self._method(self._call("network_update", method_id, **changes))

    def complete_verification(self, method_id: str, succeed: bool) -> VaultedMethod:
        return self._method(self._call("complete_verification", method_id, succeed))
