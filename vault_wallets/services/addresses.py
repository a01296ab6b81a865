"""Labelled addresses with one default per customer (mirrored at processors that store them)."""

from __future__ import annotations

import logging

from django.db import transaction

from ..exceptions import AddressNotFound
from ..ids import is_public_id
from ..models import Address, Customer
from ..processors import base as p
from ..processors import get_processor
from .customers import ensure_processor_customer

logger = logging.getLogger("vault_wallets.services")

ADDRESS_FIELDS = ("label", "name", "line1", "line2", "city", "state", "postal_code", "country")


def get_address(customer: Customer, address) -> Address:
    uid = address.uid if isinstance(address, Address) else address
    if not is_public_id(uid):
        raise AddressNotFound()
    found = Address.objects.filter(customer=customer, uid=uid).first()
    if found is None:
        raise AddressNotFound()
    return found


def _set_default_locally(customer: Customer, address: Address | None) -> None:
    Address.objects.filter(customer=customer, is_default=True).exclude(
        pk=address.pk if address else None).update(is_default=False)
    if address is not None:
        Address.objects.filter(pk=address.pk).update(is_default=True)
        address.is_default = True


def _sync_to_processor(customer: Customer, address: Address) -> None:
    processor = get_processor(customer.account)
    if not processor.supports_addresses:
        return
    customer = ensure_processor_customer(customer)
    saved = processor.save_address(customer.processor_ref, address.as_data())
    if saved.processor_id and saved.processor_id != address.processor_address_id:
        Address.objects.filter(pk=address.pk).update(processor_address_id=saved.processor_id)
        address.processor_address_id = saved.processor_id


def create_address(customer: Customer, *, make_default: bool = False, **fields) -> Address:
    """Add an address; the first one (or ``make_default``) becomes the default."""
    unknown = set(fields) - set(ADDRESS_FIELDS)
    if unknown:
        raise TypeError(f"unknown address fields: {', '.join(sorted(unknown))}")
    address = Address(customer=customer, **fields)
    address.country = (address.country or "").upper()
    address.full_clean(exclude=["customer", "is_default"])
    with transaction.atomic():
        Customer.objects.select_for_update().get(pk=customer.pk)
        becomes_default = make_default or not Address.objects.filter(customer=customer, is_default=True).exists()
        address.save()
        if becomes_default:
            _set_default_locally(customer, address)
        _sync_to_processor(customer, address)
    return address


def update_address(customer: Customer, address, *, make_default: bool = False, **fields) -> Address:
    address = get_address(customer, address)
    unknown = set(fields) - set(ADDRESS_FIELDS)
    if unknown:
        raise TypeError(f"unknown address fields: {', '.join(sorted(unknown))}")
    for key, value in fields.items():
        setattr(address, key, value)
    address.country = (address.country or "").upper()
    address.full_clean(exclude=["customer", "is_default"])
    with transaction.atomic():
        Customer.objects.select_for_update().get(pk=customer.pk)
        address.save()
        if make_default:
            _set_default_locally(customer, address)
        _sync_to_processor(customer, address)
    return address


def delete_address(customer: Customer, address) -> None:
    address = get_address(customer, address)
    processor = get_processor(customer.account)
    if processor.supports_addresses and address.processor_address_id:
        try:
            processor.delete_address(customer.processor_ref, address.as_data())
        except p.NotFoundError:
            pass
    with transaction.atomic():
        Customer.objects.select_for_update().get(pk=customer.pk)
        was_default = address.is_default
        address.delete()
        if was_default:
            _set_default_locally(customer, Address.objects.filter(customer=customer).order_by("-created_at", "-id")
                                 .first())
