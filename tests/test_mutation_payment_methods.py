"""Saved payment methods pinned where mutation testing found them loose (issue 13).

Two customers present whenever a query scopes by customer; the promotion order (newest by
``created_at``, then by id) checked where the two disagree and where ``created_at`` ties.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from vault_wallets import services
from vault_wallets.models import SavedPaymentMethod
from vault_wallets.services.payment_methods import promote_next_default

pytestmark = pytest.mark.django_db

VISA, MASTERCARD, AMEX = "4242424242424242", "5555555555554444", "378282246310005"


@pytest.fixture
def other(make_user, card_token):
    other = services.get_or_create_customer(make_user("other"))
    services.add_payment_method(other, card_token(VISA))
    return other


def _defaults(customer):
    return list(SavedPaymentMethod.objects.filter(customer=customer, is_default=True).values_list("pk", flat=True))


def _add(customer, card_token, number):
    method, created = services.add_payment_method(customer, card_token(number))
    assert created
    return method


def test_promote_leaves_exactly_one_default(customer, card_token, other):
    """Called with the old default still flagged, the newest chargeable method becomes the ONLY default."""
    first = _add(customer, card_token, VISA)
    second = _add(customer, card_token, MASTERCARD)
    assert _defaults(customer) == [first.pk]
    their_defaults = _defaults(other)
    with transaction.atomic():
        promoted = promote_next_default(customer)
    assert promoted.pk == second.pk
    assert _defaults(customer) == [second.pk]
    assert _defaults(other) == their_defaults


def test_promotion_follows_created_at_not_the_row_id(customer, card_token, other):
    default = _add(customer, card_token, VISA)
    newer_row = _add(customer, card_token, MASTERCARD)  # higher id ...
    older_row = _add(customer, card_token, AMEX)
    now = timezone.now()
    SavedPaymentMethod.objects.filter(pk=newer_row.pk).update(created_at=now + timedelta(days=1))  # ... newest
    SavedPaymentMethod.objects.filter(pk=older_row.pk).update(created_at=now - timedelta(days=1))
    services.remove_payment_method(customer, default)
    assert _defaults(customer) == [newer_row.pk]


def test_promotion_breaks_a_created_at_tie_by_the_newest_row(customer, card_token, other):
    default = _add(customer, card_token, VISA)
    first = _add(customer, card_token, MASTERCARD)
    last = _add(customer, card_token, AMEX)
    same = timezone.now() - timedelta(hours=1)
    SavedPaymentMethod.objects.filter(pk__in=[first.pk, last.pk]).update(created_at=same)
    services.remove_payment_method(customer, default)
    assert last.pk > first.pk
    assert _defaults(customer) == [last.pk]
