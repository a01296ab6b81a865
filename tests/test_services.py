"""The services a shop's checkout calls: charges, idempotency, declines, refunds, currency."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from vault_wallets import services
from vault_wallets.exceptions import (
    CurrencyMismatch,
    IdempotencyConflict,
    InvalidAmount,
    InvalidChargeState,
    NoDefaultPaymentMethod,
    PaymentMethodNotChargeable,
    PaymentMethodNotFound,
    ProcessorUnavailable,
)
from vault_wallets.models import Charge, Customer, SavedPaymentMethod
from vault_wallets.sandbox.models import SandboxCharge

pytestmark = pytest.mark.django_db


@pytest.fixture
def method(customer, card_token):
    saved, created = services.add_payment_method(customer, card_token())
    assert created
    return saved


def test_charge_default_method(customer, method):
    charge = services.charge(customer, 1999, "usd", idempotency_key="order-1", reference="order-1")
    assert charge.uid.startswith("pay_") and charge.status == "captured"
    assert (charge.amount, charge.currency, charge.amount_captured) == (1999, "USD", 1999)
    assert charge.payment_method == method and charge.processor_reference.startswith("sbxch_")
    customer.refresh_from_db()
    assert customer.currency == "USD"


def test_same_idempotency_key_never_charges_twice(customer, method):
    first = services.charge(customer, 500, "USD", idempotency_key="order-7")
    again = services.charge(customer, 500, "USD", idempotency_key="order-7")
    assert again.pk == first.pk
    assert Charge.objects.count() == 1 and SandboxCharge.objects.count() == 1
    with pytest.raises(IdempotencyConflict):
        services.charge(customer, 501, "USD", idempotency_key="order-7")


def test_declined_charge_is_recorded(customer, card_token):
    declining, _ = services.add_payment_method(customer, card_token("4000000000000002"))
    charge = services.charge(customer, 1000, "USD", declining, idempotency_key="d-1")
    assert charge.status == "declined" and charge.failure_code == "card_declined"
    assert Charge.objects.get().status == "declined"


def test_processor_error_is_recorded_as_failed(customer, card_token):
    failing, _ = services.add_payment_method(customer, card_token("4000000000001216"))
    charge = services.charge(customer, 1000, "USD", failing.uid, idempotency_key="f-1")
    assert charge.status == "failed" and charge.failure_code == "processing_error"


def test_processor_unavailable_records_not_processed_then_same_key_charges(customer, method, sandbox):
    sandbox.faults.fail_next(1, kind="timeout")
    with pytest.raises(ProcessorUnavailable):
        services.charge(customer, 1000, "USD", idempotency_key="u-1")
    # Written before the call; the sandbox's look-up says it never charged.
    record = Charge.objects.get()
    assert (record.status, record.failure_code, record.amount_captured) == ("failed", "not_processed", 0)
    again = services.charge(customer, 1000, "USD", idempotency_key="u-1")
    assert again.pk == record.pk and again.status == "captured"
    assert Charge.objects.count() == 1


def test_another_customers_method_raises(customer, make_user, card_token):
    other = services.get_or_create_customer(make_user("mallory"))
    theirs, _ = services.add_payment_method(other, card_token("5555555555554444"))
    with pytest.raises(PaymentMethodNotFound):
        services.charge(customer, 100, "USD", theirs, idempotency_key="x")
    with pytest.raises(PaymentMethodNotFound):
        services.charge(customer, 100, "USD", theirs.uid, idempotency_key="y")
    assert Charge.objects.count() == 0


def test_no_default_raises(customer):
    with pytest.raises(NoDefaultPaymentMethod):
        services.charge(customer, 100, "USD", idempotency_key="x")


@pytest.mark.parametrize("amount", [0, -5, 1.5, "100", True, None])
def test_invalid_amount(customer, method, amount):
    with pytest.raises(InvalidAmount):
        services.charge(customer, amount, "USD", idempotency_key="x")


def test_idempotency_key_is_required(customer, method):
    with pytest.raises(ValueError):
        services.charge(customer, 100, "USD", idempotency_key="")


def test_currency_is_fixed_after_the_first_charge(customer, method):
    services.charge(customer, 100, "USD", idempotency_key="c-1")
    with pytest.raises(CurrencyMismatch):
        services.charge(customer, 100, "EUR", idempotency_key="c-2")
    customer.refresh_from_db()
    customer.currency = "EUR"
    with pytest.raises(ValidationError):
        customer.save()
    with pytest.raises(ValidationError):
        services.update_customer(customer, currency="GBP")


def test_authorize_capture_refund(customer, method):
    auth = services.charge(customer, 2500, "USD", capture=False, idempotency_key="a-1")
    assert auth.status == "authorized" and auth.amount_captured == 0
    with pytest.raises(InvalidChargeState):
        services.refund(auth)
    captured = services.capture(auth)
    assert captured.status == "captured" and captured.amount_captured == 2500
    partial = services.refund(captured, 1000)
    assert partial.status == "refunded" and partial.amount_refunded == 1000
    with pytest.raises(InvalidAmount):
        services.refund(partial, 2000)
    rest = services.refund(partial)
    assert rest.amount_refunded == 2500
    with pytest.raises(InvalidChargeState):
        services.void(rest)


def test_void(customer, method):
    auth = services.charge(customer, 700, "USD", capture=False, idempotency_key="v-1")
    assert services.void(auth).status == "voided"
    with pytest.raises(InvalidChargeState):
        services.capture(auth)


def test_closed_or_pending_methods_cannot_be_charged(customer, method, card_token):
    pending, _ = services.add_payment_method(customer, card_token("4000000000000101"))
    with pytest.raises(PaymentMethodNotChargeable):
        services.charge(customer, 100, "USD", pending, idempotency_key="p-1")
    SavedPaymentMethod.objects.filter(pk=method.pk).update(status="closed")
    with pytest.raises(PaymentMethodNotChargeable):
        services.charge(customer, 100, "USD", method, idempotency_key="p-2")


def test_tokens_are_encrypted_at_rest(customer, method):
    table = SavedPaymentMethod._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT processor_token FROM {table} WHERE id = %s", [method.pk])  # noqa: S608
        raw = bytes(cursor.fetchone()[0])
    assert method.processor_token.startswith("sbxpm_")
    assert method.processor_token.encode() not in raw
    assert raw.startswith(b"gAAAAA")  # a Fernet token
    assert SavedPaymentMethod.objects.get(pk=method.pk).processor_token == method.processor_token


def test_repr_and_str_never_show_the_token(method):
    for text in (repr(method), str(method), repr(method.processor_ref)):
        assert method.processor_token not in text


def test_get_or_create_customer_is_stable(user):
    first = services.get_or_create_customer(user)
    assert services.get_or_create_customer(user).pk == first.pk
    assert first.reference_id == str(user.pk) and first.account == "default"
    assert services.get_or_create_customer(user, "eu").pk != first.pk


def test_get_or_create_links_an_imported_customer(user):
    imported = Customer.objects.create(account="default", reference_id=str(user.pk), email="old@example.com")
    assert services.get_or_create_customer(user).pk == imported.pk
    assert Customer.objects.get(pk=imported.pk).user == user


def test_remove_and_set_default_services(customer, method, card_token):
    other, _ = services.add_payment_method(customer, card_token("5555555555554444"))
    services.set_default_payment_method(customer, other.uid)
    assert list(SavedPaymentMethod.objects.filter(is_default=True)) == [other]
    services.remove_payment_method(customer, other)
    method.refresh_from_db()
    assert method.is_default
    with pytest.raises(PaymentMethodNotFound):
        services.set_default_payment_method(customer, other.uid)
