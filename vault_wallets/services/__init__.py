"""The services a shop's own code calls.  Each is atomic, and local rows change only after
the processor call succeeded — except money: a charge or refund is written ``pending`` before
the call, so a lost answer is never lost from the books (see docs/reliability.md).

::

    from vault_wallets import services

    customer = services.get_or_create_customer(request.user)
    charge = services.charge(customer, order.total_cents, "USD", idempotency_key=f"order-{order.pk}")
"""

from .addresses import create_address, delete_address, get_address, update_address
from .charges import capture, charge, get_charge, refund, void
from .customers import (
    create_customer,
    ensure_processor_customer,
    get_or_create_customer,
    revoke_customer_tokens,
    update_customer,
)
from .erasure import erase_customer
from .payment_methods import (
    add_payment_method,
    get_payment_method,
    remove_payment_method,
    set_default_payment_method,
    update_payment_method,
)

__all__ = [
    "get_or_create_customer", "ensure_processor_customer", "update_customer", "revoke_customer_tokens",
    "add_payment_method", "get_payment_method", "set_default_payment_method", "update_payment_method",
    "remove_payment_method", "charge", "get_charge", "capture", "void", "refund",
    "create_address", "update_address", "delete_address", "get_address",
    "create_customer", "erase_customer",
]
