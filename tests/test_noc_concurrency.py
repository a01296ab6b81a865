"""A large NOC's chunk fetches its methods concurrently (bounded), writes in one thread, loses nothing.

Against the Caselle fake over real loopback HTTP with injected latency; the fake counts how many
requests it is answering at once.
"""

from __future__ import annotations

import threading

import pytest

from tests.processors.test_caselle import options_for
from vault_wallets.models import Customer, PaymentMethodChange, SavedPaymentMethod
from vault_wallets.processors import get_processor
from vault_wallets.processors.base import ProcessorUnavailable
from vault_wallets.services import events
from vault_wallets.testing.fakes.caselle import caselle_fake  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def noc_account(settings, caselle_fake):  # noqa: F811
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "NOC_FETCH_CONCURRENCY": 4, "ACCOUNTS": {
        **settings.VAULT_WALLETS["ACCOUNTS"],
        "noc": {"PROCESSOR": "vault_wallets.processors.caselle.CaselleProcessor",
                "OPTIONS": options_for(caselle_fake, RETRIES=0, TIMEOUT=(2, 5))},
    }}
    return caselle_fake


def seed(fake, count: int) -> list[SavedPaymentMethod]:
    """``count`` customers with one card each, at the fake (expiry 2031) and here (expiry 2030)."""
    methods = []
    for i in range(count):
        customer_uid, method_uid = f"cus_noc{i:04d}", f"spm_noc{i:04d}"
        fake.customers[customer_uid] = {"uid": customer_uid, "reference_id": f"noc-{i}", "name": "", "email": "",
                                        "created_at": "2026-01-01T00:00:00Z"}
        fake.saved_methods[method_uid] = {
            "uid": method_uid, "customer_uid": customer_uid, "type": "credit", "token": f"pxy_noc{i:04d}",
            "details": {"last4": "4242", "exp_month": 9, "exp_year": 2031, "card_brand": "VISA"},
            "behaviour": "ok", "status": "active", "is_default": True,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
        customer = Customer.objects.create(account="noc", reference_id=f"noc-{i}", processor_customer_id=customer_uid)
        methods.append(SavedPaymentMethod.objects.create(
            customer=customer, processor_token=f"pxy_noc{i:04d}", processor_method_id=method_uid,
            processor_lookup=SavedPaymentMethod.lookup_for("noc", method_uid), brand="VISA", last4="4242",
            exp_month=9, exp_year=2030, is_default=True))
    return methods


def count_in_flight(fake) -> dict:
    """Wrap the fake's dispatch to record the most requests it was answering at once."""
    state = {"now": 0, "peak": 0, "lists": 0}
    lock = threading.Lock()
    original = fake._dispatch

    def counting(handler):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            state["lists"] += "/payment-methods" in handler.path
        try:
            original(handler)
        finally:
            with lock:
                state["now"] -= 1

    fake._dispatch = counting
    return state


def count_sent(monkeypatch) -> dict:
    """The most requests the client had in flight at once (``HTTPAdapter.send``, entered and left).
    Counted where the bound is kept: the fake's own count can see one more, when a server thread is
    still leaving its handler after writing the answer while the client's next request arrives
    (seen once as a peak of 5 on a loaded machine)."""
    from requests.adapters import HTTPAdapter

    state = {"now": 0, "peak": 0}
    lock = threading.Lock()
    original = HTTPAdapter.send

    def send(self, *args, **kwargs):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        try:
            return original(self, *args, **kwargs)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(HTTPAdapter, "send", send)
    return state


def test_a_chunk_fetches_concurrently_within_the_bound(noc_account, monkeypatch):
    fake = noc_account
    methods = seed(fake, 12)
    get_processor("noc")._tokens.get()  # the access token first, so only fetches are counted
    fake.faults.latency = 0.2
    state = count_in_flight(fake)
    sent = count_sent(monkeypatch)
    changed = events.refresh_chunk(None, [m.pk for m in methods])
    assert changed == 12 and state["lists"] == 12
    assert 2 <= sent["peak"] <= 4, sent  # concurrent, and never past NOC_FETCH_CONCURRENCY
    assert set(SavedPaymentMethod.objects.values_list("exp_year", flat=True)) == {2031}
    assert PaymentMethodChange.objects.count() == 12


def test_concurrency_of_one_fetches_one_at_a_time(noc_account, settings):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "NOC_FETCH_CONCURRENCY": 1}
    methods = seed(noc_account, 4)
    get_processor("noc")._tokens.get()
    noc_account.faults.latency = 0.05
    state = count_in_flight(noc_account)
    assert events.refresh_chunk(None, [m.pk for m in methods]) == 4
    assert state["peak"] == 1


