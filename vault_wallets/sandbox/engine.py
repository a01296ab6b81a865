"""The sandbox processor's server: plain dicts in and out, like a JSON API.

``vault_wallets.processors.sandbox.SandboxProcessor`` is its only client (plus the
tokenizer view, which plays the processor's browser library).  Errors are ``EngineError``
with an HTTP-like status, a code and a message, as a real API would answer.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import ids
from . import cards
from .models import (
    SandboxCharge,
    SandboxCustomer,
    SandboxIdempotencyRecord,
    SandboxMethod,
    SandboxTemporaryToken,
)

TEMPORARY_TOKEN_TTL = timedelta(minutes=15)
MAX_AMOUNT = 99_999_999


class EngineError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str = ""):
        self.status, self.code, self.message, self.field = status, code, message, field
        super().__init__(message)


def _invalid(code: str, message: str, field: str = "") -> EngineError:
    return EngineError(400, code, message, field)


# -- tokenization (the browser library's job) -------------------------------------------


def _expiry(exp_month: Any, exp_year: Any) -> tuple[int, int]:
    try:
        month, year = int(exp_month), int(exp_year)
    except (TypeError, ValueError):
        raise _invalid("invalid_expiry", "The expiry month and year must be numbers.", "exp_month")
    if year < 100:
        year += 2000
    if not 1 <= month <= 12:
        raise _invalid("invalid_expiry", "The expiry month must be between 1 and 12.", "exp_month")
    today = date.today()
    if (year, month) < (today.year, today.month):
        raise _invalid("expired_card", "The card's expiry date is in the past.", "exp_year")
    if year > today.year + 50:
        raise _invalid("invalid_expiry", "The expiry year is too far in the future.", "exp_year")
    return month, year


def _new_temporary(account: str, **fields) -> dict:
    record = SandboxTemporaryToken.objects.create(
        account=account, expires_at=timezone.now() + TEMPORARY_TOKEN_TTL, **fields
    )
    return {"token": record.token, "expires_at": record.expires_at.isoformat()}


def tokenize_card(account: str, number: str, exp_month: Any, exp_year: Any, cvc: str,
                  holder_name: str = "") -> dict:
    number = "".join(str(number or "").split()).replace("-", "")
    if not cards.luhn_ok(number):
        raise _invalid("invalid_number", "The card number is not valid.", "number")
    if number not in cards.TEST_CARDS:
        raise _invalid("not_a_test_card", "The sandbox accepts only its documented test cards.", "number")
    cvc = str(cvc or "")
    if not (cvc.isdigit() and len(cvc) in (3, 4)):
        raise _invalid("invalid_cvc", "The security code must be 3 or 4 digits.", "cvc")
    month, year = _expiry(exp_month, exp_year)
    brand, behaviour, _ = cards.TEST_CARDS[number]
    return _new_temporary(
        account, kind="card", brand=brand, last4=number[-4:], bin=number[:6], exp_month=month,
        exp_year=year, holder_name=holder_name[:200], behaviour=behaviour,
        fingerprint=ids.keyed_hash("sandbox-card", account, number),
    )


def tokenize_bank_account(account: str, routing_number: str, account_number: str,
                          account_type: str = "checking", holder_name: str = "") -> dict:
    routing_number, account_number = str(routing_number or ""), str(account_number or "")
    if not cards.aba_routing_ok(routing_number):
        raise _invalid("invalid_routing_number", "The routing number is not valid.", "routing_number")
    if not (account_number.isdigit() and 4 <= len(account_number) <= 17):
        raise _invalid("invalid_account_number", "The account number must be 4 to 17 digits.", "account_number")
    if account_type not in ("checking", "savings"):
        raise _invalid("invalid_account_type", "The account type must be checking or savings.", "account_type")
    known = cards.TEST_BANK_ACCOUNTS.get((routing_number, account_number))
    if known is None:
        raise _invalid("not_a_test_account", "The sandbox accepts only its documented test bank account.",
                       "account_number")
    bank_name, behaviour = known
    return _new_temporary(
        account, kind="ach", last4=account_number[-4:], holder_name=holder_name[:200], bank_name=bank_name,
        account_type=account_type, behaviour=behaviour,
        fingerprint=ids.keyed_hash("sandbox-bank", account, routing_number, account_number),
    )


# -- idempotency --------------------------------------------------------------------------


def _idempotent(account: str, key: str, operation: str, params: dict, run) -> dict:
    """Run ``run()`` once per key; replay its response for the same key and parameters."""
    if not key:
        return run()
    request_hash = hashlib.sha256(json.dumps([operation, params], sort_keys=True, default=str).encode()).hexdigest()

    def replay(record: SandboxIdempotencyRecord) -> dict:
        if record.request_hash != request_hash:
            raise _invalid("idempotency_key_reused",
                           "This idempotency key was already used with different parameters.")
        return record.response

    existing = SandboxIdempotencyRecord.objects.filter(account=account, key=key).first()
    if existing:
        return replay(existing)
    try:
        with transaction.atomic():
            response = run()
            SandboxIdempotencyRecord.objects.create(account=account, key=key, operation=operation,
                                                    request_hash=request_hash, response=response)
            return response
    except IntegrityError:
        existing = SandboxIdempotencyRecord.objects.filter(account=account, key=key).first()
        if existing is None:
            raise
        return replay(existing)


# -- customers ----------------------------------------------------------------------------


def _customer_dict(c: SandboxCustomer) -> dict:
    return {
        "id": c.sid, "reference_id": c.reference_id, "name": c.name, "email": c.email, "phone": c.phone,
        "currency": c.currency, "default_method": c.default_method.sid if c.default_method is not None else "",
    }


def _get_customer(account: str, customer_id: str, lock: bool = False) -> SandboxCustomer:
    qs = SandboxCustomer.objects.filter(account=account, sid=customer_id, deleted=False)
    if lock:
        qs = qs.select_for_update(of=("self",))
    customer = qs.select_related("default_method").first()
    if customer is None:
        raise EngineError(404, "customer_not_found", "No such customer.")
    return customer


def create_customer(account: str, reference_id: str, name: str = "", email: str = "", phone: str = "",
                    currency: str = "") -> dict:
    """Create, or return the existing customer with this reference (create-or-fetch)."""
    if not reference_id:
        raise _invalid("missing_reference", "reference_id is required.", "reference_id")
    existing = SandboxCustomer.objects.filter(account=account, reference_id=reference_id).first()
    if existing is None:
        try:
            with transaction.atomic():
                existing = SandboxCustomer.objects.create(
                    account=account, reference_id=reference_id, name=name, email=email, phone=phone,
                    currency=(currency or "").upper(),
                )
        except IntegrityError:
            existing = SandboxCustomer.objects.get(account=account, reference_id=reference_id)
    if existing.deleted:
        existing.deleted = False
        existing.save(update_fields=["deleted"])
    return _customer_dict(existing)


def update_customer(account: str, customer_id: str, **fields) -> dict:
    customer = _get_customer(account, customer_id)
    currency = (fields.pop("currency", "") or "").upper()
    if currency and customer.currency and currency != customer.currency:
        raise _invalid("currency_immutable", "The customer's currency cannot be changed.", "currency")
    if currency:
        customer.currency = currency
    for key in ("name", "email", "phone"):
        if key in fields and fields[key] is not None:
            setattr(customer, key, fields[key])
    customer.save()
    return _customer_dict(customer)


def delete_customer(account: str, customer_id: str) -> None:
    customer = _get_customer(account, customer_id)
    customer.deleted = True
    customer.save(update_fields=["deleted"])
    customer.methods.filter(state="active").update(state="deleted")


# -- methods ------------------------------------------------------------------------------


def _method_dict(m: SandboxMethod, default_id: int | None) -> dict:
    return {
        "id": m.sid, "type": m.kind, "brand": m.brand, "last4": m.last4, "exp_month": m.exp_month,
        "exp_year": m.exp_year, "holder_name": m.holder_name, "bank_name": m.bank_name,
        "account_type": m.account_type, "fingerprint": m.fingerprint,
        "verification_status": m.verification_status, "state": m.state, "is_default": m.pk == default_id,
        "label": m.label,
    }


def _get_method(account: str, customer_id: str, method_id: str) -> SandboxMethod:
    method = (SandboxMethod.objects.select_related("customer")
              .filter(account=account, sid=method_id, customer__sid=customer_id).exclude(state="deleted").first())
    if method is None:
        raise EngineError(404, "payment_method_not_found", "No such payment method.")
    return method


def vault(account: str, customer_id: str, temporary_token: str, make_default: bool = False,
          label: str = "", idempotency_key: str = "") -> dict:
    def run() -> dict:
        with transaction.atomic():
            customer = _get_customer(account, customer_id, lock=True)
            temp = (SandboxTemporaryToken.objects.select_for_update()
                    .filter(account=account, token=temporary_token).first())
            if temp is None:
                raise _invalid("token_not_found", "The temporary token is unknown.", "token")
            if temp.used_at is not None:
                raise _invalid("token_used", "The temporary token was already used.", "token")
            if temp.expires_at <= timezone.now():
                raise _invalid("token_expired", "The temporary token has expired.", "token")
            temp.used_at = timezone.now()
            temp.save(update_fields=["used_at"])
            if temp.behaviour == cards.VERIFY_FAIL:
                # The token is consumed, but the card is not saved.
                raise EngineError(402, "verification_failed", "The card could not be verified.")
            verification = {
                cards.VERIFY_PENDING: "pending",
            }.get(temp.behaviour, "success")
            method = SandboxMethod.objects.create(
                account=account, customer=customer, kind=temp.kind, brand=temp.brand, last4=temp.last4,
                bin=temp.bin, exp_month=temp.exp_month, exp_year=temp.exp_year, holder_name=temp.holder_name,
                bank_name=temp.bank_name, account_type=temp.account_type, fingerprint=temp.fingerprint,
                behaviour=temp.behaviour, verification_status=verification, label=label[:100],
            )
            if make_default or customer.default_method_id is None:
                customer.default_method = method
                customer.save(update_fields=["default_method"])
            return _method_dict(method, customer.default_method_id)

    # The temporary token is consumed inside ``run``; a verification failure must still
    # consume it, so that part commits even though the vault is refused.
    try:
        return _idempotent(account, idempotency_key, "vault", {"customer": customer_id, "token": temporary_token},
                           run)
    except EngineError as exc:
        if exc.code == "verification_failed":
            SandboxTemporaryToken.objects.filter(account=account, token=temporary_token).update(
                used_at=timezone.now())
        raise


def get_method(account: str, customer_id: str, method_id: str) -> dict:
    method = _get_method(account, customer_id, method_id)
    return _method_dict(method, method.customer.default_method_id)


def list_methods(account: str, customer_id: str) -> list[dict]:
    customer = _get_customer(account, customer_id)
    return [_method_dict(m, customer.default_method_id)
            for m in customer.methods.exclude(state="deleted").order_by("created_at", "id")]


def delete_method(account: str, customer_id: str, method_id: str) -> None:
    with transaction.atomic():
        method = _get_method(account, customer_id, method_id)
        method.state = "deleted"
        method.save(update_fields=["state", "updated_at"])
        SandboxCustomer.objects.filter(pk=method.customer_id, default_method=method).update(default_method=None)


def set_default(account: str, customer_id: str, method_id: str) -> None:
    with transaction.atomic():
        method = _get_method(account, customer_id, method_id)
        if method.state != "active":
            raise _invalid("payment_method_unusable", "Only an active payment method can be the default.")
        SandboxCustomer.objects.filter(pk=method.customer_id).update(default_method=method)


def network_update(account: str, method_id: str, exp_month: int | None = None, exp_year: int | None = None,
                   last4: str | None = None, closed: bool = False) -> dict:
    """What the card network's account updater does to the sandbox's record of a card."""
    method = SandboxMethod.objects.select_related("customer").filter(account=account, sid=method_id).first()
    if method is None:
        raise EngineError(404, "payment_method_not_found", "No such payment method.")
    if exp_month is not None:
        method.exp_month = exp_month
    if exp_year is not None:
        method.exp_year = exp_year
    if last4:
        method.last4 = last4
    if closed:
        method.state = "closed"
    method.save()
    return _method_dict(method, method.customer.default_method_id)


def complete_verification(account: str, method_id: str, succeed: bool) -> dict:
    method = SandboxMethod.objects.select_related("customer").filter(account=account, sid=method_id).first()
    if method is None:
        raise EngineError(404, "payment_method_not_found", "No such payment method.")
    if method.verification_status != "pending":
        raise _invalid("verification_not_pending", "This payment method's verification is not pending.")
    method.verification_status = "success" if succeed else "failed"
    if succeed and method.behaviour == cards.VERIFY_PENDING:
        method.behaviour = cards.OK
    method.save()
    return _method_dict(method, method.customer.default_method_id)


# -- money ----------------------------------------------------------------------------------


def _charge_dict(c: SandboxCharge) -> dict:
    return {
        "id": c.sid, "status": c.status, "amount": c.amount, "currency": c.currency,
        "amount_captured": c.amount_captured, "amount_refunded": c.amount_refunded,
        "failure_code": c.failure_code, "failure_message": c.failure_message,
    }


def charge(account: str, customer_id: str, method_id: str | None, amount: int, currency: str,
           capture: bool = True, idempotency_key: str = "") -> dict:
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= MAX_AMOUNT:
        raise _invalid("invalid_amount", f"The amount must be a whole number of minor units, 1 to {MAX_AMOUNT}.",
                       "amount")
    currency = (currency or "").upper()
    if not (len(currency) == 3 and currency.isalpha()):
        raise _invalid("invalid_currency", "The currency must be a three-letter ISO code.", "currency")

    def run() -> dict:
        with transaction.atomic():
            customer = _get_customer(account, customer_id, lock=True)
            if method_id:
                method = _get_method(account, customer_id, method_id)
            elif customer.default_method is not None:
                method = customer.default_method
            else:
                raise _invalid("no_default_payment_method", "The customer has no default payment method.")
            if method.state != "active":
                raise _invalid("payment_method_unusable", "The payment method is closed or deleted.")
            if method.verification_status == "pending":
                raise _invalid("verification_pending", "The payment method's verification is still pending.")
            if customer.currency and customer.currency != currency:
                raise _invalid("currency_mismatch", f"The customer's currency is {customer.currency}.",
                               "currency")
            if not customer.currency:
                customer.currency = currency
                customer.save(update_fields=["currency"])
            record = SandboxCharge(account=account, customer=customer, method=method, amount=amount,
                                   currency=currency)
            if method.behaviour == cards.DECLINE:
                record.status, record.failure_code = "declined", "card_declined"
                record.failure_message = "The card was declined."
            elif method.behaviour == cards.PROCESSOR_ERROR:
                record.status, record.failure_code = "failed", "processing_error"
                record.failure_message = "An error occurred while processing the card."
            elif capture:
                record.status, record.amount_captured = "captured", amount
            else:
                record.status = "authorized"
            record.save()
            return _charge_dict(record)

    return _idempotent(account, idempotency_key, "charge",
                       {"customer": customer_id, "method": method_id, "amount": amount, "currency": currency,
                        "capture": capture}, run)


def _get_charge(account: str, charge_id: str) -> SandboxCharge:
    record = SandboxCharge.objects.select_for_update().filter(account=account, sid=charge_id).first()
    if record is None:
        raise EngineError(404, "charge_not_found", "No such charge.")
    return record


def capture(account: str, charge_id: str, amount: int | None = None, idempotency_key: str = "") -> dict:
    def run() -> dict:
        with transaction.atomic():
            record = _get_charge(account, charge_id)
            if record.status != "authorized":
                raise _invalid("charge_not_capturable", f"A {record.status} charge cannot be captured.")
            to_capture = record.amount if amount is None else amount
            if not 0 < to_capture <= record.amount:
                raise _invalid("invalid_amount", "The capture amount must be between 1 and the authorized amount.",
                               "amount")
            record.status, record.amount_captured = "captured", to_capture
            record.save()
            return _charge_dict(record)

    return _idempotent(account, idempotency_key, "capture", {"charge": charge_id, "amount": amount}, run)


def void(account: str, charge_id: str, idempotency_key: str = "") -> dict:
    def run() -> dict:
        with transaction.atomic():
            record = _get_charge(account, charge_id)
            if record.status != "authorized":
                raise _invalid("charge_not_voidable", f"A {record.status} charge cannot be voided.")
            record.status = "voided"
            record.save()
            return _charge_dict(record)

    return _idempotent(account, idempotency_key, "void", {"charge": charge_id}, run)


def refund(account: str, charge_id: str, amount: int | None = None, idempotency_key: str = "") -> dict:
    def run() -> dict:
        with transaction.atomic():
            record = _get_charge(account, charge_id)
            if record.status not in ("captured", "refunded"):
                raise _invalid("charge_not_refundable", f"A {record.status} charge cannot be refunded.")
            remaining = record.amount_captured - record.amount_refunded
            to_refund = remaining if amount is None else amount
            if not 0 < to_refund <= remaining:
                raise _invalid("invalid_amount", f"The refund amount must be between 1 and {remaining}.", "amount")
            record.amount_refunded += to_refund
            record.status = "refunded"
            record.save()
            return _charge_dict(record)

    return _idempotent(account, idempotency_key, "refund", {"charge": charge_id, "amount": amount}, run)


def get_charge(account: str, charge_id: str) -> dict:
    record = SandboxCharge.objects.filter(account=account, sid=charge_id).first()
    if record is None:
        raise EngineError(404, "charge_not_found", "No such charge.")
    return _charge_dict(record)


def find_charge(account: str, idempotency_key: str) -> dict | None:
    """The charge a keyed charge request made, as it is now (None: no charge with this key)."""
    record = SandboxIdempotencyRecord.objects.filter(account=account, key=idempotency_key,
                                                     operation="charge").first()
    if record is None:
        return None
    return get_charge(account, record.response["id"])
