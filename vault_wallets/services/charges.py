"""Charging saved methods: the shop's checkout calls these with the order's amount.

Amounts are integer minor units decided by the shop's server, never by the shopper.  The
same idempotency key returns the same Charge and never charges twice:

* the Charge row is written ``pending`` — with its idempotency key, the shop's reference and
  the amount — and **committed before** the processor is called (call ``charge`` outside an
  atomic block for that guarantee: inside one, the row commits with the caller's transaction);
* the customer's row is locked only while that row is written, never during the processor call;
  the unique (customer, idempotency key) constraint and the pending row are what stop a second
  charge with the same key;
* the key is passed to the processor, which uses it as far as it allows (docs/processors/*);
* a lost answer (timeout, dropped connection, 5xx) leaves the row ``unknown``: it is looked up
  at once, then by the ``resolve_charge`` task, the sweeper, or the processor's webhook, and
  ``ChargeOutcomeUnknown`` (a ``ProcessorUnavailable``) is raised meanwhile;
* a decline is recorded as a ``declined`` Charge; any other refusal raises, and the pending row
  is removed (nothing was charged).

Refunds are rows too (``Refund``), written ``pending`` before the call, with a default key
derived from the charge and the refund's sequence, so a retried refund never refunds twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from .. import conf
from ..exceptions import (
    ChargeNotFound,
    ChargeOutcomeUnknown,
    CurrencyMismatch,
    IdempotencyConflict,
    InvalidAmount,
    InvalidChargeState,
    NoDefaultPaymentMethod,
    PaymentMethodNotChargeable,
)
from ..ids import is_public_id
from ..models import Charge, Customer, Refund, SavedPaymentMethod
from ..processors import base as p
from ..processors import get_processor
from ..signals import charge_updated
from .payment_methods import get_payment_method

logger = logging.getLogger("vault_wallets.charges")

MAX_AMOUNT = 99_999_999_999
#: ``failure_code`` of a charge or refund the processor never made (looked up after its answer was lost).
NOT_PROCESSED = "not_processed"
UNSETTLED = (p.CHARGE_PENDING, p.CHARGE_UNKNOWN)


def _validate_amount(amount) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise InvalidAmount()
    return amount


def _validate_currency(currency: str) -> str:
    currency = (currency or "").upper()
    if not (len(currency) == 3 and currency.isalpha()):
        raise CurrencyMismatch("The currency must be a three-letter ISO 4217 code.")
    return currency


def _request_for(record: Charge) -> p.ChargeRequest:
    method = record.payment_method
    return p.ChargeRequest(
        customer=record.customer.processor_ref, amount=record.amount, currency=record.currency,
        method=method.processor_ref if method is not None else None, capture=record.capture_requested,
        idempotency_key=record.idempotency_key, reference=record.reference, description=record.description,
    )


def _resolve_delay(attempts: int) -> timedelta:
    base = conf.get_setting("CHARGE_RESOLVE_DELAY_SECONDS")
    return timedelta(seconds=min(base * (2 ** max(attempts - 1, 0)), 3600))


def charge(customer: Customer, amount: int, currency: str, saved_payment_method=None, capture: bool = True, *,
           idempotency_key: str, reference: str = "", description: str = "") -> Charge:
    """Charge (or only authorize, with ``capture=False``) a saved method of ``customer``.

    ``saved_payment_method`` is a uid or an instance of this customer's; None charges the
    customer's default method.  A method of another customer raises ``PaymentMethodNotFound``.
    A second call with the same key returns the first call's Charge (``pending`` while that call
    is still waiting for the processor); a key whose charge the processor never made (looked up
    after a lost answer: ``failed``/``not_processed``) is charged again.
    """
    amount = _validate_amount(amount)
    currency = _validate_currency(currency)
    if not idempotency_key or len(idempotency_key) > 255:
        raise ValueError("idempotency_key is required (at most 255 characters)")
    if connection.in_atomic_block:
        logger.debug("charge %s called inside a transaction: the pending row commits with it", idempotency_key)
    earlier = None
    with transaction.atomic():
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        existing = Charge.objects.filter(customer=locked, idempotency_key=idempotency_key).first()
        if existing is not None:
            if (existing.amount, existing.currency) != (amount, currency):
                raise IdempotencyConflict()
            if existing.status == p.CHARGE_FAILED and existing.failure_code == NOT_PROCESSED:
                existing.status, existing.failure_code, existing.failure_message = p.CHARGE_PENDING, "", ""
                existing.next_check_at = None
                existing.save()
                record = existing
            else:
                earlier = existing
        else:
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
            record = Charge.objects.create(
                customer=locked, payment_method=method, amount=amount, currency=currency, status=p.CHARGE_PENDING,
                capture_requested=capture, idempotency_key=idempotency_key, reference=reference[:200],
                description=description[:200],
                next_check_at=timezone.now() + timedelta(seconds=conf.get_setting("CHARGE_PENDING_STALE_SECONDS")),
            )
    if earlier is not None:
        if earlier.status == p.CHARGE_UNKNOWN:
            earlier = resolve_charge(earlier)
            if earlier.status == p.CHARGE_UNKNOWN:
                raise ChargeOutcomeUnknown(charge=earlier, processor=earlier.customer.account)
        return earlier
    # The pending row is committed: from here on, whatever happens, the charge is accounted for.
    record.customer = locked
    try:
        result = get_processor(locked.account).charge(_request_for(record))
    except p.ProcessorUnavailable as exc:
        return _lost_answer(record, exc)
    except p.ProcessorError:
        Charge.objects.filter(pk=record.pk, status=p.CHARGE_PENDING).delete()  # a refusal: nothing charged
        raise
    except BaseException as exc:  # a bug after the request left: the money may have moved
        _mark_unknown(record, "error", f"{type(exc).__name__} while charging")
        raise
    return _settle(record, result)


def _mark_unknown(record: Charge, code: str, message: str) -> None:
    record.status, record.failure_code, record.failure_message = p.CHARGE_UNKNOWN, code[:100], message
    record.next_check_at = timezone.now() + _resolve_delay(record.resolve_attempts + 1)
    Charge.objects.filter(pk=record.pk, status__in=UNSETTLED).update(
        status=record.status, failure_code=record.failure_code, failure_message=message,
        next_check_at=record.next_check_at, updated_at=timezone.now())


def _lost_answer(record: Charge, exc: p.ProcessorUnavailable) -> Charge:
    """The processor may or may not have charged: record ``unknown``, look it up once now."""
    from ..tasks import enqueue_resolve_charge

    logger.warning("charge %s: the processor's answer was lost (%s); looking it up", record.uid, exc.code)
    _mark_unknown(record, exc.code, exc.message)
    record = resolve_charge(record)
    if record.status == p.CHARGE_UNKNOWN:
        delay = (record.next_check_at - timezone.now()).total_seconds() if record.next_check_at else 0
        transaction.on_commit(lambda: enqueue_resolve_charge(record.pk, countdown=max(delay, 1)))
        raise ChargeOutcomeUnknown(charge=record, code=exc.code, http_status=exc.http_status,
                                   processor=exc.processor)
    if record.status == p.CHARGE_FAILED and record.failure_code == NOT_PROCESSED:
        raise exc  # nothing was charged: the same key may be charged again
    return record


def _settle(record: Charge, result: p.ChargeResult, *, source: str = "answer") -> Charge:
    """Write the processor's outcome on an unsettled charge (once: a settled one is left alone)."""
    with transaction.atomic():
        current = Charge.objects.select_for_update().select_related("customer").get(pk=record.pk)
        if current.is_settled and not (current.status == p.CHARGE_FAILED and current.failure_code == NOT_PROCESSED):
            return current
        current.status = result.status
        current.amount_captured = result.amount_captured
        current.amount_refunded = result.amount_refunded
        current.processor_reference = result.reference or current.processor_reference
        current.failure_code = result.failure_code[:100]
        current.failure_message = result.failure_message
        current.next_check_at = None
        current.save()
        if result.status in (p.CHARGE_AUTHORIZED, p.CHARGE_CAPTURED):
            Customer.objects.filter(pk=current.customer_id, currency="").update(currency=current.currency)
        if source != "answer":
            logger.info("charge %s settled as %s by %s", current.uid, current.status, source)
    transaction.on_commit(lambda: charge_updated.send(sender=Charge, charge=current))
    return current


