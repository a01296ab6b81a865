"""Concurrent capture, void and refund of one charge: the charge's row lock decides (PostgreSQL).

``_transition`` (capture/void) and ``refund`` read the charge with ``select_for_update()``: the
first caller holds the row while it calls the processor, the others wait, then see what the
first one did.  Without the lock every caller sees the charge as it was and calls the processor
too.  The processor's answer is slowed down, so without the lock all callers are past the check
before the first one commits: each test fails then (issue #13; docs/testing.md says how that was
verified).  SQLite has no row locks (``select_for_update()`` is a no-op there): these tests run
on PostgreSQL only.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import IntegrityError, connection, connections

from vault_wallets import services
from vault_wallets.exceptions import ChargeOutcomeUnknown, InvalidChargeState
from vault_wallets.models import Charge, Refund
from vault_wallets.sandbox.models import SandboxCharge

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="row locks need PostgreSQL: select_for_update() is a no-op on SQLite"),
]

THREADS = 6
SLOW = 0.3  # seconds the processor takes to answer: longer than all threads need to reach the lock


def race(func, count=THREADS):
    """``func(i)`` in ``count`` threads released together; each result or the exception raised."""
    barrier = threading.Barrier(count)

    def run(i):
        try:
            barrier.wait()
            return func(i)
        except Exception as exc:  # noqa: BLE001 - the tests assert on every outcome
            return exc
        finally:
            connections.close_all()

    with ThreadPoolExecutor(count) as pool:
        return [f.result() for f in [pool.submit(run, i) for i in range(count)]]


@pytest.fixture
def slow_processor(sandbox, monkeypatch):
    """Count the processor's capture/void/refund calls and answer each only after ``SLOW``."""
    calls: list[str] = []
    lock = threading.Lock()
    cls = type(sandbox)

    def slowed(name):
        real = getattr(cls, name)

        def call(self, *args, **kwargs):
            with lock:
                calls.append(name)
            time.sleep(SLOW)
            return real(self, *args, **kwargs)
        return call

    for name in ("capture", "void", "refund"):
        monkeypatch.setattr(cls, name, slowed(name))
    return calls


@pytest.fixture
def authorized(customer, card_token):
    services.add_payment_method(customer, card_token())
    return services.charge(customer, 1000, "USD", idempotency_key="race-auth", capture=False)


def _fresh(record):
    return Charge.objects.get(pk=record.pk)


def test_concurrent_captures_capture_once(authorized, slow_processor):
    results = race(lambda i: services.capture(_fresh(authorized)))
    captured = [r for r in results if isinstance(r, Charge)]
    refused = [r for r in results if isinstance(r, InvalidChargeState)]
    assert len(captured) == 1 and len(refused) == THREADS - 1, results
    assert slow_processor == ["capture"]
    record = _fresh(authorized)
    assert (record.status, record.amount_captured) == ("captured", 1000)
    assert SandboxCharge.objects.get().status == "captured"


def test_concurrent_capture_and_void_one_wins(authorized, slow_processor):
    def act(i):
        return services.capture(_fresh(authorized)) if i % 2 else services.void(_fresh(authorized))

    results = race(act)
    done = [r for r in results if isinstance(r, Charge)]
    refused = [r for r in results if isinstance(r, InvalidChargeState)]
    assert len(done) == 1 and len(refused) == THREADS - 1, results
    assert len(slow_processor) == 1
    record = _fresh(authorized)
    assert record.status == done[0].status == SandboxCharge.objects.get().status
    assert record.status == {"capture": "captured", "void": "voided"}[slow_processor[0]]


def test_concurrent_refunds_start_one_refund(customer, card_token, slow_processor):
    services.add_payment_method(customer, card_token())
    record = services.charge(customer, 1000, "USD", idempotency_key="race-refund")
    results = race(lambda i: services.refund(_fresh(record), 300))
    assert not [r for r in results if isinstance(r, IntegrityError)], results
    refunded = [r for r in results if isinstance(r, Charge)]
    waiting = [r for r in results if isinstance(r, ChargeOutcomeUnknown)]
    # The first holds the charge while it writes its pending refund; the others then find that
    # refund still waiting for its answer and say so, instead of refunding again.
    assert len(refunded) == 1 and len(waiting) == THREADS - 1, results
    assert slow_processor == ["refund"]
    assert list(Refund.objects.values_list("sequence", "amount", "status")) == [(1, 300, "succeeded")]
    assert _fresh(record).amount_refunded == 300 == SandboxCharge.objects.get().amount_refunded