def test_a_failed_fetch_applies_the_others_then_raises(noc_account):
    fake = noc_account
    methods = seed(fake, 8)
    get_processor("noc")._tokens.get()
    fake.faults.fail_next(503, count=1)  # one fetch fails (no retries configured), seven answer
    with pytest.raises(ProcessorUnavailable):
        events.refresh_chunk(None, [m.pk for m in methods])
    years = sorted(SavedPaymentMethod.objects.values_list("exp_year", flat=True))
    assert years == [2030] + [2031] * 7
    assert PaymentMethodChange.objects.count() == 7
    # The task's retry refreshes the chunk again: the one left over is done, nothing twice.
    assert events.refresh_chunk(None, [m.pk for m in methods]) == 1
    assert PaymentMethodChange.objects.count() == 8


def test_a_closed_default_is_replaced_in_a_concurrent_chunk(noc_account, django_capture_on_commit_callbacks):
    from vault_wallets import signals

    fake = noc_account
    first, second = seed(fake, 2)
    second.customer = first.customer  # both cards belong to one shopper; the first is the default
    second.is_default = False
    second.save()
    fake.saved_methods["spm_noc0001"]["customer_uid"] = "cus_noc0000"
    fake.saved_methods["spm_noc0000"]["status"] = "closed"
    received, changes_sent = [], []

    def on_update(sender, payment_method, changes, promoted, **kwargs):
        received.append((payment_method.pk, promoted.pk if promoted else None))
        changes_sent.append((payment_method.pk, changes))

    signals.payment_method_updated.connect(on_update)
    try:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx, django_capture_on_commit_callbacks(execute=True):
            assert events.refresh_chunk(None, [first.pk, second.pk]) == 2
    finally:
        signals.payment_method_updated.disconnect(on_update)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.is_default) == ("closed", False)
    assert (second.exp_year, second.is_default) == (2031, True)
    assert sorted(received) == sorted([(first.pk, second.pk), (second.pk, None)])
    # Each signal carries its stored change row (written in one batch), with its pk.
    for method_pk, change in changes_sent:
        stored = PaymentMethodChange.objects.get(pk=change.pk)
        assert stored.payment_method_id == change.payment_method_id == method_pk
        assert (stored.before, stored.after, stored.source) == (change.before, change.after, change.source)
    assert changes_sent[0][1].before != changes_sent[0][1].after
    # Writes are batched: a fixed handful of queries, not several per method.
    assert len(ctx.captured_queries) <= 14, [q["sql"][:80] for q in ctx.captured_queries]


def test_one_wallet_listing_per_customer(noc_account):
    """Caselle has no single-method GET: a chunk lists each customer's wallet once, not once per method."""
    fake = noc_account
    methods = seed(fake, 6)
    owner = methods[0].customer
    for i, method in enumerate(methods[1:4], start=1):  # three more cards of the first shopper
        method.customer = owner
        method.is_default = False
        method.save()
        fake.saved_methods[f"spm_noc{i:04d}"]["customer_uid"] = "cus_noc0000"
    fake.saved_methods["spm_noc0002"]["status"] = "closed"
    del fake.saved_methods["spm_noc0003"]  # gone at the processor
    get_processor("noc")._tokens.get()
    state = count_in_flight(fake)
    assert events.refresh_chunk(None, [m.pk for m in methods]) == 6
    assert state["lists"] == 3  # the first shopper's wallet once, then the two others
    statuses = dict(SavedPaymentMethod.objects.values_list("processor_method_id", "status"))
    assert statuses == {"spm_noc0000": "active", "spm_noc0001": "active", "spm_noc0002": "closed",
                        "spm_noc0003": "closed", "spm_noc0004": "active", "spm_noc0005": "active"}
    assert set(SavedPaymentMethod.objects.filter(status="active").values_list("exp_year", flat=True)) == {2031}


def test_a_chunk_larger_than_a_write_batch_counts_every_change(noc_account):
    """Answers are written 25 at a time: a chunk of 30 writes two batches and reports all 30."""
    methods = seed(noc_account, 30)
    assert events.refresh_chunk(None, [m.pk for m in methods]) == 30
    assert set(SavedPaymentMethod.objects.values_list("exp_year", flat=True)) == {2031}
    assert PaymentMethodChange.objects.count() == 30


def test_a_processor_answering_fewer_methods_than_asked_fails_the_chunk(noc_account, monkeypatch):
    """A short answer must not pass for a complete one (the methods left out would silently stay
    stale): the chunk fails, after applying what the other customers' answers said, and is retried."""
    methods = seed(noc_account, 4)
    processor = get_processor("noc")
    real = type(processor).fetch_payment_methods

    def short(self, customer, refs):
        answers = real(self, customer, refs)
        return answers[:-1] if customer.id == "cus_noc0002" else answers

    monkeypatch.setattr(type(processor), "fetch_payment_methods", short)
    with pytest.raises(ValueError):
        events.refresh_chunk(None, [m.pk for m in methods])
    assert sorted(SavedPaymentMethod.objects.values_list("exp_year", flat=True)) == [2030, 2031, 2031, 2031]
