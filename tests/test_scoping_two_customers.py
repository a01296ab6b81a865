"""Every query that scopes by customer, exercised with two customers present.

The target customer's rows are created FIRST and the other customer's rows LAST (newest), so a
query that lost its ``customer=`` filter picks the other customer's row — and these tests fail.
They pin the mutation-testing survivors listed in issue 13 for ``services/charges.py`` and
``services/payment_methods.py``.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from vault_wallets import services
from vault_wallets.exceptions import (
    ChargeNotFound,
    InvalidAmount,
    NoDefaultPaymentMethod,
    PaymentMethodNotChargeable,
    PaymentMethodNotFound,
)
from vault_wallets.models import Charge, SavedPaymentMethod
from vault_wallets.processors import base as p
from vault_wallets.services.payment_methods import promote_next_default

pytestmark = pytest.mark.django_db


@pytest.fixture
def mine(customer, card_token):
    method, _ = services.add_payment_method(customer, card_token())
    return method


@pytest.fixture
def other(make_user):
    return services.get_or_create_customer(make_user("other"))


@pytest.fixture
def theirs(other, card_token, mine):  # ``mine`` first: theirs is the newer row
    method, _ = services.add_payment_method(other, card_token("5555555555554444"))
    return method


def _defaults(customer):
    return list(SavedPaymentMethod.objects.filter(customer=customer, is_default=True).values_list("uid", flat=True))


def test_charging_the_default_uses_this_customers_default(customer, mine, other, theirs):
    charge = services.charge(customer, 700, "USD", idempotency_key="order-1")
    assert charge.payment_method_id == mine.pk and charge.customer_id == customer.pk


def test_no_default_even_when_another_customer_has_one(customer, other, theirs):
    SavedPaymentMethod.objects.filter(customer=customer).delete()
    with pytest.raises(NoDefaultPaymentMethod):
        services.charge(customer, 700, "USD", idempotency_key="order-1")
    assert not Charge.objects.exists()


def test_get_charge_is_scoped(customer, mine, other, theirs):
    my_charge = services.charge(customer, 700, "USD", idempotency_key="mine")
    their_charge = services.charge(other, 900, "USD", idempotency_key="theirs")
    assert services.get_charge(customer, my_charge.uid).pk == my_charge.pk
    with pytest.raises(ChargeNotFound):
        services.get_charge(customer, their_charge.uid)
    with pytest.raises(ChargeNotFound):
        services.get_charge(other, my_charge.uid)


def test_idempotency_lookup_never_returns_another_customers_charge(customer, mine, other, theirs):
    """Keys are unique per customer locally; processors scope them per account, so the sandbox
    refuses the reuse — either way the other customer never receives this customer's charge."""
    my_charge = services.charge(customer, 700, "USD", idempotency_key="order-42")
    try:
        their_charge = services.charge(other, 700, "USD", idempotency_key="order-42")
    except p.ProcessorError:
        their_charge = None
    if their_charge is not None:
        assert their_charge.pk != my_charge.pk and their_charge.customer_id == other.pk
    assert list(Charge.objects.filter(customer=customer).values_list("pk", flat=True)) == [my_charge.pk]


def test_the_same_card_saved_by_two_customers_is_two_methods(customer, mine, other, card_token):
    their_copy, created = services.add_payment_method(other, card_token())  # 4242 too: same fingerprint
    assert created and their_copy.customer_id == other.pk and their_copy.pk != mine.pk
    assert mine.fingerprint and their_copy.fingerprint == mine.fingerprint
    assert _defaults(customer) == [mine.uid] and _defaults(other) == [their_copy.uid]


def test_setting_a_default_leaves_other_customers_alone(customer, mine, other, theirs, card_token):
    second, _ = services.add_payment_method(customer, card_token("5555555555554444"))
    services.set_default_payment_method(customer, second)
    assert _defaults(customer) == [second.uid]
    assert _defaults(other) == [theirs.uid]


def test_removing_the_default_promotes_this_customers_next(customer, mine, other, card_token):
    older, _ = services.add_payment_method(customer, card_token("5555555555554444"))
    services.set_default_payment_method(customer, older)
    theirs, _ = services.add_payment_method(other, card_token("4242424242424242"))  # newest of all
    services.remove_payment_method(customer, older)
    assert _defaults(customer) == [mine.uid]
    assert _defaults(other) == [theirs.uid]


def test_promote_next_default_only_looks_at_this_customer(customer, mine, other, theirs):
    SavedPaymentMethod.objects.filter(pk=mine.pk).update(is_default=False)
    with transaction.atomic():
        promoted = promote_next_default(customer)
    assert promoted is not None and promoted.pk == mine.pk
    assert _defaults(other) == [theirs.uid]


def test_another_customers_method_is_not_found(customer, mine, other, theirs):
    for call in (lambda: services.get_payment_method(customer, theirs.uid),
                 lambda: services.set_default_payment_method(customer, theirs.uid),
                 lambda: services.update_payment_method(customer, theirs.uid, label="x"),
                 lambda: services.remove_payment_method(customer, theirs.uid),
                 lambda: services.charge(customer, 100, "USD", theirs.uid, idempotency_key="x")):
        with pytest.raises(PaymentMethodNotFound):
            call()
    theirs.refresh_from_db()
    assert theirs.status == p.METHOD_ACTIVE and theirs.is_default and theirs.label == ""


@pytest.mark.parametrize("status", [p.METHOD_EXPIRED, p.METHOD_CLOSED])
def test_expired_or_closed_cannot_become_default_or_be_charged(customer, mine, card_token, status):
    second, _ = services.add_payment_method(customer, card_token("5555555555554444"))
    SavedPaymentMethod.objects.filter(pk=second.pk).update(status=status)
    with pytest.raises(PaymentMethodNotChargeable):
        services.set_default_payment_method(customer, second)
    with pytest.raises(PaymentMethodNotChargeable):
        services.charge(customer, 100, "USD", second, idempotency_key=f"{status}-1")
    assert _defaults(customer) == [mine.uid]


def test_capture_amount_boundaries(customer, mine):
    auth = services.charge(customer, 1000, "USD", capture=False, idempotency_key="a-1")
    with pytest.raises(InvalidAmount):
        services.capture(auth, 1001)
    captured = services.capture(auth, 1000)
    assert captured.status == p.CHARGE_CAPTURED and captured.amount_captured == 1000


def test_refund_amount_boundaries(customer, mine):
    charge = services.charge(customer, 1000, "USD", idempotency_key="r-1")
    services.refund(charge, 400)
    charge.refresh_from_db()
    with pytest.raises(InvalidAmount):
        services.refund(charge, 601)
    charge.refresh_from_db()
    assert charge.amount_refunded == 400
    done = services.refund(charge, 600)
    assert done.amount_refunded == 1000 and done.status == p.CHARGE_REFUNDED
    with pytest.raises(InvalidAmount):
        services.refund(done, 1)