def resolve_charge(charge_obj: Charge, *, source: str = "look-up") -> Charge:
    """Settle a ``pending``/``unknown`` charge by looking it up at its processor.

    Found → its outcome is written.  Not found, once the processor's settle time has passed
    (``charge_lookup_settle_seconds``) → ``failed`` with ``failure_code="not_processed"``: nothing
    was charged, and the same key may be charged again.  Otherwise it stays and is looked up
    again later (backing off).  Returns the charge as it now is.
    """
    record = Charge.objects.select_related("customer", "payment_method").get(pk=charge_obj.pk)
    if record.is_settled:
        return record
    now = timezone.now()
    stale = timedelta(seconds=conf.get_setting("CHARGE_PENDING_STALE_SECONDS"))
    if record.status == p.CHARGE_PENDING and now - record.created_at < stale:
        return record  # a process is calling the processor right now
    processor = get_processor(record.customer.account)
    found, lookup_failed = None, False
    try:
        found = processor.find_charge(_request_for(record))
    except p.UnsupportedOperation:
        lookup_failed = True  # waits for the processor's webhook (or staff)
    except p.ProcessorError as exc:
        lookup_failed = True
        logger.info("charge %s: look-up failed (%s); trying later", record.uid, exc.code)
    if found is not None:
        return _settle(record, found, source=source)
    settled_after = timedelta(seconds=processor.charge_lookup_settle_seconds)
    attempts = record.resolve_attempts + 1
    if not lookup_failed and now - record.created_at >= settled_after:
        updated = Charge.objects.filter(pk=record.pk, status__in=UNSETTLED).update(
            status=p.CHARGE_FAILED, failure_code=NOT_PROCESSED, resolve_attempts=attempts, next_check_at=None,
            failure_message="The processor has no such charge: nothing was charged.", updated_at=now)
        record.refresh_from_db()
        if updated:
            transaction.on_commit(lambda: charge_updated.send(sender=Charge, charge=record))
        return record
    Charge.objects.filter(pk=record.pk, status__in=UNSETTLED).update(
        status=p.CHARGE_UNKNOWN, resolve_attempts=attempts, next_check_at=now + _resolve_delay(attempts),
        updated_at=now)
    record.refresh_from_db()
    return record


