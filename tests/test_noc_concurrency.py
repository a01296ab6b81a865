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
    """Answers are written 50 at a time: a chunk of 60 writes two batches and reports all 60."""
    methods = seed(noc_account, 60)
    assert events.refresh_chunk(None, [m.pk for m in methods]) == 60
    assert set(SavedPaymentMethod.objects.values_list("exp_year", flat=True)) == {2031}
    assert PaymentMethodChange.objects.count() == 60


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


def test_a_chunk_asks_the_processor_exactly_what_the_saved_methods_name(noc_account, monkeypatch):
    """A chunk reads its methods as rows, not models: what it hands the processor must still be each
    method's and customer's own ``processor_ref`` (the customer's secret and reference too, a method
    without a processor id fetched by its token), one call per customer with its methods in order."""
    methods = seed(noc_account, 4)
    owner = methods[0].customer
    owner.processor_customer_secret = "cus-secret-0"
    owner.save()
    methods[1].customer = owner
    methods[1].is_default = False
    methods[1].processor_method_id = ""  # fetched by its token, as SavedPaymentMethod.processor_ref says
    methods[1].save()
    methods[2].method_type = "ach"
    methods[2].save()
    asked = []
    processor = get_processor("noc")

    def record(self, customer, refs):
        asked.append((customer, list(refs)))
        return [None] * len(refs)

    monkeypatch.setattr(type(processor), "fetch_payment_methods", record)
    expected: dict = {}
    for method in SavedPaymentMethod.objects.select_related("customer").filter(pk__in=[m.pk for m in methods]):
        expected.setdefault(method.customer.processor_ref, []).append(method.processor_ref)
    events.refresh_chunk(None, [m.pk for m in methods])
    assert len(asked) == 3 and dict(asked) == expected
    assert ("cus-secret-0", "noc-0") in {(c.secret, c.reference_id) for c, _ in asked}
    assert "pxy_noc0001" in {ref.method_id for _, refs in asked for ref in refs}  # by its token


