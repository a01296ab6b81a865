"""Erasure ("right to be forgotten"): the customer and every saved method go at the processor,
local personal data is removed, charges stay as anonymized financial records, and an
``ErasureRequest`` is the audit record (who, when, what, the processor's answer per object).

Order of work, so an outage never leaves an erasure half-done and silent:

1. At once, locally: name, email, phone, metadata, addresses, card-holder names, labels and
   the method change history are removed; the customer's tokens are revoked.
2. At the processor: each saved method, then the customer, is deleted.  "Not found" counts as
   deleted.  Any other error leaves the request ``pending`` with the error, and it is retried
   with backoff (a Celery task, and the ``sweep_erasures`` periodic task as a safety net).
3. When the processor has nothing left: the processor references are wiped and the customer
   row becomes an anonymous holder of its charges (``erased_at`` set, reference
   ``erased-cus_…``, no user) — or is deleted outright when it has no charges.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .. import conf
from ..models import Address, Charge, Customer, ErasureRequest, PaymentMethodChange, SavedPaymentMethod
from ..processors import base as p
from ..processors import get_processor
from ..signals import customer_erased

logger = logging.getLogger("vault_wallets.services")

RETRY_BASE_SECONDS = 60
RETRY_MAX_SECONDS = 3600


def _now_iso() -> str:
    return timezone.now().isoformat(timespec="seconds")


def _record(erasure: ErasureRequest, kind: str, uid: str, outcome: str, detail: str = "") -> None:
    entry = {"object": kind, "id": uid, "outcome": outcome, "at": _now_iso()}
    if detail:
        entry["detail"] = detail
    erasure.outcomes = [*erasure.outcomes, entry]


def erase_customer(customer: Customer, *, requested_by=None, reason: str = "") -> ErasureRequest:
    """Erase ``customer`` (see the module docs); returns the audit record.

    Its ``status`` is ``completed`` when done, or ``pending`` (with ``last_error``) when the
    processor could not be reached; a pending erasure is retried automatically.  Calling it
    again for a customer with a pending erasure runs that erasure again instead of starting
    another one.
    """
    existing = ErasureRequest.objects.filter(customer=customer, status=ErasureRequest.PENDING).first()
    if existing is not None:
        return run_erasure(existing)
    name = ""
    if requested_by is not None and getattr(requested_by, "is_authenticated", False):
        name = requested_by.get_username()
    else:
        requested_by = None
    with transaction.atomic():
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        erasure = ErasureRequest.objects.create(
            customer=locked, customer_uid=locked.uid, account=locked.account, requested_by=requested_by,
            requested_by_name=name[:150], reason=(reason or "")[:200],
        )
        _scrub_personal_data(locked, erasure)
        erasure.save(update_fields=["outcomes"])
    return run_erasure(erasure)


def _scrub_personal_data(customer: Customer, erasure: ErasureRequest) -> None:
    """Step 1: what the processor calls do not need goes at once (inside the caller's transaction)."""
    addresses = list(Address.objects.filter(customer=customer).values_list("uid", flat=True))
    Address.objects.filter(customer=customer).delete()
    for uid in addresses:
        _record(erasure, "address", uid, "deleted locally")
    methods = SavedPaymentMethod.objects.filter(customer=customer)
    PaymentMethodChange.objects.filter(payment_method__in=methods).delete()
    methods.update(holder_name="", label="", processor_data={})
    Customer.objects.filter(pk=customer.pk).update(
        name="", email="", phone="", metadata={}, token_version=F("token_version") + 1)


def run_erasure(erasure: ErasureRequest) -> ErasureRequest:
    """Steps 2 and 3 for a pending erasure; safe to call again (each finished object is skipped)."""
    with transaction.atomic():
        erasure = ErasureRequest.objects.select_for_update().get(pk=erasure.pk)
        if erasure.status != ErasureRequest.PENDING:
            return erasure
        erasure.attempts += 1
        customer = erasure.customer
        error = _erase_at_processor(erasure, customer) if customer is not None else ""
        if error:
            delay = min(RETRY_BASE_SECONDS * 2 ** min(erasure.attempts - 1, 10), RETRY_MAX_SECONDS)
            erasure.last_error = error
            erasure.next_attempt_at = timezone.now() + timedelta(seconds=delay)
            erasure.save()
            logger.warning("erasure %s of %s is pending (attempt %d): %s; retrying in %ds",
                           erasure.uid, erasure.customer_uid, erasure.attempts, error, delay)
        else:
            if customer is not None:
                _finish_locally(erasure, customer)
            erasure.status = ErasureRequest.COMPLETED
            erasure.completed_at = timezone.now()
            erasure.next_attempt_at = None
            erasure.last_error = ""
            erasure.save()
            done = erasure
            transaction.on_commit(lambda: customer_erased.send(sender=ErasureRequest, erasure=done))
    if erasure.status == ErasureRequest.PENDING:
        from ..tasks import enqueue_erasure  # the task edge; imported late (no import circle)

        transaction.on_commit(lambda: enqueue_erasure(erasure.pk, countdown=delay))
    return erasure


def _erase_at_processor(erasure: ErasureRequest, customer: Customer) -> str:
    """Delete every remaining method, then the customer, at the processor.  Returns "" or the error."""
    if not conf.is_configured_account(customer.account):
        return f"account {customer.account!r} is not configured"
    processor = get_processor(customer.account)
    for method in SavedPaymentMethod.objects.filter(customer=customer).exclude(status=p.METHOD_REMOVED).order_by("pk"):
        if not method.processor_token:
            continue
        try:
            processor.delete_payment_method(customer.processor_ref, method.processor_ref)
            outcome = "deleted at the processor"
        except p.NotFoundError:
            outcome = "already gone at the processor"
        except p.ProcessorError as exc:
            _record(erasure, "payment_method", method.uid, "processor error", exc.message)
            return f"payment method {method.uid}: {exc.message}"
        SavedPaymentMethod.objects.filter(pk=method.pk).update(
            status=p.METHOD_REMOVED, is_default=False, processor_token="", processor_method_id="")
        _record(erasure, "payment_method", method.uid, outcome)
    if customer.processor_customer_id:
        try:
            processor.delete_customer(customer.processor_ref)
            outcome = "deleted at the processor"
        except p.NotFoundError:
            outcome = "already gone at the processor"
        except p.ProcessorError as exc:
            _record(erasure, "customer", customer.uid, "processor error", exc.message)
            return f"customer {customer.uid}: {exc.message}"
        Customer.objects.filter(pk=customer.pk).update(processor_customer_id="", processor_customer_secret="")
        _record(erasure, "customer", customer.uid, outcome)
    return ""


def _finish_locally(erasure: ErasureRequest, customer: Customer) -> None:
    """Step 3: nothing left at the processor; anonymize (charges kept) or delete the row."""
    charges = Charge.objects.filter(customer=customer).count()
    erasure.charges_kept = charges
    methods = SavedPaymentMethod.objects.filter(customer=customer)
    if charges:
        # Brand and last four digits stay on the methods the charges point at: the financial
        # record needs them (disputes, accounting); nothing else identifies the person.
        methods.update(status=p.METHOD_REMOVED, is_default=False, processor_token="", processor_method_id="",
                       processor_lookup="", fingerprint="", holder_name="", label="", processor_data={},
                       exp_month=None, exp_year=None, bank_name="")
        Customer.objects.filter(pk=customer.pk).update(
            reference_id=f"erased-{customer.uid}", user=None, name="", email="", phone="", metadata={},
            processor_customer_id="", processor_customer_secret="", erased_at=timezone.now())
        _record(erasure, "customer", customer.uid, f"anonymized locally; {charges} charge(s) kept")
    else:
        count = methods.count()
        customer.delete()
        erasure.customer = None
        _record(erasure, "customer", customer.uid, f"deleted locally with {count} saved method(s)")


def retry_due_erasures(limit: int = 100) -> list[int]:
    """The sweeper: run pending erasures whose retry time has come (or was lost)."""
    due = list(ErasureRequest.objects.filter(status=ErasureRequest.PENDING)
               .filter(next_attempt_at__lte=timezone.now())
               .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    for pk in due:
        try:
            run_erasure(ErasureRequest(pk=pk))
        except Exception:  # one broken erasure must not stop the sweep
            logger.exception("erasure %s could not be retried", pk)
    return due
