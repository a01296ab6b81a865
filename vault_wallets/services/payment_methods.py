"""Saved payment methods: vault, default, remove, refresh.

Every change goes to the processor first; the local rows change only after it succeeded,
inside a transaction holding the customer's row lock, so concurrent requests for one
customer are serialized and there is exactly one default afterwards.
"""

from __future__ import annotations

import logging

from django.db import transaction

from .. import ids
from ..exceptions import PaymentMethodNotChargeable, PaymentMethodNotFound
from ..ids import is_public_id
from ..models import Customer, SavedPaymentMethod
from ..prepared import INT_STAND_IN, STR_STAND_IN, PreparedQuery
from ..processors import base as p
from ..processors import get_processor
from ..signals import payment_method_added, payment_method_removed
from ..validators import clean_text
from .customers import ensure_processor_customer

logger = logging.getLogger("vault_wallets.services")


#: The columns the shopper list shows (``PaymentMethodSerializer.represent_rows`` reads them in this order).
LIST_COLUMNS = ("uid", "method_type", "brand", "bank_name", "last4", "exp_month", "exp_year", "label",
                "is_default", "verification_status", "status", "created_at")

# The shopper list runs on every wallet page view: prepared once per connection (see vault_wallets.prepared).
_LIST_FOR_USER = PreparedQuery(
    SavedPaymentMethod, lambda user_id, account: SavedPaymentMethod.objects.visible()
    .filter(customer__user_id=user_id, customer__account=account).values_list(*LIST_COLUMNS),
    {"user_id": INT_STAND_IN, "account": STR_STAND_IN})
_LIST_FOR_CUSTOMER = PreparedQuery(
    SavedPaymentMethod, lambda customer_id: SavedPaymentMethod.objects.visible().filter(customer_id=customer_id)
    .values_list(*LIST_COLUMNS),
    {"customer_id": INT_STAND_IN})


def visible_method_rows(*, customer: Customer | None = None, user=None, account: str | None = None) -> list[tuple]:
    """The shopper's visible methods as ``LIST_COLUMNS`` tuples, default first, then newest first.

    One query: by ``customer``, or for the session's ``user`` joined to their customer in
    ``account`` (no row: the user has no customer there, or none visible).  Nothing decrypted.
    """
    if customer is not None:
        return _LIST_FOR_CUSTOMER.rows(customer_id=customer.pk)
    return _LIST_FOR_USER.rows(user_id=user.pk, account=account)


def _locked_customer(customer: Customer) -> Customer:
    return Customer.objects.select_for_update().get(pk=customer.pk)


def get_payment_method(customer: Customer, method) -> SavedPaymentMethod:
    """``method`` (a uid or an instance) if it belongs to ``customer`` and is not removed."""
    uid = method.uid if isinstance(method, SavedPaymentMethod) else method
    if not is_public_id(uid):
        raise PaymentMethodNotFound()
    found = SavedPaymentMethod.objects.visible().filter(customer=customer, uid=uid).first()
    if found is None:
        raise PaymentMethodNotFound()
    return found


def _fingerprint(account: str, vaulted: p.VaultedMethod) -> str:
    if not vaulted.fingerprint:
        return ""
    return ids.keyed_hash("fingerprint", account, vaulted.method_type, vaulted.fingerprint)


def _display_fields(vaulted: p.VaultedMethod) -> dict:
    return {
        "brand": vaulted.brand[:32], "last4": vaulted.last4[-4:], "exp_month": vaulted.exp_month,
        "exp_year": vaulted.exp_year, "holder_name": vaulted.holder_name[:200], "bank_name": vaulted.bank_name[:200],
        "account_type": vaulted.account_type[:16], "verification_status": vaulted.verification_status,
        "processor_data": dict(vaulted.raw),
    }


def _set_default_locally(customer: Customer, method: SavedPaymentMethod | None) -> None:
    SavedPaymentMethod.objects.filter(customer=customer, is_default=True).exclude(
        pk=method.pk if method else None).update(is_default=False)
    if method is not None and not method.is_default:
        SavedPaymentMethod.objects.filter(pk=method.pk).update(is_default=True)
        method.is_default = True