def test_a_chunk_that_fails_while_applying_waits_for_its_fetches(noc_account, monkeypatch):
    """An error while applying answers is raised only once every fetch the chunk started has
    finished: the chunk's task never leaves fetches of its own running into the next chunk (at most
    ``NOC_FETCH_CONCURRENCY`` in flight per worker process)."""
    fake = noc_account
    methods = seed(fake, 10)
    get_processor("noc")._tokens.get()
    fake.faults.latency = 0.1
    state = count_in_flight(fake)

    def broken(answers, **kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(events, "apply_fetched_batch", broken)
    monkeypatch.setattr(events, "_APPLY_BATCH", 1)
    with pytest.raises(RuntimeError, match="database gone"):
        events.refresh_chunk(None, [m.pk for m in methods])
    assert state["lists"] == 10 and state["now"] == 0


def test_an_interrupt_in_a_fetch_thread_is_not_a_failed_fetch(noc_account, monkeypatch):
    """``KeyboardInterrupt``/``SystemExit`` raised by a fetch stop the chunk at once (as a thread
    pool's future re-raises them), instead of being kept as a failure applied after the others."""
    methods = seed(noc_account, 3)
    real = events._fetch_group

    def interrupted(account, customer, refs):
        if customer.id == "cus_noc0001":
            raise KeyboardInterrupt
        return real(account, customer, refs)

    monkeypatch.setattr(events, "_fetch_group", interrupted)
    with pytest.raises(KeyboardInterrupt):
        events.refresh_chunk(None, [m.pk for m in methods])


def test_a_forked_worker_process_starts_its_own_fetch_threads(noc_account):
    """A prefork worker child inherits the parent's pools but none of their threads: the fork hook
    forgets them (with their lock), so the child's first chunk starts threads that do fetch."""
    methods = seed(noc_account, 4)
    assert events.refresh_chunk(None, [m.pk for m in methods[:2]]) == 2
    before = dict(events._fetch_pools)
    lock = events._fetch_pools_lock
    assert before
    events._forget_fetch_pools()  # what os.register_at_fork runs in the child
    assert events._fetch_pools == {} and events._fetch_pools_lock is not lock
    assert events.refresh_chunk(None, [m.pk for m in methods[2:]]) == 2
    assert all(events._fetch_pools[size] is not pool for size, pool in before.items() if size in events._fetch_pools)


def test_a_concurrent_chunk_records_its_event_as_the_source(noc_account):
    """Changes written by a concurrent chunk name the event (and its type) that caused them; without
    one, a "manual refresh" — and so do ``refresh_concurrently``'s, given saved methods directly."""
    from vault_wallets.models import WebhookEvent

    methods = seed(noc_account, 6)
    event = WebhookEvent.objects.create(account="noc", processor="caselle", event_id="evt_noc_source",
                                        event_id_hash=WebhookEvent.hash_event_id("evt_noc_source"),
                                        event_type="provider.noc", body="{}")
    assert events.refresh_chunk(event.pk, [m.pk for m in methods[:2]]) == 2
    assert set(PaymentMethodChange.objects.values_list("source", "source_event")) == {("provider.noc", event.pk)}

    def loaded(chosen):
        return list(SavedPaymentMethod.objects.select_related("customer").filter(pk__in=[m.pk for m in chosen]))

    get_processor("noc")._tokens.get()
    noc_account.faults.latency = 0.2
    state = count_in_flight(noc_account)
    assert events.refresh_concurrently(loaded(methods[2:4]), source_event=event) == 2  # concurrently, by default
    assert state["peak"] == 2
    later = PaymentMethodChange.objects.filter(payment_method__in=methods[2:4])
    assert set(later.values_list("source", "source_event")) == {("manual refresh", event.pk)}
    state["peak"] = 0
    assert events.refresh_concurrently(loaded(methods[4:]), concurrency=1) == 2
    assert state["peak"] == 1  # the caller's bound
    last = PaymentMethodChange.objects.filter(payment_method__in=methods[4:])
    assert set(last.values_list("source", "source_event")) == {("manual refresh", None)}
    assert set(SavedPaymentMethod.objects.values_list("exp_year", flat=True)) == {2031}


def test_a_chunk_of_many_customers_is_written_in_one_batch(noc_account):
    """Answers from different customers are applied together, not one customer at a time: a chunk of
    twelve shoppers' cards makes one UPDATE of the methods and one INSERT of their changes."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    methods = seed(noc_account, 12)
    get_processor("noc")._tokens.get()
    table = SavedPaymentMethod._meta.db_table
    with CaptureQueriesContext(connection) as ctx:
        assert events.refresh_chunk(None, [m.pk for m in methods]) == 12
    updates = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith(f'UPDATE "{table}"')]
    inserts = [q["sql"] for q in ctx.captured_queries
               if q["sql"].startswith(f'INSERT INTO "{PaymentMethodChange._meta.db_table}"')]
    assert (len(updates), len(inserts)) == (1, 1), [q["sql"][:60] for q in ctx.captured_queries]
    # ... after locking the twelve shoppers' rows (what a concurrent change of their default waits for)
    customers = Customer._meta.db_table
    locks = [q["sql"] for q in ctx.captured_queries
             if q["sql"].startswith(f'SELECT "{customers}"."id" AS "pk" FROM "{customers}" WHERE')]
    assert len(locks) == 1 and locks[0].count(",") == 11, locks


def test_a_worker_process_keeps_the_same_fetch_threads_from_chunk_to_chunk(noc_account):
    """The fetch threads are started once per worker process and reused by every chunk: running
    more chunks never adds threads (a thread pool per chunk started them again each time)."""
    methods = seed(noc_account, 9)

    def fetch_threads() -> set[int]:
        return {t.ident for t in threading.enumerate() if t.name.startswith("vault-fetch-")}

    events.refresh_chunk(None, [m.pk for m in methods[:3]])
    first = fetch_threads()
    assert len(first) >= 3
    events.refresh_chunk(None, [m.pk for m in methods[3:6]])
    events.refresh_chunk(None, [m.pk for m in methods[6:]])
    assert fetch_threads() == first


def test_the_fetch_threads_never_keep_a_worker_process_from_exiting():
    """The pool's idle threads wait for work forever: they must not hold the interpreter open when a
    worker process (or a management command) finishes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = ("import django; django.setup()\n"
              "from vault_wallets.services import events\n"
              "events._fetch_pool(3)\n"
              "print('started', flush=True)\n")
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=30,
                            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"})
    assert result.returncode == 0 and "started" in result.stdout, result.stderr
