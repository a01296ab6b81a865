"""Customers: resolution from the logged-in user, the processor-side record, token revocation."""

from __future__ import annotations

from django.db import IntegrityError, router, transaction
from django.db.models import F

from .. import conf
from ..models import Customer
from ..prepared import INT_STAND_IN, STR_STAND_IN, PreparedInstances, PreparedQuery
from ..processors import get_processor
from ..processors.base import CustomerData

# Resolving the session's customer is on most shopper requests: prepared once per connection.
# At most one row: UniqueConstraint(account, user).
_CUSTOMER_OF_USER = PreparedInstances(
    Customer, lambda account, user_id: Customer.objects.filter(account=account, user_id=user_id).order_by("pk")[:1],
    {"account": STR_STAND_IN, "user_id": INT_STAND_IN})


#: What a customer token carries (``tokens.issue``): the rest of the row is not read for it.
TOKEN_FIELDS = ("id", "uid", "account", "token_version")
_TOKEN_CUSTOMER_OF_USER = PreparedQuery(
    Customer, lambda account, user_id: Customer.objects.filter(account=account, user_id=user_id)
    .order_by("pk").values_list(*TOKEN_FIELDS)[:1],
    {"account": STR_STAND_IN, "user_id": INT_STAND_IN})


def customer_for_token(user, account: str | None = None) -> Customer:
    """``get_or_create_customer`` for issuing a customer token: one query, ``TOKEN_FIELDS`` loaded.

    The other columns are deferred (reading one costs a query), so nothing is decrypted or
    decoded for a token; a first visit creates the customer as ``get_or_create_customer`` does.
    """
    account = account or conf.default_account()
    rows = _TOKEN_CUSTOMER_OF_USER.rows(account=account, user_id=user.pk)
    if rows:
        return Customer.from_db(router.db_for_read(Customer), TOKEN_FIELDS, rows[0])
    return get_or_create_customer(user, account)


def get_or_create_customer(user, account: str | None = None) -> Customer:
    """The vault customer of ``user`` for ``account`` (the default account when None).

    Race-safe: two first requests for one user create one customer (the second insert hits
    the unique constraint and fetches the row the first one made).
    """
    account = account or conf.default_account()
    found = _CUSTOMER_OF_USER.instances(account=account, user_id=user.pk)
    if found:
        return found[0]
    reference_id = str(user.pk)
    try:
        with transaction.atomic():
            return Customer.objects.create(
                account=account, user=user, reference_id=reference_id,
                name=(user.get_full_name() if hasattr(user, "get_full_name") else "") or user.get_username(),
                email=getattr(user, "email", "") or "",
            )
    except IntegrityError:
        pass
    customer = Customer.objects.filter(account=account, user=user).first()
    if customer is not None:
        return customer
    # The shop's reference is taken by a customer without a user (e.g. imported): link it.
    linked = Customer.objects.filter(account=account, reference_id=reference_id, user__isnull=True).update(user=user)
    if linked:
        return Customer.objects.get(account=account, user=user)
    raise IntegrityError(f"customer reference {reference_id!r} belongs to another user in account {account!r}")


def customer_data(customer: Customer) -> CustomerData:
    default_address = customer.addresses.filter(is_default=True).first()
    return CustomerData(
        reference_id=customer.reference_id, name=customer.name, email=customer.email, phone=customer.phone,
        currency=customer.currency, metadata=dict(customer.metadata or {}),
        address=default_address.as_data() if default_address else None,
    )


def ensure_processor_customer(customer: Customer) -> Customer:
    """Create the customer at its processor on first need.

    Processors create idempotently by ``reference_id``, so concurrent first calls agree on
    one processor customer; the local row is only written once.
    """
    if customer.processor_customer_id:
        return customer
    created = get_processor(customer.account).create_customer(customer_data(customer))
    Customer.objects.filter(pk=customer.pk, processor_customer_id="").update(
        processor_customer_id=created.id, processor_customer_secret=created.secret,
    )
    customer.refresh_from_db(fields=["processor_customer_id", "processor_customer_secret"])
    return customer


def update_customer(customer: Customer, **fields) -> Customer:
    """Change name, email, phone, currency or metadata, at the processor first, then locally."""
    allowed = {"name", "email", "phone", "currency", "metadata"}
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"cannot update {', '.join(sorted(unknown))}")
    for key, value in fields.items():
        setattr(customer, key, value)
    customer.full_clean(exclude=["user"])
    if customer.processor_customer_id:
        get_processor(customer.account).update_customer(customer.processor_ref, customer_data(customer))
    customer.save()
    return customer


def revoke_customer_tokens(customer: Customer) -> None:
    """Invalidate every customer token issued so far for ``customer``."""
    Customer.objects.filter(pk=customer.pk).update(token_version=F("token_version") + 1)
    customer.refresh_from_db(fields=["token_version"])


def create_customer(account: str, reference_id: str, *, name: str = "", email: str = "", phone: str = "",
                    user=None) -> Customer:
    """A customer for ``account`` made by staff or an import (not from a logged-in shopper): the
    processor customer first (processors create idempotently by ``reference_id``), then the row."""
    from django.core.exceptions import ValidationError

    if not conf.is_configured_account(account):
        raise ValidationError({"account": f"{account!r} is not a configured account."})
    customer = Customer(account=account, reference_id=reference_id, name=name, email=email, phone=phone, user=user)
    customer.full_clean()
    created = get_processor(account).create_customer(CustomerData(
        reference_id=reference_id, name=name, email=email, phone=phone, currency="", metadata={}, address=None))
    customer.processor_customer_id, customer.processor_customer_secret = created.id, created.secret
    customer.save()
    return customer
