"""Bugs the attack suite's scenarios ran into, each pinned by a test."""

from __future__ import annotations

import pytest

from tests.test_processor_services import add, vault  # noqa: F401  (the per-processor fixture)
from vault_wallets import services
from vault_wallets.models import Customer

pytestmark = pytest.mark.django_db


def test_saving_the_same_card_twice_keeps_it_at_the_processor(vault, api, user):  # noqa: F811
    """PaySimple matches a card it already holds (match-or-create) and answers with the existing
    account: discarding "the processor's duplicate" deleted the shopper's saved card there."""
    first = add(api, vault).json()
    again = add(api, vault)
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    customer = Customer.objects.get(user=user)
    charge = services.charge(customer, 1500, "USD", first["id"], idempotency_key="twice-1")
    assert charge.status == "captured", (charge.status, charge.failure_code, charge.failure_message)
