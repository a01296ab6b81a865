"""Errors raised by ``vault_wallets.services`` (processor errors come from ``processors.base``)."""

from __future__ import annotations

from .processors.base import (  # re-exported: the shop's checkout catches these too
    AuthenticationError,
    DeclinedError,
    InvalidRequestError,
    NotFoundError,
    ProcessorError,
    ProcessorUnavailable,
    TemporaryTokenError,
    UnsupportedOperation,
    VerificationFailedError,
)

__all__ = [
    "VaultError", "PaymentMethodNotFound", "AddressNotFound", "ChargeNotFound", "PaymentMethodNotChargeable",
    "NoDefaultPaymentMethod", "InvalidAmount", "CurrencyMismatch", "IdempotencyConflict", "InvalidChargeState",
    "ProcessorError", "InvalidRequestError", "NotFoundError", "TemporaryTokenError", "VerificationFailedError",
    "DeclinedError", "AuthenticationError", "ProcessorUnavailable", "UnsupportedOperation", "ChargeOutcomeUnknown",
]


class VaultError(Exception):
    """Base of the service errors.  ``code`` is stable and machine-readable."""

    code = "vault_error"
    status = 400

    def __init__(self, message: str = ""):
        self.message = message or (self.__class__.__doc__ or type(self).__name__).strip().splitlines()[0]
        super().__init__(self.message)


class PaymentMethodNotFound(VaultError):
    """No such payment method for this customer."""

    code, status = "payment_method_not_found", 404


class AddressNotFound(VaultError):
    """No such address for this customer."""

    code, status = "address_not_found", 404


class ChargeNotFound(VaultError):
    """No such charge for this customer."""

    code, status = "charge_not_found", 404


class PaymentMethodNotChargeable(VaultError):
    """This payment method cannot be charged (closed, removed, expired or not verified)."""

    code, status = "payment_method_not_chargeable", 409


class NoDefaultPaymentMethod(VaultError):
    """The customer has no default payment method."""

    code, status = "no_default_payment_method", 409


class InvalidAmount(VaultError):
    """The amount must be a positive whole number of minor units."""

    code = "invalid_amount"


class CurrencyMismatch(VaultError):
    """The currency differs from the customer's currency, which cannot change."""

    code = "currency_mismatch"


class IdempotencyConflict(VaultError):
    """This idempotency key was already used for a different charge."""

    code, status = "idempotency_conflict", 409


class InvalidChargeState(VaultError):
    """The charge is not in a state that allows this operation."""

    code, status = "invalid_charge_state", 409


class ChargeOutcomeUnknown(ProcessorUnavailable):
    """The processor's answer was lost (timeout, dropped connection, 5xx): the money may have moved.

    ``charge`` (or ``refund``) is the recorded row, status ``unknown``; a task looks it up at the
    processor and settles it (see docs/reliability.md).  Retrying with the same idempotency key
    never charges twice: it answers from that row.  Still a ``ProcessorUnavailable`` (HTTP 503 in the
    API), so a checkout that only knows that error stays safe.
    """

    default_code = "outcome_unknown"

    def __init__(self, message: str = "", *, charge=None, refund=None, **kwargs):
        self.charge = charge
        self.refund = refund
        super().__init__(message or "The processor's answer was lost; the outcome is being confirmed.", **kwargs)
