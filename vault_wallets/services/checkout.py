"""The checkout's server step: what the processor's browser library needs before tokenizing.

The customer is always the caller's own (the view resolves it from ``request.user``); the
processor customer is created on first need so that customer-bound browser sessions
(PaySimple's customer token, ProcessOut's pending customer token) name the right one.
"""

from __future__ import annotations

from .. import ids
from ..models import Customer
from ..processors import base as p
from ..processors import get_processor
from .customers import customer_data, ensure_processor_customer


def start_checkout(customer: Customer, origin: str) -> p.CheckoutSession:
    """Ask the customer's processor for a browser session (``processor.prepare_checkout``).

    ``origin`` is the checkout page's origin as the server knows it (never a value the
    browser sent).  Raises ``ProcessorError`` subclasses (``UnsupportedOperation`` for a
    processor without a browser checkout).
    """
    customer = ensure_processor_customer(customer)
    processor = get_processor(customer.account)
    return processor.prepare_checkout(p.CheckoutRequest(
        customer=customer.processor_ref, origin=origin, customer_data=customer_data(customer),
        reference=ids.new_uid("chk")[:20],
    ))
