"""Races that only a real database with row locks can show (PostgreSQL in CI)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections

from vault_wallets import services
from vault_wallets.models import Charge, Customer, SavedPaymentMethod
from vault_wallets.sandbox.models import SandboxCharge, SandboxCustomer

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (set DATABASE_URL)"),
]

THREADS = 8


def race(func, count=THREADS):
    """Run ``func(i)`` in ``count`` threads released together; return results (re-raising errors)."""
    barrier = threading.Barrier(count)

    def run(i):
        try:
            barrier.wait()
            return func(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(count) as pool:
        return [f.result() for f in [pool.submit(run, i) for i in range(count)]]


def test_one_customer_under_concurrent_first_requests(make_user, make_api):
    user = make_user("racer")
    clients = [make_api(user) for _ in range(THREADS)]
    responses = race(lambda i: clients[i].post("/wallet/customer-token/", {}, format="json"))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["customer"] for r in responses}) == 1
    assert Customer.objects.filter(user=user).count() == 1


def test_one_processor_customer_under_concurrent_first_vaults(make_user, card_token):
    customer = services.get_or_create_customer(make_user("racer"))
    numbers = ["4242424242424242", "5555555555554444", "378282246310005", "6011111111111117"]
    tokens = [card_token(numbers[i % 4]) for i in range(THREADS)]
    race(lambda i: services.add_payment_method(Customer.objects.get(pk=customer.pk), tokens[i]))
    assert SandboxCustomer.objects.count() == 1
    customer.refresh_from_db()
    assert customer.processor_customer_id == SandboxCustomer.objects.get().sid
    assert SavedPaymentMethod.objects.filter(customer=customer).count() == 4
    assert SavedPaymentMethod.objects.filter(customer=customer, is_default=True).count() == 1


def test_exactly_one_default_under_concurrent_set_default(make_user, card_token, sandbox):
    customer = services.get_or_create_customer(make_user("racer"))
    numbers = ["4242424242424242", "5555555555554444", "378282246310005", "6011111111111117"]
    methods = [services.add_payment_method(customer, card_token(n))[0] for n in numbers]
    for _ in range(3):
        race(lambda i: services.set_default_payment_method(Customer.objects.get(pk=customer.pk),
                                                           methods[i % 4].uid))
        defaults = list(SavedPaymentMethod.objects.filter(customer=customer, is_default=True))
        assert len(defaults) == 1
        at_processor = [m for m in sandbox.list_payment_methods(customer.processor_ref) if m.is_default]
        assert [m.method_id for m in at_processor] == [defaults[0].processor_token]


def test_concurrent_charges_with_one_key_charge_once(make_user, card_token):
    customer = services.get_or_create_customer(make_user("racer"))
    services.add_payment_method(customer, card_token())
    charges = race(lambda i: services.charge(Customer.objects.get(pk=customer.pk), 4200, "USD",
                                             idempotency_key="order-42"))
    assert len({c.pk for c in charges}) == 1
    assert Charge.objects.count() == 1 and SandboxCharge.objects.count() == 1


def test_concurrent_api_set_default(make_user, make_api, card_token):
    user = make_user("racer")
    api = make_api(user)
    ids = [api.post("/wallet/api/payment-methods/", {"token": card_token(n)}, format="json").json()["id"]
           for n in ("4242424242424242", "5555555555554444", "378282246310005")]
    clients = [make_api(user) for _ in range(THREADS)]
    responses = race(lambda i: clients[i].put("/wallet/api/default-payment-method/",
                                              {"saved_payment_method_id": ids[i % 3]}, format="json"))
    assert {r.status_code for r in responses} == {200}
    assert SavedPaymentMethod.objects.filter(is_default=True).count() == 1