def due_charges(now=None):
    """Unsettled charges whose next look-up is due (``unknown`` ones, and ``pending`` ones whose
    caller died mid-call)."""
    now = now or timezone.now()
    return Charge.objects.filter(status__in=UNSETTLED).filter(Q(next_check_at__lte=now) |
                                                               Q(next_check_at__isnull=True))


def link_charge_event(account: str, item: p.NormalizedEvent) -> Charge | None:
    """The local charge a processor's charge webhook names, settling it if it was unsettled.

    Found by the processor's reference; else, for a charge whose answer was lost (no reference
    recorded yet), by the idempotency key or shop reference the event carries, or by looking up
    the account's unsettled charges at the processor.
    """
    record = None
    if item.charge_reference:
        record = Charge.objects.filter(customer__account=account, processor_reference=item.charge_reference).first()
    unsettled = Charge.objects.filter(customer__account=account, status__in=UNSETTLED)
    if record is None:
        keys = [str(item.data.get(k)) for k in ("idempotency_key", "reference") if item.data.get(k)]
        if keys:
            record = unsettled.filter(Q(idempotency_key__in=keys) | Q(reference__in=keys)).first()
    if record is None and item.charge_reference:
        for candidate in unsettled.order_by("created_at")[:50]:
            candidate = resolve_charge(candidate, source="webhook")
            if candidate.processor_reference == item.charge_reference:
                return candidate
    if record is not None and not record.is_settled:
        processor = get_processor(account)
        result = None
        if item.charge_reference:
            try:
                result = processor.fetch_charge(item.charge_reference)
            except p.ProcessorError:
                result = None
        if result is None:
            resolved = resolve_charge(record, source="webhook")
            return resolved
        record = _settle(record, result, source="webhook")
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


def _transition(charge_obj: Charge, allowed: tuple[str, ...], call, target: str) -> Charge:
    with transaction.atomic():
        record = Charge.objects.select_for_update().get(pk=charge_obj.pk)
        if record.status not in allowed:
            raise InvalidChargeState(f"A {record.status} charge cannot be changed this way.")
        processor = get_processor(record.customer.account)
        try:
            result = call(processor, record)
        except p.ProcessorUnavailable as exc:
            # The answer was lost: the processor's own state says whether it happened.
            result = _fetch_quietly(processor, record.processor_reference)
            if result is None or result.status != target:
                raise ChargeOutcomeUnknown(charge=record, code=exc.code, processor=exc.processor) from None
        _apply(record, result)
    transaction.on_commit(lambda: charge_updated.send(sender=Charge, charge=record))
    return record


