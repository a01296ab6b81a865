""""Apply, then drop the answer" for every processor, through the services and the real module
talking to its fake over loopback HTTP (``FakeServer.faults.drop_next`` / ``late_next``).

The processor makes the payment and the answer never arrives.  Where the processor lets us look
a charge up (docs/processors/*.md, "Lost answers"), the charge is found at once; CyberSource's is
found only when its idempotency key was the reference sent (Transaction Search by
``clientReferenceInformation.code``): with a separate order reference it stays ``unknown``; in
every case the shop's retry with the same key does not pay a second time.
"""

from __future__ import annotations

import pytest

from tests.test_processor_services import add, vault  # noqa: F401  (the per-processor fixture)
from vault_wallets import services
from vault_wallets.exceptions import ChargeOutcomeUnknown
from vault_wallets.models import Charge
from vault_wallets.testing.fakes.caselle import caselle_fake  # noqa: F401  (fixtures)
from vault_wallets.testing.fakes.cybersource import cybersource_fake  # noqa: F401
from vault_wallets.testing.fakes.exact import exact_fake  # noqa: F401
from vault_wallets.testing.fakes.paysimple import paysimple_fake  # noqa: F401
from vault_wallets.testing.fakes.processout import processout_fake  # noqa: F401

pytestmark = pytest.mark.django_db

# The request that moves the money, per fake (a substring of its path).
MONEY_PATH = {"paysimple": "/v4/payment", "processout": "/capture", "cybersource": "/pts/v2/payments",
              "exact": "/payments", "caselle": "/capture"}


def payments_made(vault) -> int:  # noqa: F811
    """How many payments the processor made (its own state, not our records)."""
    if vault.name == "sandbox":
        from vault_wallets.sandbox.models import SandboxCharge

        return SandboxCharge.objects.filter(status__in=["captured", "authorized"]).count()
    fake = vault.harness.fake
    if vault.name == "paysimple":
        return sum(1 for p in fake.payments.values() if (p.get("Amount") or 0) > 0 and p.get("Status") != "Failed")
    if vault.name == "processout":
        return sum(1 for t in fake.transactions.values() if t.get("captured") or t.get("authorized"))
    if vault.name == "cybersource":
        return sum(1 for t in fake.transactions.values()
                   if t["kind"] in ("sale", "authorization") and not t.get("declined"))
    if vault.name == "exact":
        return sum(1 for p in fake.payments.values() if p["type"] in ("payment", "authorization") and p["approved"])
    return sum(1 for p in fake.payments.values() if p["status"] in ("completed", "captured", "refunded"))


def drop_the_answer(vault, late: float | None = None):  # noqa: F811
    if vault.name == "sandbox":
        if late is None:
            vault.processor.faults.drop_next(only="charge")
        else:
            vault.processor.faults.late_next(late, only="charge")
        return
    faults = vault.harness.fake.faults
    if late is None:
        faults.drop_next(path=MONEY_PATH[vault.name])
    else:
        faults.late_next(late, path=MONEY_PATH[vault.name])


@pytest.mark.parametrize("mode", ["drop", "late"])
def test_lost_charge_answer_never_charges_twice(api, vault, user, mode):  # noqa: F811
    assert add(api, vault).status_code == 201
    customer = services.get_or_create_customer(user)
    before = payments_made(vault)  # CyberSource vaults with a zero-amount authorization
    drop_the_answer(vault, None if mode == "drop" else 1.5)  # 1.5 s: past the tests' 0.5 s read timeout
    try:
        record = services.charge(customer, 2599, "USD", idempotency_key="order-lost", reference="ord_lost")
    except ChargeOutcomeUnknown as exc:
        record = exc.charge
    assert payments_made(vault) - before == 1
    faults = vault.processor.faults if vault.name == "sandbox" else vault.harness.fake.faults
    assert not faults._after  # the fault fired: the payment was made and its answer lost
    if vault.name == "cybersource":  # the order reference is not unique per attempt: no look-up by it
        assert record.status == "unknown"
        with pytest.raises(ChargeOutcomeUnknown):
            services.charge(customer, 2599, "USD", idempotency_key="order-lost", reference="ord_lost")
    else:
        assert record.status == "captured" and record.processor_reference
        again = services.charge(customer, 2599, "USD", idempotency_key="order-lost", reference="ord_lost")
        assert again.pk == record.pk and again.status == "captured"
    assert payments_made(vault) - before == 1 and Charge.objects.count() == 1


@pytest.mark.parametrize("vault", ["cybersource"], indirect=True)
def test_cybersource_lost_charge_is_found_by_its_key(api, vault, user):  # noqa: F811
    """Without a separate order reference the key is the code CyberSource stores, and Transaction
    Search finds the payment: the charge is settled and the shop's retry is the same charge."""
    assert add(api, vault).status_code == 201
    customer = services.get_or_create_customer(user)
    before = payments_made(vault)
    drop_the_answer(vault)
    try:
        record = services.charge(customer, 2599, "USD", idempotency_key="order-lost-2")
    except ChargeOutcomeUnknown as exc:
        record = exc.charge
    assert record.status == "captured" and record.processor_reference
    again = services.charge(customer, 2599, "USD", idempotency_key="order-lost-2")
    assert again.pk == record.pk and payments_made(vault) - before == 1 and Charge.objects.count() == 1

