"""Charging saved methods: the shop's checkout calls these with the order's amount.

Amounts are integer minor units decided by the shop's server, never by the shopper.  The
same idempotency key returns the same Charge and never charges twice: the customer's row is
locked while the processor is called, the key is passed to the processor, and a unique
constraint backs it up.  A decline is recorded as a ``declined`` Charge; a processor that is
unavailable raises ``ProcessorUnavailable`` and nothing is written.
"""

from __future__ import annotations

import uuid

from django.db import transaction

from ..exceptions import (
    ChargeNotFound,
    CurrencyMismatch,
    IdempotencyConflict,
    InvalidAmount,
    InvalidChargeState,
    NoDefaultPaymentMethod,
    PaymentMethodNotChargeable,
)
from ..ids import is_public_id
from ..models import Charge, Customer, SavedPaymentMethod
from ..processors import base as p
from ..processors import get_processor
from ..signals import charge_updated
from .payment_methods import get_payment_method

MAX_AMOUNT = 99_999_999_999


def _validate_amount(amount) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise InvalidAmount()
    return amount


def _validate_currency(currency: str) -> str:
    currency = (currency or "").upper()
    if not (len(currency) == 3 and currency.isalpha()):
        raise CurrencyMismatch("The currency must be a three-letter ISO 4217 code.")
    return currency


def charge(customer: Customer, amount: int, currency: str, saved_payment_method=None, capture: bool = True, *,
           idempotency_key: str, reference: str = "", description: str = "") -> Charge:
    """Charge (or only authorize, with ``capture=False``) a saved method of ``customer``.

    ``saved_payment_method`` is a uid or an instance of this customer's; None charges the
    customer's default method.  A method of another customer raises
    ``PaymentMethodNotFound``.
    """
    amount = _validate_amount(amount)
    currency = _validate_currency(currency)
    if not idempotency_key or len(idempotency_key) > 255:
        raise ValueError("idempotency_key is required (at most 255 characters)")
    with transaction.atomic():
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        existing = Charge.objects.filter(customer=locked, idempotency_key=idempotency_key).first()
        if existing is not None:
            if (existing.amount, existing.currency) != (amount, currency):
                raise IdempotencyConflict()
            return existing
        if saved_payment_method is None:
            method = SavedPaymentMethod.objects.visible().filter(customer=locked, is_default=True).first()
            if method is None:
                raise NoDefaultPaymentMethod()
        else:
            method = get_payment_method(locked, saved_payment_method)
        if not method.is_chargeable or method.verification_status == p.VERIFICATION_PENDING:
            raise PaymentMethodNotChargeable()
        if locked.currency and locked.currency != currency:
            raise CurrencyMismatch(f"The customer's currency is {locked.currency}.")
        result = get_processor(locked.account).charge(p.ChargeRequest(
            customer=locked.processor_ref, amount=amount, currency=currency, method=method.processor_ref,
            capture=capture, idempotency_key=idempotency_key, reference=reference, description=description,
        ))
        record = Charge.objects.create(
            customer=locked, payment_method=method, amount=amount, currency=currency, status=result.status,
            amount_captured=result.amount_captured, amount_refunded=result.amount_refunded,
            processor_reference=result.reference, idempotency_key=idempotency_key, reference=reference[:200],
            failure_code=result.failure_code[:100], failure_message=result.failure_message,
        )
        if not locked.currency and result.status in (p.CHARGE_AUTHORIZED, p.CHARGE_CAPTURED):
            locked.currency = currency
            locked.save(update_fields=["currency", "updated_at"])
    transaction.on_commit(lambda: charge_updated.send(sender=Charge, charge=record))
    return record


def get_charge(customer: Customer, uid: str) -> Charge:
    if not is_public_id(uid):
        raise ChargeNotFound()
    found = Charge.objects.filter(customer=customer, uid=uid).first()
    if found is None:
        raise ChargeNotFound()
    return found


def _apply(record: Charge, result: p.ChargeResult) -> None:
    record.status = result.status
    record.amount_captured = result.amount_captured or record.amount_captured
    record.amount_refunded = result.amount_refunded or record.amount_refunded
    record.failure_code = result.failure_code[:100]
    record.failure_message = result.failure_message
    record.save()


def _transition(charge_obj: Charge, allowed: tuple[str, ...], call) -> Charge:
    with transaction.atomic():
        record = Charge.objects.select_for_update().get(pk=charge_obj.pk)
        if record.status not in allowed:
            raise InvalidChargeState(f"A {record.status} charge cannot be changed this way.")
        result = call(get_processor(record.customer.account), record)
        _apply(record, result)
    transaction.on_commit(lambda: charge_updated.send(sender=Charge, charge=record))
    return record


def capture(charge_obj: Charge, amount: int | None = None, *, idempotency_key: str | None = None) -> Charge:
    """Capture an authorized charge (all of it, or ``amount`` of it)."""
    if amount is not None:
        _validate_amount(amount)
        if amount > charge_obj.amount:
            raise InvalidAmount("The capture amount exceeds the authorized amount.")
    key = idempotency_key or f"capture-{uuid.uuid4().hex}"
    return _transition(charge_obj, (p.CHARGE_AUTHORIZED,),
                       lambda proc, rec: proc.capture(rec.processor_reference, amount, idempotency_key=key))


def void(charge_obj: Charge, *, idempotency_key: str | None = None) -> Charge:
    """Void an authorized, uncaptured charge."""
    key = idempotency_key or f"void-{uuid.uuid4().hex}"
    return _transition(charge_obj, (p.CHARGE_AUTHORIZED,),
                       lambda proc, rec: proc.void(rec.processor_reference, idempotency_key=key))


def refund(charge_obj: Charge, amount: int | None = None, *, idempotency_key: str | None = None) -> Charge:
    """Refund a captured charge, fully or by ``amount`` (may be repeated up to the captured total)."""
    if amount is not None:
        _validate_amount(amount)
    key = idempotency_key or f"refund-{uuid.uuid4().hex}"

    def call(proc, rec: Charge):
        if amount is not None and amount > rec.refundable_amount:
            raise InvalidAmount(f"At most {rec.refundable_amount} can be refunded.")
        return proc.refund(rec.processor_reference, amount, idempotency_key=key)

    return _transition(charge_obj, (p.CHARGE_CAPTURED, p.CHARGE_REFUNDED), call)