def _fetch_quietly(processor: p.BaseProcessor, reference: str) -> p.ChargeResult | None:
    try:
        return processor.fetch_charge(reference)
    except p.ProcessorError:
        return None


def capture(charge_obj: Charge, amount: int | None = None, *, idempotency_key: str | None = None) -> Charge:
    """Capture an authorized charge (all of it, or ``amount`` of it).  The default key is
    ``capture-<charge uid>``: a retried capture is the same capture."""
    if amount is not None:
        _validate_amount(amount)
        if amount > charge_obj.amount:
            raise InvalidAmount("The capture amount exceeds the authorized amount.")
    key = idempotency_key or f"capture-{charge_obj.uid}"
    return _transition(charge_obj, (p.CHARGE_AUTHORIZED,),
                       lambda proc, rec: proc.capture(rec.processor_reference, amount, idempotency_key=key),
                       p.CHARGE_CAPTURED)


def void(charge_obj: Charge, *, idempotency_key: str | None = None) -> Charge:
    """Void an authorized, uncaptured charge (default key ``void-<charge uid>``)."""
    key = idempotency_key or f"void-{charge_obj.uid}"
    return _transition(charge_obj, (p.CHARGE_AUTHORIZED,),
                       lambda proc, rec: proc.void(rec.processor_reference, idempotency_key=key), p.CHARGE_VOIDED)


# -- refunds ------------------------------------------------------------------------------------


def refund(charge_obj: Charge, amount: int | None = None, *, idempotency_key: str | None = None) -> Charge:
    """Refund a captured charge, fully or by ``amount`` (may be repeated up to the captured total).

    The refund is written as a ``Refund`` row (``pending``) before the processor call; its default
    idempotency key is ``refund-<charge uid>-<sequence>``.  While a refund of the charge is still
    unsettled (its answer was lost), calling ``refund`` again settles that refund — looking it up
    at the processor — instead of starting another, and raises ``ChargeOutcomeUnknown`` if it still
    cannot tell.  With an explicit ``idempotency_key`` already used, the earlier refund is the answer.
    """
    if amount is not None:
        _validate_amount(amount)
    with transaction.atomic():
        record = Charge.objects.select_for_update().select_related("customer").get(pk=charge_obj.pk)
        if record.status not in (p.CHARGE_CAPTURED, p.CHARGE_REFUNDED):
            raise InvalidChargeState(f"A {record.status} charge cannot be changed this way.")
        row = None
        if idempotency_key:
            row = record.refunds.filter(idempotency_key=idempotency_key).first()
            if row is not None and amount is not None and row.amount != amount:
                raise IdempotencyConflict("This idempotency key was already used for a different refund.")
        if row is None:
            row = record.refunds.filter(status__in=[Refund.PENDING, Refund.UNKNOWN]).order_by("sequence").first()
            if row is not None and amount is not None and amount != row.amount:
                raise InvalidChargeState(f"A refund of {row.amount} is still waiting for its outcome.")
        if row is None:
            remaining = record.refundable_amount
            to_refund = remaining if amount is None else amount
            if not 0 < to_refund <= remaining:
                raise InvalidAmount(f"At most {remaining} can be refunded.")
            sequence = (record.refunds.aggregate(n=Max("sequence"))["n"] or 0) + 1
            row = Refund.objects.create(
                charge=record, sequence=sequence, amount=to_refund,
                idempotency_key=idempotency_key or f"refund-{record.uid}-{sequence}",
                refunded_before=record.amount_refunded,
                next_check_at=timezone.now() + timedelta(seconds=conf.get_setting("CHARGE_PENDING_STALE_SECONDS")),
            )
            full = amount is None
            fresh = True
        else:
            fresh = False
    if not fresh:
        if row.status in (Refund.PENDING, Refund.UNKNOWN):
            row = resolve_refund(row)
            if row.status in (Refund.PENDING, Refund.UNKNOWN):
                raise ChargeOutcomeUnknown(refund=row, charge=record, processor=record.customer.account)
        record.refresh_from_db()
        return record
    processor = get_processor(record.customer.account)
    try:
        result = processor.refund(record.processor_reference, None if full else row.amount,
                                  idempotency_key=row.idempotency_key)
    except p.ProcessorUnavailable as exc:
        return _lost_refund(record, row, exc)
    except p.ProcessorError:
        Refund.objects.filter(pk=row.pk, status=Refund.PENDING).delete()  # refused: nothing refunded
        raise
    except BaseException:
        Refund.objects.filter(pk=row.pk, status=Refund.PENDING).update(status=Refund.UNKNOWN)
        raise
    return _settle_refund(row, result)