def add_payment_method(customer: Customer, temporary_token: str, label: str | None = None,
                       make_default: bool = False, *, method_type: str = p.METHOD_CARD,
                       holder_name: str = "") -> tuple[SavedPaymentMethod, bool]:
    """Vault a temporary token; return ``(method, created)``.

    The same card already saved (same keyed fingerprint) returns the existing method with
    ``created=False``; the processor's new duplicate is deleted again.  The customer's first
    method becomes the default.  Raises ``TemporaryTokenError`` (expired, used or unknown
    token), ``VerificationFailedError`` or another ``ProcessorError``; nothing is written
    locally then.
    """
    label = clean_text(label or "")
    customer = ensure_processor_customer(customer)
    processor = get_processor(customer.account)
    has_default = SavedPaymentMethod.objects.chargeable().filter(customer=customer, is_default=True).exists()
    becomes_default = make_default or not has_default
    default_address = customer.addresses.filter(is_default=True).first()  # billing data for the processor
    vaulted = processor.vault_payment_method(p.VaultRequest(
        customer=customer.processor_ref, temporary_token=temporary_token, method_type=method_type,
        label=label or "", make_default=becomes_default, holder_name=holder_name,
        billing_address=default_address.as_data() if default_address else None,
        email=customer.email, customer_name=customer.name,
    ))
    fingerprint = _fingerprint(customer.account, vaulted)
    with transaction.atomic():
        _locked_customer(customer)
        duplicate = None
        if fingerprint:
            duplicate = (SavedPaymentMethod.objects.filter(customer=customer, fingerprint=fingerprint)
                         .exclude(status__in=[p.METHOD_REMOVED, p.METHOD_CLOSED]).first())
        if duplicate is None:
            method = SavedPaymentMethod.objects.create(
                customer=customer, method_type=vaulted.method_type, processor_token=vaulted.token,
                processor_method_id=vaulted.method_id if vaulted.method_id != vaulted.token else "",
                processor_lookup=SavedPaymentMethod.lookup_for(customer.account, vaulted.method_id),
                fingerprint=fingerprint, label=(label or "")[:100], status=vaulted.status,
                **_display_fields(vaulted),
            )
            if becomes_default and method.is_chargeable:
                _set_default_locally(customer, method)
            created = True
        else:
            method, created = duplicate, False
            if make_default and method.is_chargeable:
                _set_default_locally(customer, method)
    if not created:
        _discard_duplicate(customer, processor, vaulted, method)
    else:
        transaction.on_commit(lambda: payment_method_added.send(sender=SavedPaymentMethod, payment_method=method))
    return method, created


def _discard_duplicate(customer: Customer, processor, vaulted: p.VaultedMethod, kept: SavedPaymentMethod) -> None:
    same_id = bool(vaulted.method_id) and vaulted.method_id == kept.processor_ref.method_id
    if vaulted.token == kept.processor_token or same_id:
        return  # the processor matched the card to the kept method (PaySimple's match-or-create): keep it
    try:
        processor.delete_payment_method(customer.processor_ref, vaulted.ref)
        if kept.is_default:
            processor.set_default_payment_method(customer.processor_ref, kept.processor_ref)
    except p.ProcessorError as exc:  # the shopper's request succeeded; the orphan is harmless
        logger.warning("could not delete a duplicate vaulted method for %s at %s: %s",
                       customer.uid, processor.name, exc.message)


def set_default_payment_method(customer: Customer, method) -> SavedPaymentMethod:
    """Make ``method`` (uid or instance) the customer's only default, at the processor and locally."""
    with transaction.atomic():
        _locked_customer(customer)
        method = get_payment_method(customer, method)
        if not method.is_chargeable:
            raise PaymentMethodNotChargeable()
        if not method.is_default:
            get_processor(customer.account).set_default_payment_method(customer.processor_ref, method.processor_ref)
            _set_default_locally(customer, method)
    return method


def update_payment_method(customer: Customer, method, *, label: str) -> SavedPaymentMethod:
    method = get_payment_method(customer, method)
    method.label = clean_text(label or "")[:100]
    method.save(update_fields=["label", "updated_at"])
    return method


def remove_payment_method(customer: Customer, method) -> None:
    """Delete at the processor, then mark removed locally; promote the newest active method."""
    method = get_payment_method(customer, method)
    processor = get_processor(customer.account)
    try:
        processor.delete_payment_method(customer.processor_ref, method.processor_ref)
    except p.NotFoundError:
        pass  # already gone at the processor: finish the job locally
    promoted = None
    with transaction.atomic():
        _locked_customer(customer)
        was_default = SavedPaymentMethod.objects.filter(pk=method.pk, is_default=True).exists()
        SavedPaymentMethod.objects.filter(pk=method.pk).update(
            status=p.METHOD_REMOVED, is_default=False, processor_token="", processor_method_id="")
        if was_default:
            promoted = promote_next_default(customer)
    if promoted is not None:
        _tell_processor_default(customer, promoted)
    transaction.on_commit(lambda: payment_method_removed.send(sender=SavedPaymentMethod, payment_method=method))


def promote_next_default(customer: Customer) -> SavedPaymentMethod | None:
    """Inside a transaction holding the customer lock: make the newest chargeable method default."""
    candidate = (SavedPaymentMethod.objects.chargeable().filter(customer=customer)
                 .order_by("-created_at", "-id").first())
    _set_default_locally(customer, candidate)
    return candidate


def _tell_processor_default(customer: Customer, method: SavedPaymentMethod) -> None:
    try:
        get_processor(customer.account).set_default_payment_method(customer.processor_ref, method.processor_ref)
    except p.ProcessorError as exc:
        logger.warning("could not set the promoted default for %s at the processor: %s", customer.uid, exc.message)
