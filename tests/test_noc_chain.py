"""A chunk task goes on with its event's next chunks, their fetches queued while it applies its own.

Fetched concurrently, a chunk ended in a partly empty wave of fetches and had nothing in flight
while its last answers were applied, the chunk committed and the next task taken from the broker
(docs/benchmarks.md, "What bounds the NOC now"). ``process_chunk`` now locks the event's next
pending chunk, queues its fetches behind its own, and refreshes it next in its own transaction.

Against the Caselle fake over real loopback HTTP (as ``tests/test_noc_concurrency.py``).
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.test_noc_concurrency import noc_account, seed  # noqa: F401  (fixture)
from vault_wallets import tasks
from vault_wallets.models import NocChunk, PaymentMethodChange, SavedPaymentMethod, WebhookEvent
from vault_wallets.processors import get_processor
from vault_wallets.processors.base import ProcessorUnavailable
from vault_wallets.services import events
from vault_wallets.testing.fakes.caselle import caselle_fake  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def noc_event(methods: list[SavedPaymentMethod], size: int, name: str = "evt_chain") -> list[NocChunk]:
    """A NOC of the ``noc`` account whose work is in chunks of ``size`` methods."""
    event = WebhookEvent.objects.create(account="noc", processor="caselle", event_id=name,
                                        event_id_hash=WebhookEvent.hash_event_id(name), event_type="provider.noc",
                                        body="{}", status=WebhookEvent.PROCESSING)
    return [NocChunk.objects.create(event=event, index=i, method_pks=[m.pk for m in methods[at:at + size]])
            for i, at in enumerate(range(0, len(methods), size))]


def record_paths(fake) -> list[str]:
    """Every request path the fake is asked, in the order they arrive."""
    paths: list[str] = []
    lock = threading.Lock()
    original = fake._dispatch

    def recording(handler):
        with lock:
            paths.append(handler.path)
        original(handler)

    fake._dispatch = recording
    return paths


def wallets(paths: list[str], methods: list[SavedPaymentMethod]) -> int:
    """How many of ``paths`` list the wallet of a customer of ``methods``."""
    customers = {f"/api/customers/{m.customer.processor_customer_id}/payment-methods" for m in methods}
    return sum(path.split("?")[0] in customers for path in paths)


def test_a_chunk_task_refreshes_its_events_next_chunks_too(noc_account):  # noqa: F811
    fake = noc_account
    methods = seed(fake, 12)
    first, second, third = noc_event(methods, 4)
    other = noc_event(methods[:4], 4, "evt_other")[0]  # another NOC naming some of the same cards
    get_processor("noc")._tokens.get()
    paths = record_paths(fake)
    assert events.process_chunk(first.pk) == NocChunk.DONE
    chunks = list(NocChunk.objects.filter(pk__in=[first.pk, second.pk, third.pk]).order_by("index"))
    assert [(c.status, c.attempts, c.changed) for c in chunks] == [(NocChunk.DONE, 1, 4)] * 3
    assert all(c.finished_at is not None and c.next_attempt_at is None for c in chunks)
    assert WebhookEvent.objects.get(pk=first.event_id).status == WebhookEvent.PROCESSED
    assert set(SavedPaymentMethod.objects.filter(pk__in=[m.pk for m in methods]).values_list("exp_year", flat=True)) \
        == {2031}
    changes = PaymentMethodChange.objects.filter(payment_method__in=methods)
    assert changes.count() == 12 and set(changes.values_list("source_event", flat=True)) == {first.event_id}
    assert wallets(paths, methods) == 12  # each fetched once
    # Another event's chunk is not taken along.
    other.refresh_from_db()
    assert (other.status, other.attempts) == (NocChunk.PENDING, 0)
    # The chunks' own task messages find them done: nothing is fetched twice.
    assert events.process_chunk(second.pk) == events.process_chunk(third.pk) == NocChunk.DONE
    assert len(paths) == 12


def test_the_next_chunks_fetches_are_in_flight_while_a_chunk_applies_its_answers(noc_account, monkeypatch):  # noqa: F811
    """The point of the chain: the processor is asked for the next chunk's methods before this
    chunk's answers are applied (they wait behind this chunk's fetches on the same threads)."""
    fake = noc_account
    methods = seed(fake, 8)
    first, second = noc_event(methods, 4)
    get_processor("noc")._tokens.get()
    paths = record_paths(fake)
    real = events.apply_fetched_batch
    seen_while_applying: list[int] = []

    def apply(answers, **kwargs):
        if not seen_while_applying:  # the first chunk's only batch
            deadline = time.monotonic() + 5
            while wallets(paths, methods[4:]) < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            seen_while_applying.append(wallets(paths, methods[4:]))
        return real(answers, **kwargs)

    monkeypatch.setattr(events, "apply_fetched_batch", apply)
    assert events.process_chunk(first.pk) == NocChunk.DONE
    assert seen_while_applying == [4]
    second.refresh_from_db()
    assert (second.status, second.changed) == (NocChunk.DONE, 4)


@pytest.mark.parametrize(("chain", "done"), [(0, 1), (1, 2), (2, 3)])
def test_the_chain_is_bounded(noc_account, monkeypatch, chain, done):  # noqa: F811
    """At most ``_CHAIN_CHUNKS`` more chunks per task; the last one starts no fetches ahead."""
    fake = noc_account
    methods = seed(fake, 16)
    chunks = noc_event(methods, 4)
    get_processor("noc")._tokens.get()
    paths = record_paths(fake)
    monkeypatch.setattr(events, "_CHAIN_CHUNKS", chain)
    assert events.process_chunk(chunks[0].pk) == NocChunk.DONE
    statuses = list(NocChunk.objects.filter(pk__in=[c.pk for c in chunks]).order_by("index")
                    .values_list("status", "attempts"))
    assert statuses == [(NocChunk.DONE, 1)] * done + [(NocChunk.PENDING, 0)] * (4 - done)
    assert wallets(paths, methods[:4 * done]) == 4 * done
    assert wallets(paths, methods[4 * done:]) == 0  # nothing fetched ahead for a chunk not refreshed here


def test_one_by_one_processors_refresh_only_their_own_chunk(noc_account, settings):  # noqa: F811
    """With one fetch at a time there is nothing to overlap: the task refreshes its chunk only."""
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "NOC_FETCH_CONCURRENCY": 1}
    methods = seed(noc_account, 8)
    first, second = noc_event(methods, 4)
    assert events.process_chunk(first.pk) == NocChunk.DONE
    second.refresh_from_db()
    assert (second.status, second.attempts) == (NocChunk.PENDING, 0)


def test_a_chained_chunk_the_processor_fails_is_retried_by_its_own_pk(noc_account, monkeypatch):  # noqa: F811
    fake = noc_account
    methods = seed(fake, 12)
    first, second, third = noc_event(methods, 4)
    get_processor("noc")._tokens.get()
    real = events._fetch_group
    failing = {m.customer.processor_customer_id for m in methods[4:8]}

    def fetch(account, customer, refs):
        if customer.id in failing:
            raise ProcessorUnavailable("down for the second chunk", processor="caselle")
        return real(account, customer, refs)

    monkeypatch.setattr(events, "_fetch_group", fetch)
    with pytest.raises(events.RetryLater) as caught:
        events.process_chunk(first.pk)
    assert caught.value.chunk_pk == second.pk and str(caught.value) == "down for the second chunk"
    rows = {c.pk: c for c in NocChunk.objects.filter(pk__in=[first.pk, second.pk, third.pk])}
    assert (rows[first.pk].status, rows[first.pk].changed) == (NocChunk.DONE, 4)
    assert (rows[second.pk].status, rows[second.pk].attempts) == (NocChunk.PENDING, 1)
    assert rows[second.pk].last_error == "ProcessorUnavailable: down for the second chunk"
    assert rows[second.pk].next_attempt_at is not None
    # The third chunk's fetches (started while the second was refreshed) are dropped with it.
    assert (rows[third.pk].status, rows[third.pk].attempts) == (NocChunk.PENDING, 0)
    assert not SavedPaymentMethod.objects.filter(pk__in=[m.pk for m in methods[8:]], exp_year=2031).exists()
    # Its own failure is this chunk's: retried under its own pk too.
    with pytest.raises(events.RetryLater) as again:
        events.process_chunk(second.pk)
    assert again.value.chunk_pk == second.pk


def test_an_error_applying_a_chunk_is_raised_after_the_next_chunks_fetches(noc_account, monkeypatch):  # noqa: F811
    """A chunk whose answers cannot be applied (the database gone, a bug) raises its own error, and
    only once the fetches already queued for the next chunk have finished: nothing of this task is
    still in flight when the worker takes its next one (``_process_chunk`` 51, 52)."""
    fake = noc_account
    methods = seed(fake, 8)
    first, second = noc_event(methods, 4)
    get_processor("noc")._tokens.get()
    real = events._fetch_group
    late = {m.customer.processor_customer_id for m in methods[4:]}
    finished: list[str] = []

    def fetch(account, customer, refs):
        answers = real(account, customer, refs)
        if customer.id in late:
            time.sleep(0.3)
            finished.append(customer.id)
        return answers

    def broken(ready, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(events, "_fetch_group", fetch)
    monkeypatch.setattr(events, "apply_fetched_batch", broken)
    with pytest.raises(RuntimeError, match="^the database went away$"):
        events.process_chunk(first.pk)
    assert sorted(finished) == sorted(late)
    # Rolled back: both chunks as they were, for the sweeper to hand out again.
    assert list(NocChunk.objects.filter(pk__in=[first.pk, second.pk]).order_by("index")
                .values_list("status", "attempts")) == [(NocChunk.PENDING, 0)] * 2


def test_a_small_chunk_taken_along_never_adds_to_the_fetches_in_flight(noc_account, monkeypatch, settings):  # noqa: F811
    """An event's last chunk is often small; its fetches queue behind the previous chunk's on the
    same threads, so at most ``NOC_FETCH_CONCURRENCY`` are in flight at any time."""
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "NOC_FETCH_CONCURRENCY": 4}
    fake = noc_account
    methods = seed(fake, 10)
    first = noc_event(methods, 8)[0]  # 8 methods, then 2
    get_processor("noc")._tokens.get()
    real = events._fetch_group
    lock = threading.Lock()
    in_flight, most = 0, 0

    def fetch(account, customer, refs):
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            time.sleep(0.1)
            return real(account, customer, refs)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(events, "_fetch_group", fetch)
    assert events.process_chunk(first.pk) == NocChunk.DONE
    assert list(NocChunk.objects.filter(event_id=first.event_id).values_list("status", flat=True)) == \
        [NocChunk.DONE] * 2
    assert most == 4


def test_a_chunk_waiting_for_its_retry_is_not_taken_along(noc_account):  # noqa: F811
    """A chunk the processor failed keeps its backoff: the chain skips it and takes the next
    never-tried chunk."""
    fake = noc_account
    methods = seed(fake, 12)
    first, second, third = noc_event(methods, 4)
    NocChunk.objects.filter(pk=second.pk).update(attempts=1, last_error="ProcessorUnavailable: down")
    get_processor("noc")._tokens.get()
    paths = record_paths(fake)
    assert events.process_chunk(first.pk) == NocChunk.DONE
    rows = {c.pk: c for c in NocChunk.objects.filter(pk__in=[first.pk, second.pk, third.pk])}
    assert (rows[second.pk].status, rows[second.pk].attempts) == (NocChunk.PENDING, 1)
    assert (rows[third.pk].status, rows[third.pk].attempts) == (NocChunk.DONE, 1)
    assert wallets(paths, methods[4:8]) == 0 and wallets(paths, methods[8:]) == 4


def test_a_chained_chunk_found_done_is_not_applied_again(noc_account, monkeypatch):  # noqa: F811
    """Another worker may take the next chunk between this task's two transactions; its answers,
    fetched here ahead, are then dropped (the chunk is not pending any more)."""
    fake = noc_account
    methods = seed(fake, 8)
    first, second = noc_event(methods, 4)
    get_processor("noc")._tokens.get()
    real = events._start_next_chunk

    def taken_meanwhile(chunk):
        ahead = real(chunk)
        NocChunk.objects.filter(pk=second.pk).update(status=NocChunk.DONE, changed=0)
        return ahead

    monkeypatch.setattr(events, "_start_next_chunk", taken_meanwhile)
    assert events.process_chunk(first.pk) == NocChunk.DONE
    second.refresh_from_db()
    assert (second.status, second.attempts, second.changed) == (NocChunk.DONE, 0, 0)
    assert not PaymentMethodChange.objects.filter(payment_method__in=methods[4:]).exists()
    assert set(SavedPaymentMethod.objects.filter(pk__in=[m.pk for m in methods[4:]])
               .values_list("exp_year", flat=True)) == {2030}


def test_the_task_retries_the_chunk_that_failed(monkeypatch):
    retried = []

    def retry(**kwargs):
        retried.append(kwargs)
        return RuntimeError("retry")

    monkeypatch.setattr(tasks.refresh_noc_chunk, "retry", retry)
    for named, expected in ((None, 5), (77, 77)):
        def fail(pk, named=named):
            raise events.RetryLater(3.0, "down", chunk_pk=named)

        monkeypatch.setattr(events, "process_chunk", fail)
        with pytest.raises(RuntimeError):
            tasks.refresh_noc_chunk(5)
        assert retried.pop() == {"countdown": 3.0, "args": [expected]}


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(__import__("django.db").db.connection.vendor != "postgresql",
                    reason="row locks need PostgreSQL (set DATABASE_URL)")
def test_a_chunk_another_worker_holds_is_skipped_and_the_chain_takes_the_next(noc_account):  # noqa: F811
    from tests.test_noc_chunk_claims import chunk_held_elsewhere

    methods = seed(noc_account, 12)
    first, second, third = noc_event(methods, 4)
    get_processor("noc")._tokens.get()
    with chunk_held_elsewhere(second.pk):
        assert events.process_chunk(first.pk) == NocChunk.DONE
        statuses = dict(NocChunk.objects.values_list("pk", "status"))
        assert statuses == {first.pk: NocChunk.DONE, second.pk: NocChunk.PENDING, third.pk: NocChunk.DONE}
    assert events.process_chunk(second.pk) == NocChunk.DONE
    assert WebhookEvent.objects.get(pk=first.event_id).status == WebhookEvent.PROCESSED