def _settle_refund(row: Refund, result: p.ChargeResult | None, *, failed: bool = False) -> Charge:
    with transaction.atomic():
        current = Refund.objects.select_for_update().get(pk=row.pk)
        record = Charge.objects.select_for_update().get(pk=current.charge_id)
        if current.status in (Refund.PENDING, Refund.UNKNOWN):
            current.status = Refund.FAILED if failed else Refund.SUCCEEDED
            current.next_check_at = None
            if failed:
                current.failure_code = NOT_PROCESSED
                current.failure_message = "The processor has no such refund: nothing was refunded."
            current.save()
            if not failed:
                refunded = max(result.amount_refunded if result else 0, record.amount_refunded + current.amount)
                record.amount_refunded = min(refunded, record.amount_captured or refunded)
                record.status = p.CHARGE_REFUNDED
                record.save()
                transaction.on_commit(lambda: charge_updated.send(sender=Charge, charge=record))
    return record


def _lost_refund(record: Charge, row: Refund, exc: p.ProcessorUnavailable) -> Charge:
    logger.warning("refund %s: the processor's answer was lost (%s); looking it up", row.uid, exc.code)
    Refund.objects.filter(pk=row.pk, status=Refund.PENDING).update(
        status=Refund.UNKNOWN, failure_code=exc.code[:100], failure_message=exc.message)
    row = resolve_refund(row)
    if row.status == Refund.UNKNOWN:
        raise ChargeOutcomeUnknown(refund=row, charge=record, code=exc.code, processor=exc.processor)
    if row.status == Refund.FAILED:
        raise exc
    record.refresh_from_db()
    return record


def resolve_refund(refund_obj: Refund) -> Refund:
    """Settle an unsettled refund by fetching its charge at the processor: the processor's refunded
    total covering this refund means it happened."""
    row = Refund.objects.select_related("charge__customer").get(pk=refund_obj.pk)
    if row.status not in (Refund.PENDING, Refund.UNKNOWN):
        return row
    now = timezone.now()
    stale = timedelta(seconds=conf.get_setting("CHARGE_PENDING_STALE_SECONDS"))
    if row.status == Refund.PENDING and now - row.created_at < stale:
        return row
    processor = get_processor(row.charge.customer.account)
    try:
        state = processor.fetch_charge(row.charge.processor_reference)
    except p.ProcessorError as exc:
        logger.info("refund %s: look-up failed (%s); trying later", row.uid, exc.code)
        state = None
    attempts = row.resolve_attempts + 1
    if state is not None and state.amount_refunded >= row.refunded_before + row.amount:
        _settle_refund(row, state)
    elif state is not None and now - row.created_at >= timedelta(seconds=processor.charge_lookup_settle_seconds):
        _settle_refund(row, None, failed=True)
    else:
        Refund.objects.filter(pk=row.pk, status__in=[Refund.PENDING, Refund.UNKNOWN]).update(
            status=Refund.UNKNOWN, resolve_attempts=attempts, next_check_at=now + _resolve_delay(attempts))
    row.refresh_from_db()
    return row


def due_refunds(now=None):
    now = now or timezone.now()
    return Refund.objects.filter(status__in=[Refund.PENDING, Refund.UNKNOWN]).filter(
        Q(next_check_at__lte=now) | Q(next_check_at__isnull=True))


def sweep_money(now=None, limit: int = 200) -> int:
    """Look up every due unsettled charge and refund; return how many were looked at."""
    count = 0
    for record in due_charges(now).order_by("created_at")[:limit]:
        resolve_charge(record, source="sweeper")
        count += 1
    for row in due_refunds(now).order_by("created_at")[:limit]:
        resolve_refund(row)
        count += 1
    return count
