"""Charges, refunds and their lost answers pinned where mutation testing found them loose (issue 13).

Every customer- or account-scoped query runs with a second customer (or a second account) holding
a row that a dropped scope would pick; every boundary is tried on both sides; the operations log
names what it did (staff read it when an answer was lost).  Scenarios use the sandbox's own
faults: "apply, then drop the answer" charges for real and loses the answer.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from vault_wallets import services
from vault_wallets.exceptions import ChargeOutcomeUnknown
from vault_wallets.models import Charge, Refund
from vault_wallets.processors import base as p
from vault_wallets.processors import get_processor
from vault_wallets.processors.sandbox import SandboxProcessor
from vault_wallets.sandbox.models import SandboxCharge
from vault_wallets.services import charges

pytestmark = pytest.mark.django_db

STALE = timedelta(seconds=60)  # CHARGE_PENDING_STALE_SECONDS (set below)


@pytest.fixture(autouse=True)
def _stale(settings):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "CHARGE_PENDING_STALE_SECONDS": 60}


@pytest.fixture
def down(monkeypatch):
    """``down["find_charge"] = n``: the next n look-ups by key fail as unreachable (-1: all of them);
    likewise ``down["fetch_charge"]``."""
    left = {"find_charge": 0, "fetch_charge": 0}
    for name in left:
        real = getattr(SandboxProcessor, name)

        def call(self, *args, _real=real, _name=name, **kwargs):
            if left[_name]:
                left[_name] -= left[_name] > 0
                raise p.ProcessorUnavailable("down", code="connection_error", processor="sandbox")
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(SandboxProcessor, name, call)
    return left


@pytest.fixture
def shopper(customer, card_token):
    services.add_payment_method(customer, card_token())
    return customer


@pytest.fixture
def neighbour(make_user, card_token):
    """A second customer of the same account, with a card."""
    other = services.get_or_create_customer(make_user("neighbour"))
    services.add_payment_method(other, card_token("5555555555554444"))
    return other


@pytest.fixture
def abroad(make_user):
    """A customer of the second sandbox account ("eu"), with a card."""
    other = services.get_or_create_customer(make_user("abroad"), "eu")
    eu = get_processor("eu")
    token = eu.tokenize_card("4242424242424242", 12, 2034, "123", "Abroad")
    services.add_payment_method(other, token)
    eu.faults.reset()
    yield other
    eu.faults.reset()


def lost(customer, key, down, amount=1500, reference=""):
    """A charge the processor made whose answer was lost, and whose look-up failed: ``unknown``."""
    get_processor(customer.account).faults.drop_next(only="charge")
    down["find_charge"] += 1
    with pytest.raises(ChargeOutcomeUnknown) as caught:
        services.charge(customer, amount, "USD", idempotency_key=key, reference=reference)
    record = caught.value.charge
    assert record.status == "unknown" and not record.processor_reference
    return record


def sid_of(record):
    return SandboxCharge.objects.get(account=record.customer.account, amount=record.amount).sid


def event(charge_reference="", **data):
    return p.NormalizedEvent(type=p.EVENT_CHARGE_SUCCEEDED, event_id="evt", charge_reference=charge_reference,
                             data=data)


def messages(caplog):
    return [r.getMessage() for r in caplog.records]


# -- link_charge_event: the processor's charge webhook ------------------------------------------


def test_a_charge_event_names_the_charge_of_its_own_account(shopper, neighbour, abroad, sandbox):
    mine = services.charge(shopper, 1100, "USD", idempotency_key="k-1")
    theirs = services.charge(abroad, 1200, "USD", idempotency_key="k-1")
    # Two processors' references need not differ: the account decides.
    Charge.objects.filter(pk=theirs.pk).update(processor_reference=mine.processor_reference)
    newer = services.charge(neighbour, 1300, "USD", idempotency_key="k-3")
    assert charges.link_charge_event("default", event(mine.processor_reference)).pk == mine.pk
    assert charges.link_charge_event("eu", event(mine.processor_reference)).pk == theirs.pk
    assert charges.link_charge_event("default", event(newer.processor_reference)).pk == newer.pk
    assert charges.link_charge_event("default", event("ch_nobody")) is None
    assert charges.link_charge_event("default", event()) is None
    assert Charge.objects.get(pk=mine.pk).status == "captured"


def test_a_charge_event_with_the_key_settles_the_unknown_charge(shopper, neighbour, abroad, down, caplog):
    mine = lost(shopper, "order-7", down, amount=1500, reference="ord-7")
    elsewhere = lost(abroad, "order-7", down, amount=1600, reference="ord-7")
    # A settled charge of another customer with the same key, newer: not the one the event is about.
    Charge.objects.create(customer=neighbour, amount=1500, currency="USD", status="captured",
                          idempotency_key="order-7", reference="ord-x", processor_reference="ch_settled")
    caplog.set_level(logging.INFO, logger="vault_wallets.charges")
    found = charges.link_charge_event("default", event(idempotency_key="order-7"))
    assert found.pk == mine.pk
    assert (found.status, found.processor_reference) == ("captured", sid_of(mine))
    assert f"charge {mine.uid} settled as captured by webhook" in messages(caplog)
    assert Charge.objects.get(pk=elsewhere.pk).status == "unknown"  # the other account's: not looked up
    # By the shop's reference alone.
    second = lost(shopper, "order-8", down, amount=1700, reference="ord-8")
    assert charges.link_charge_event("default", event(reference="ord-8")).pk == second.pk
    assert Charge.objects.get(pk=second.pk).status == "captured"


def test_a_charge_event_fetches_the_named_charge(shopper, down, caplog):
    named = lost(shopper, "order-9", down, amount=900)
    bystander = lost(shopper, "order-10", down, amount=1000)
    before = Charge.objects.get(pk=bystander.pk)
    down["find_charge"] = -1  # only the charge the event names can be read: by its reference
    caplog.set_level(logging.INFO, logger="vault_wallets.charges")
    found = charges.link_charge_event("default", event(sid_of(named), idempotency_key="order-9"))
    assert (found.pk, found.status, found.processor_reference) == (named.pk, "captured", sid_of(named))
    assert f"charge {named.uid} settled as captured by webhook" in messages(caplog)
    after = Charge.objects.get(pk=bystander.pk)  # the event is not about it: not looked up
    assert (after.status, after.resolve_attempts, after.next_check_at) == (
        "unknown", before.resolve_attempts, before.next_check_at)


def test_a_charge_event_whose_fetch_fails_looks_the_charge_up(shopper, down):
    named = lost(shopper, "order-11", down, amount=1100)
    down["fetch_charge"] = 1
    found = charges.link_charge_event("default", event(sid_of(named), idempotency_key="order-11"))
    assert (found.pk, found.status) == (named.pk, "captured")


def test_a_charge_event_by_reference_alone_looks_up_the_accounts_unsettled_charges(shopper, abroad, down,
                                                                                    caplog):
    first = lost(shopper, "order-12", down, amount=1200)
    second = lost(shopper, "order-13", down, amount=1300)
    elsewhere = lost(abroad, "order-14", down, amount=1400)
    caplog.set_level(logging.INFO, logger="vault_wallets.charges")
    found = charges.link_charge_event("default", event(sid_of(second)))
    assert (found.pk, found.status) == (second.pk, "captured")
    assert Charge.objects.get(pk=first.pk).status == "captured"  # looked up on the way
    assert f"charge {first.uid} settled as captured by webhook" in messages(caplog)
    assert Charge.objects.get(pk=elsewhere.pk).status == "unknown"


@pytest.mark.parametrize("older", [49, 50])
def test_a_charge_event_looks_up_at_most_fifty_unsettled_charges(shopper, down, older):
    Charge.objects.bulk_create([
        Charge(customer=shopper, amount=10 + i, currency="USD", status="unknown", idempotency_key=f"old-{i}")
        for i in range(older)])
    named = lost(shopper, "order-15", down, amount=1500)
    found = charges.link_charge_event("default", event(sid_of(named)))
    if older < 50:
        assert found.pk == named.pk and found.status == "captured"
    else:
        assert found is None and Charge.objects.get(pk=named.pk).status == "unknown"


# -- refunds: lost answers, look-ups, the sweeper -------------------------------------------------


def _aged(row, by=STALE):
    Refund.objects.filter(pk=row.pk).update(created_at=timezone.now() - by)


def test_a_lost_refund_answer_is_recorded_and_logged(shopper, neighbour, down, caplog):
    other = services.charge(neighbour, 500, "USD", idempotency_key="n-1")
    waiting = Refund.objects.create(charge=other, sequence=1, amount=100, idempotency_key="w-1")
    record = services.charge(shopper, 1000, "USD", idempotency_key="r-1")
    get_processor("default").faults.drop_next(only="refund")
    down["fetch_charge"] = 1
    caplog.set_level(logging.INFO, logger="vault_wallets.charges")
    with pytest.raises(ChargeOutcomeUnknown) as caught:
        services.refund(record, 300)
    row = Refund.objects.get(charge=record)
    assert (caught.value.refund.pk, caught.value.charge.pk) == (row.pk, record.pk)
    assert (caught.value.code, caught.value.processor) == ("connection_error", "sandbox")
    assert (row.status, row.failure_code) == ("unknown", "connection_error")
    assert row.failure_message == "the sandbox closed the connection without answering"
    assert (f"refund {row.uid}: the processor's answer was lost (connection_error); looking it up"
            in messages(caplog))
    assert f"refund {row.uid}: look-up failed (connection_error); trying later" in messages(caplog)
    assert Refund.objects.get(pk=waiting.pk).status == "pending"  # another charge's refund: left alone


def test_a_lost_refund_code_is_cut_to_the_column(shopper, monkeypatch, down):
    record = services.charge(shopper, 1000, "USD", idempotency_key="r-2")
    real = SandboxProcessor.refund

    def refund_then_fail(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise p.ProcessorUnavailable("gone", code="c" * 150, processor="sandbox")

    monkeypatch.setattr(SandboxProcessor, "refund", refund_then_fail)
    down["fetch_charge"] = 1
    with pytest.raises(ChargeOutcomeUnknown):
        services.refund(record, 300)
    assert Refund.objects.get().failure_code == "c" * 100


def test_a_refund_settled_while_its_answer_was_lost_is_not_counted_twice(shopper, monkeypatch):
    record = services.charge(shopper, 1000, "USD", idempotency_key="r-3")
    real = SandboxProcessor.refund

    def refund_settled_by_the_sweeper_meanwhile(self, *args, **kwargs):
        real(self, *args, **kwargs)
        row = Refund.objects.get()
        _aged(row)
        assert charges.resolve_refund(row).status == "succeeded"
        raise p.ProcessorUnavailable("gone", code="timeout", processor="sandbox")

    monkeypatch.setattr(SandboxProcessor, "refund", refund_settled_by_the_sweeper_meanwhile)
    record = services.refund(record, 300)
    assert record.amount_refunded == 300 == SandboxCharge.objects.get().amount_refunded
    assert Refund.objects.get().status == "succeeded"


def test_a_lost_refund_of_the_second_account_is_looked_up_there(abroad, down):
    record = services.charge(abroad, 1000, "USD", idempotency_key="eu-r")
    get_processor("eu").faults.drop_next(only="refund")
    down["fetch_charge"] = 1
    with pytest.raises(ChargeOutcomeUnknown):
        services.refund(record, 400)
    row = Refund.objects.get()
    assert charges.resolve_refund(row).status == "succeeded"
    assert Charge.objects.get(pk=record.pk).amount_refunded == 400


def test_a_pending_refund_is_looked_up_only_once_stale(shopper, monkeypatch):
    record = services.charge(shopper, 1000, "USD", idempotency_key="r-4")
    SandboxProcessor.refund(get_processor("default"), record.processor_reference, 300, idempotency_key="x")
    row = Refund.objects.create(charge=record, sequence=1, amount=300, idempotency_key="x")
    now = timezone.now()
    monkeypatch.setattr(charges.timezone, "now", lambda: now)
    Refund.objects.filter(pk=row.pk).update(created_at=now - STALE + timedelta(microseconds=1))
    assert charges.resolve_refund(row).status == "pending"  # its caller may still be waiting for the answer
    Refund.objects.filter(pk=row.pk).update(created_at=now - STALE)
    assert charges.resolve_refund(row).status == "succeeded"


def test_due_refunds_are_the_unsettled_ones_whose_time_came(shopper):
    record = services.charge(shopper, 1000, "USD", idempotency_key="r-5")
    now = timezone.now()
    rows = {name: Refund.objects.create(charge=record, sequence=i, amount=10, idempotency_key=name,
                                        status=status, next_check_at=at)
            for i, (name, status, at) in enumerate([
                ("past", "unknown", now - timedelta(seconds=1)), ("unset", "unknown", None),
                ("future", "unknown", now + timedelta(minutes=5)), ("done", "succeeded", None),
                ("young", "pending", now + timedelta(seconds=1))], start=1)}
    assert sorted(r.idempotency_key for r in charges.due_refunds(now)) == ["past", "unset"]
    assert sorted(r.idempotency_key for r in charges.due_refunds()) == ["past", "unset"]
    later = now + timedelta(minutes=10)
    assert sorted(r.idempotency_key for r in charges.due_refunds(later)) == ["future", "past", "unset", "young"]
    assert rows


def test_the_sweeper_counts_and_settles_charges_and_refunds(shopper, down, caplog):
    first = lost(shopper, "sw-1", down, amount=100)
    second = lost(shopper, "sw-2", down, amount=200)
    refunded = [services.charge(shopper, 1000 + amount, "USD", idempotency_key=f"sw-{amount}")
                for amount in (100, 200)]
    for record, amount in zip(refunded, (100, 200)):  # one unsettled refund per charge at a time
        get_processor("default").faults.drop_next(only="refund")
        down["fetch_charge"] = 1
        with pytest.raises(ChargeOutcomeUnknown):
            services.refund(record, amount)
    caplog.set_level(logging.INFO, logger="vault_wallets.charges")
    assert charges.sweep_money(now=timezone.now()) == 0  # nothing due yet
    assert charges.sweep_money(now=timezone.now() + timedelta(minutes=5)) == 4
    assert {c.status for c in Charge.objects.filter(pk__in=[first.pk, second.pk])} == {"captured"}
    assert f"charge {first.uid} settled as captured by sweeper" in messages(caplog)
    assert set(Refund.objects.values_list("status", flat=True)) == {"succeeded"}
    assert [Charge.objects.get(pk=r.pk).amount_refunded for r in refunded] == [100, 200]


def test_a_refund_the_processor_never_made_is_failed_and_raised(shopper):
    record = services.charge(shopper, 1000, "USD", idempotency_key="r-6")
    get_processor("default").faults.fail_next(1, kind="timeout")  # before the call: nothing refunded
    with pytest.raises(p.ProcessorUnavailable) as caught:
        services.refund(record, 300)
    assert not isinstance(caught.value, ChargeOutcomeUnknown)
    row = Refund.objects.get()
    assert (row.status, row.failure_code) == ("failed", "not_processed")
    assert row.failure_message == "The processor has no such refund: nothing was refunded."
    assert Charge.objects.get(pk=record.pk).amount_refunded == 0


def _answering(monkeypatch, name, **fields):
    """The processor does ``name`` for real, then answers with ``fields`` changed (as some do)."""
    real = getattr(SandboxProcessor, name)

    def call(self, *args, **kwargs):
        answer = real(self, *args, **kwargs)
        return p.ChargeResult(**{**{f: getattr(answer, f) for f in ("reference", "status", "amount", "currency",
                                                                     "amount_captured", "amount_refunded",
                                                                     "failure_code", "failure_message")},
                                 **fields})

    monkeypatch.setattr(SandboxProcessor, name, call)


@pytest.mark.parametrize("answered, recorded", [(0, 300), (700, 700), (5000, 1000)])
def test_the_refunded_total_follows_the_processor_within_the_captured_amount(shopper, monkeypatch, answered,
                                                                            recorded):
    record = services.charge(shopper, 1000, "USD", idempotency_key="r-7")
    # 0: a processor that answers without the charge's total; 700: refunds made at the processor
    # directly count too; 5000: never more than was captured.
    _answering(monkeypatch, "refund", amount_refunded=answered)
    assert services.refund(record, 300).amount_refunded == recorded
    assert Charge.objects.get(pk=record.pk).amount_refunded == recorded


def test_settling_a_refund_or_a_capture_signals_the_charge(shopper, django_capture_on_commit_callbacks):
    from vault_wallets.signals import charge_updated

    seen = []

    def listener(sender, charge, **kwargs):
        seen.append((sender, charge.pk, charge.status))

    charge_updated.connect(listener)
    try:
        auth = services.charge(shopper, 1000, "USD", idempotency_key="s-1", capture=False)
        with django_capture_on_commit_callbacks(execute=True):
            services.capture(auth)
        assert seen[-1] == (Charge, auth.pk, "captured")
        with django_capture_on_commit_callbacks(execute=True):
            services.refund(auth, 100)
        assert seen[-1] == (Charge, auth.pk, "refunded")
    finally:
        charge_updated.disconnect(listener)


# -- capture and void ----------------------------------------------------------------------------


def _keys(operation):
    from vault_wallets.sandbox.models import SandboxIdempotencyRecord

    return sorted(SandboxIdempotencyRecord.objects.filter(operation=operation).values_list("key", flat=True))


def test_capture_and_void_send_their_keys(shopper):
    one = services.charge(shopper, 1000, "USD", idempotency_key="c-1", capture=False)
    two = services.charge(shopper, 1000, "USD", idempotency_key="c-2", capture=False)
    assert services.capture(one, 600).amount_captured == 600  # part of it
    assert SandboxCharge.objects.get(sid=one.processor_reference).amount_captured == 600
    services.capture(two, idempotency_key="cap-two")
    assert _keys("capture") == sorted([f"capture-{one.uid}", "cap-two"])
    three = services.charge(shopper, 1000, "USD", idempotency_key="c-3", capture=False)
    four = services.charge(shopper, 1000, "USD", idempotency_key="c-4", capture=False)
    services.void(three)
    services.void(four, idempotency_key="void-four")
    assert _keys("void") == sorted([f"void-{three.uid}", "void-four"])


def test_capture_refusals_say_why(shopper):
    from vault_wallets.exceptions import InvalidAmount, InvalidChargeState

    auth = services.charge(shopper, 1000, "USD", idempotency_key="c-5", capture=False)
    with pytest.raises(InvalidAmount) as caught:
        services.capture(auth, 1001)
    assert str(caught.value) == "The capture amount exceeds the authorized amount."
    services.capture(auth, 1000)
    with pytest.raises(InvalidChargeState) as refused:
        services.capture(auth)
    assert str(refused.value) == "A captured charge cannot be changed this way."


def test_a_capture_whose_answer_was_lost_and_did_not_happen_stays_unknown(shopper):
    auth = services.charge(shopper, 1000, "USD", idempotency_key="c-6", capture=False)
    get_processor("default").faults.fail_next(1, kind="timeout")  # the capture never reached it
    with pytest.raises(ChargeOutcomeUnknown) as caught:
        services.capture(auth)
    assert (caught.value.charge.pk, caught.value.code, caught.value.processor) == (auth.pk, "timeout", "sandbox")
    assert Charge.objects.get(pk=auth.pk).status == "authorized"
    assert SandboxCharge.objects.get().status == "authorized"


def test_capture_and_void_in_the_second_account(abroad):
    one = services.charge(abroad, 1000, "USD", idempotency_key="c-7", capture=False)
    two = services.charge(abroad, 1000, "USD", idempotency_key="c-8", capture=False)
    assert services.capture(one).status == "captured"
    assert services.void(two).status == "voided"
    assert sorted(SandboxCharge.objects.filter(account="eu").values_list("status", flat=True)) == [
        "captured", "voided"]


def test_a_capture_failure_code_is_cut_to_the_column(shopper, monkeypatch):
    auth = services.charge(shopper, 1000, "USD", idempotency_key="c-9", capture=False)
    _answering(monkeypatch, "capture", failure_code="c" * 150)
    assert services.capture(auth).failure_code == "c" * 100
    assert Charge.objects.get(pk=auth.pk).failure_code == "c" * 100


# -- charges: lost answers, bugs after the call, look-ups ---------------------------------------


def _charge_then(monkeypatch, error, before_raise=None):
    """The processor charges for real, then ``error`` is raised instead of its answer."""
    real = SandboxProcessor.charge

    def call(self, request):
        real(self, request)
        if before_raise:
            before_raise(request)
        raise error

    monkeypatch.setattr(SandboxProcessor, "charge", call)


def test_a_lost_charge_answer_is_logged_raised_and_rechecked_later(shopper, monkeypatch, down, settings, caplog,
                                                                   django_capture_on_commit_callbacks):
    from vault_wallets import tasks

    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "CHARGE_RESOLVE_DELAY_SECONDS": 30}
    queued = []
    monkeypatch.setattr(tasks, "enqueue_resolve_charge", lambda pk, countdown=None: queued.append((pk, countdown)))
    _charge_then(monkeypatch, p.ProcessorUnavailable("bad gateway", code="processor_unavailable", http_status=502,
                                                     processor="sandbox"))
    down["find_charge"] = 1
    caplog.set_level(logging.INFO, logger="vault_wallets.charges")
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(ChargeOutcomeUnknown) as caught:
            services.charge(shopper, 1000, "USD", idempotency_key="l-1")
    record = caught.value.charge
    assert (caught.value.code, caught.value.http_status, caught.value.processor) == (
        "processor_unavailable", 502, "sandbox")
    assert f"charge {record.uid}: the processor's answer was lost (processor_unavailable); looking it up" in (
        messages(caplog))
    assert f"charge {record.uid}: look-up failed (connection_error); trying later" in messages(caplog)
    [(pk, countdown)] = queued
    assert pk == record.pk and 28 < countdown <= 30


def test_a_lost_charge_answer_is_rechecked_after_a_second_at_the_soonest(shopper, monkeypatch, down, settings,
                                                                       django_capture_on_commit_callbacks):
    from vault_wallets import tasks

    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "CHARGE_RESOLVE_DELAY_SECONDS": 0}
    queued = []
    monkeypatch.setattr(tasks, "enqueue_resolve_charge", lambda pk, countdown=None: queued.append((pk, countdown)))
    get_processor("default").faults.drop_next(only="charge")
    down["find_charge"] = 1
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(ChargeOutcomeUnknown):
            services.charge(shopper, 1000, "USD", idempotency_key="l-2")
    assert [countdown for _, countdown in queued] == [1]


def test_a_lost_answer_of_a_charge_the_processor_failed_returns_it(shopper, monkeypatch):
    real_find = SandboxProcessor.find_charge

    def found_failed(self, request):
        answer = real_find(self, request)
        return p.ChargeResult(reference=answer.reference, status="failed", amount=answer.amount,
                              currency=answer.currency, failure_code="processing_error",
                              failure_message="The processor could not process it.")

    monkeypatch.setattr(SandboxProcessor, "find_charge", found_failed)
    get_processor("default").faults.drop_next(only="charge")
    record = services.charge(shopper, 1000, "USD", idempotency_key="l-3")
    assert (record.status, record.failure_code) == ("failed", "processing_error")


def test_a_long_lost_answer_code_is_cut_to_the_column(shopper, monkeypatch, down):
    _charge_then(monkeypatch, p.ProcessorUnavailable("gone", code="c" * 150, processor="sandbox"))
    down["find_charge"] = 1
    with pytest.raises(ChargeOutcomeUnknown):
        services.charge(shopper, 1000, "USD", idempotency_key="l-4")
    assert Charge.objects.get().failure_code == "c" * 100


def test_a_bug_after_the_call_marks_only_this_charge_unknown(shopper, neighbour, monkeypatch, down, settings):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "CHARGE_RESOLVE_DELAY_SECONDS": 30}
    other = lost(neighbour, "b-0", down, amount=700)
    other = Charge.objects.get(pk=other.pk)
    answered = {}
    _charge_then(monkeypatch, RuntimeError("bug"), before_raise=lambda request: answered.update(at=timezone.now()))
    started = timezone.now()
    with pytest.raises(RuntimeError):
        services.charge(shopper, 1000, "USD", idempotency_key="b-1")
    row = Charge.objects.get(customer=shopper)
    assert (row.status, row.failure_code, row.failure_message) == ("unknown", "error", "RuntimeError while charging")
    assert started + timedelta(seconds=29) < row.next_check_at <= timezone.now() + timedelta(seconds=30)
    assert row.updated_at >= answered["at"]
    after = Charge.objects.get(pk=other.pk)
    assert (after.status, after.failure_code, after.next_check_at) == ("unknown", other.failure_code,
                                                                        other.next_check_at)


def test_a_bug_on_a_retried_key_backs_off_from_its_attempts(shopper, monkeypatch, settings):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "CHARGE_RESOLVE_DELAY_SECONDS": 30}
    get_processor("default").faults.fail_next(1, kind="timeout")
    with pytest.raises(p.ProcessorUnavailable):
        services.charge(shopper, 1000, "USD", idempotency_key="b-2")
    assert Charge.objects.get().resolve_attempts == 1  # not_processed, after one look-up
    _charge_then(monkeypatch, RuntimeError("bug"))
    started = timezone.now()
    with pytest.raises(RuntimeError):
        services.charge(shopper, 1000, "USD", idempotency_key="b-2")
    row = Charge.objects.get()
    assert started + timedelta(seconds=59) < row.next_check_at <= timezone.now() + timedelta(seconds=60)


@pytest.mark.parametrize("error", [RuntimeError("bug"), p.ProcessorUnavailable("gone", processor="sandbox")])
def test_a_charge_the_webhook_settled_first_is_not_marked_unknown(shopper, monkeypatch, error):
    def webhook_arrives(request):
        sid = SandboxCharge.objects.get().sid
        assert charges.link_charge_event("default", event(sid, idempotency_key=request.idempotency_key))

    _charge_then(monkeypatch, error, before_raise=webhook_arrives)
    try:
        services.charge(shopper, 1000, "USD", idempotency_key="w-1")
    except type(error):
        pass
    assert Charge.objects.get().status == "captured"


def test_resolving_logs_its_source_and_looks_up_in_the_charges_account(abroad, down, caplog):
    record = lost(abroad, "eu-1", down, amount=800)
    caplog.set_level(logging.INFO, logger="vault_wallets.charges")
    assert charges.resolve_charge(record).status == "captured"
    assert f"charge {record.uid} settled as captured by look-up" in messages(caplog)


def test_a_pending_charge_is_looked_up_only_once_stale(shopper, monkeypatch):
    record = Charge.objects.create(customer=shopper, amount=500, currency="USD", status="pending",
                                   idempotency_key="never-sent")
    now = timezone.now()
    monkeypatch.setattr(charges.timezone, "now", lambda: now)
    Charge.objects.filter(pk=record.pk).update(created_at=now - STALE + timedelta(microseconds=1))
    assert charges.resolve_charge(record).status == "pending"  # its caller may still be waiting
    Charge.objects.filter(pk=record.pk).update(created_at=now - STALE)
    assert (charges.resolve_charge(record).status, Charge.objects.get().failure_code) == ("failed", "not_processed")


def test_a_processor_without_look_up_leaves_the_charge_unknown(shopper, monkeypatch, down):
    record = lost(shopper, "u-1", down, amount=600)

    def unsupported(self, request):
        raise p.UnsupportedOperation("no look-up", processor="sandbox")

    monkeypatch.setattr(SandboxProcessor, "find_charge", unsupported)
    assert charges.resolve_charge(record).status == "unknown"  # waits for the webhook, never "not processed"


# -- charge(): validation, keys scoped by customer, defaults -------------------------------------


@pytest.mark.parametrize("amount, ok", [(0, False), (1, True), (-1, False), (True, False), (10.0, False),
                                        ("10", False), (charges.MAX_AMOUNT, True), (charges.MAX_AMOUNT + 1, False)])
def test_amount_bounds(amount, ok):
    from vault_wallets.exceptions import InvalidAmount

    if ok:
        assert charges._validate_amount(amount) == amount
    else:
        with pytest.raises(InvalidAmount):
            charges._validate_amount(amount)


@pytest.mark.parametrize("currency, ok", [("usd", "USD"), ("EUR", "EUR"), ("US", None), ("USDX", None),
                                          ("U1D", None), ("", None), (None, None)])
def test_currency_codes(currency, ok):
    from vault_wallets.exceptions import CurrencyMismatch

    if ok:
        assert charges._validate_currency(currency) == ok
    else:
        with pytest.raises(CurrencyMismatch) as caught:
            charges._validate_currency(currency)
        assert str(caught.value) == "The currency must be a three-letter ISO 4217 code."


@pytest.mark.parametrize("attempts, base, delay", [(0, 30, 30), (1, 30, 30), (2, 30, 60), (3, 30, 120),
                                                   (2, 1800, 3600), (3, 1800, 3600), (2, 1801, 3600)])
def test_look_ups_back_off_to_an_hour(settings, attempts, base, delay):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "CHARGE_RESOLVE_DELAY_SECONDS": base}
    assert charges._resolve_delay(attempts) == timedelta(seconds=delay)


@pytest.mark.parametrize("length, ok", [(0, False), (1, True), (255, True), (256, False)])
def test_idempotency_key_length(shopper, length, ok):
    key = "k" * length
    if ok:
        assert services.charge(shopper, 100, "USD", idempotency_key=key).idempotency_key == key
    else:
        with pytest.raises(ValueError) as caught:
            services.charge(shopper, 100, "USD", idempotency_key=key)
        assert str(caught.value) == "idempotency_key is required (at most 255 characters)"


def test_a_key_is_the_customers_own(shopper, neighbour):
    from vault_wallets.exceptions import IdempotencyConflict

    # (The sandbox, like most processors, keys requests per account: the neighbour's row is written here.)
    theirs = Charge.objects.create(customer=neighbour, amount=500, currency="USD", status="captured",
                                   idempotency_key="order-1", processor_reference="ch_theirs")
    same_amount = services.charge(shopper, 500, "USD", idempotency_key="order-1")
    assert same_amount.pk != theirs.pk and same_amount.customer_id == shopper.pk
    assert SandboxCharge.objects.count() == 1
    with pytest.raises(IdempotencyConflict):
        services.charge(shopper, 501, "USD", idempotency_key="order-1")
    with pytest.raises(IdempotencyConflict):
        services.charge(shopper, 500, "EUR", idempotency_key="order-1")
    assert services.charge(shopper, 500, "usd", idempotency_key="order-1").pk == same_amount.pk


@pytest.mark.parametrize("number, status, code", [("4000000000000002", "declined", "card_declined"),
                                                  ("4000000000001216", "failed", "processing_error")])
def test_a_refused_charge_is_the_answer_to_its_key(customer, card_token, number, status, code):
    services.add_payment_method(customer, card_token(number))
    first = services.charge(customer, 500, "USD", idempotency_key="refused")
    assert (first.status, first.failure_code) == (status, code)
    again = services.charge(customer, 500, "USD", idempotency_key="refused")
    assert (again.pk, again.status) == (first.pk, status)
    assert SandboxCharge.objects.count() == 1
    customer.refresh_from_db()
    assert customer.currency == ""  # nothing was charged: the currency is not fixed yet


def test_a_not_processed_key_charges_again_from_a_clean_row(shopper, settings):
    get_processor("default").faults.fail_next(1, kind="timeout")
    with pytest.raises(p.ProcessorUnavailable):
        services.charge(shopper, 500, "USD", idempotency_key="np")
    record = services.charge(shopper, 500, "USD", idempotency_key="np")
    row = Charge.objects.get()
    assert (row.pk, row.status, row.failure_code, row.failure_message, row.next_check_at) == (
        record.pk, "captured", "", "", None)


def test_the_default_method_is_the_customers_own(customer, neighbour):
    from vault_wallets.exceptions import NoDefaultPaymentMethod

    with pytest.raises(NoDefaultPaymentMethod):
        services.charge(customer, 500, "USD", idempotency_key="nd")
    assert not Charge.objects.filter(customer=customer).exists()


def test_a_method_pending_verification_is_not_charged(customer, card_token):
    from vault_wallets.exceptions import PaymentMethodNotChargeable

    services.add_payment_method(customer, card_token("4000000000000101"))
    with pytest.raises(PaymentMethodNotChargeable):
        services.charge(customer, 500, "USD", idempotency_key="vp")


def test_the_currency_is_fixed_by_the_first_charge_of_this_customer_only(shopper, neighbour):
    from vault_wallets.exceptions import CurrencyMismatch

    services.charge(shopper, 500, "USD", idempotency_key="cur-1")
    shopper.refresh_from_db()
    neighbour.refresh_from_db()
    assert (shopper.currency, neighbour.currency) == ("USD", "")
    with pytest.raises(CurrencyMismatch) as caught:
        services.charge(shopper, 500, "EUR", idempotency_key="cur-2")
    assert str(caught.value) == "The customer's currency is USD."
    assert services.charge(neighbour, 500, "EUR", idempotency_key="cur-3").currency == "EUR"


def test_the_processor_gets_the_whole_request(shopper, monkeypatch):
    seen = []
    real = SandboxProcessor.charge
    monkeypatch.setattr(SandboxProcessor, "charge", lambda self, request: seen.append(request) or real(self, request))
    record = services.charge(shopper, 700, "USD", capture=False, idempotency_key="req-1",
                             reference="r" * 250, description="d" * 250)
    [request] = seen
    assert (request.customer, request.amount, request.currency, request.capture, request.idempotency_key) == (
        shopper.processor_ref, 700, "USD", False, "req-1")
    assert request.method == record.payment_method.processor_ref
    assert (request.reference, request.description) == ("r" * 200, "d" * 200)
    assert (record.reference, record.description) == ("r" * 200, "d" * 200)


def test_a_fresh_pending_row_waits_for_its_caller(shopper, monkeypatch):
    seen = {}
    real = SandboxProcessor.charge

    def look(self, request):
        row = Charge.objects.get(idempotency_key=request.idempotency_key)
        seen["due_in"] = (row.next_check_at - timezone.now()).total_seconds()
        seen["resolved"] = charges.resolve_charge(row).status  # a sweeper now: the caller is still waiting
        return real(self, request)

    monkeypatch.setattr(SandboxProcessor, "charge", look)
    services.charge(shopper, 700, "USD", idempotency_key="fresh")
    assert 55 < seen["due_in"] <= 60 and seen["resolved"] == "pending"


def test_a_refused_request_leaves_no_row_and_touches_no_other(shopper, neighbour, monkeypatch):
    other = Charge.objects.create(customer=neighbour, amount=10, currency="USD", status="pending",
                                  idempotency_key="theirs")

    def refuse(self, request):
        raise p.InvalidRequestError("no", code="invalid_request", processor="sandbox")

    monkeypatch.setattr(SandboxProcessor, "charge", refuse)
    with pytest.raises(p.InvalidRequestError):
        services.charge(shopper, 700, "USD", idempotency_key="refused-req")
    assert list(Charge.objects.values_list("pk", flat=True)) == [other.pk]


def test_a_settled_charge_is_not_settled_again(shopper, caplog):
    record = services.charge(shopper, 700, "USD", idempotency_key="once")
    caplog.set_level(logging.INFO, logger="vault_wallets.charges")
    assert not [m for m in messages(caplog) if "settled as" in m]  # the answer itself is not logged as a look-up
    again = charges._settle(record, p.ChargeResult(reference="ch_other", status="failed", amount=700,
                                                   currency="USD", failure_code="x"))
    assert (again.status, again.processor_reference) == ("captured", record.processor_reference)


def test_a_still_unknown_retry_says_which_processor(shopper, down):
    record = lost(shopper, "again", down, amount=900)
    down["find_charge"] = 1
    with pytest.raises(ChargeOutcomeUnknown) as caught:
        services.charge(shopper, 900, "USD", idempotency_key="again")
    assert (caught.value.charge.pk, caught.value.processor) == (record.pk, "default")


# -- refund(): amounts, keys, the unsettled refund --------------------------------------------------


def test_refund_amount_bounds(shopper):
    from vault_wallets.exceptions import InvalidAmount

    record = services.charge(shopper, 1000, "USD", idempotency_key="rb")
    for bad in (0, -1):
        with pytest.raises(InvalidAmount):
            services.refund(record, bad)
    services.refund(record, 400)
    with pytest.raises(InvalidAmount) as caught:
        services.refund(record, 601)
    assert str(caught.value) == "At most 600 can be refunded."
    assert services.refund(record, 600).amount_refunded == 1000
    with pytest.raises(InvalidAmount):
        services.refund(record)  # nothing left
    assert SandboxCharge.objects.get().amount_refunded == 1000


def test_a_full_refund_refunds_what_is_left(shopper, monkeypatch):
    record = services.charge(shopper, 1000, "USD", idempotency_key="rf")
    services.refund(record, 250)
    seen = []
    real = SandboxProcessor.refund
    monkeypatch.setattr(SandboxProcessor, "refund",
                        lambda self, ref, amount=None, **kw: seen.append(amount) or real(self, ref, amount, **kw))
    assert services.refund(record).amount_refunded == 1000
    assert seen == [None]  # "the rest", as the processor counts it
    assert list(Refund.objects.values_list("sequence", "amount", "refunded_before")) == [(1, 250, 0), (2, 750, 250)]


def test_refund_keys_belong_to_their_charge(shopper, abroad):
    from vault_wallets.exceptions import IdempotencyConflict

    one = services.charge(shopper, 1000, "USD", idempotency_key="rk-1")
    two = services.charge(abroad, 1000, "USD", idempotency_key="rk-2")  # (the sandbox keys per account)
    services.refund(one, 100, idempotency_key="rf-a")
    services.refund(two, 200, idempotency_key="rf-a")  # another charge's key: a new refund
    assert Charge.objects.get(pk=two.pk).amount_refunded == 200
    with pytest.raises(IdempotencyConflict) as caught:
        services.refund(one, 150, idempotency_key="rf-a")
    assert str(caught.value) == "This idempotency key was already used for a different refund."
    assert services.refund(one, idempotency_key="rf-a").amount_refunded == 100  # the earlier refund is the answer
    assert services.refund(one, 100, idempotency_key="rf-a").amount_refunded == 100
    assert Refund.objects.filter(charge=one).count() == 1


def test_a_second_refund_lost_and_never_made_is_not_taken_for_the_first(shopper, down):
    record = services.charge(shopper, 1000, "USD", idempotency_key="rs")
    services.refund(record, 300)
    get_processor("default").faults.fail_next(1, kind="timeout")
    with pytest.raises(p.ProcessorUnavailable):
        services.refund(record, 200)
    assert list(Refund.objects.values_list("sequence", "status")) == [(1, "succeeded"), (2, "failed")]
    assert Charge.objects.get(pk=record.pk).amount_refunded == 300


def test_an_unsettled_refund_answers_retries(shopper, down):
    from vault_wallets.exceptions import InvalidChargeState

    record = services.charge(shopper, 1000, "USD", idempotency_key="ru")
    get_processor("default").faults.drop_next(only="refund")
    down["fetch_charge"] = 1
    with pytest.raises(ChargeOutcomeUnknown):
        services.refund(record, 300)
    down["fetch_charge"] = 1
    with pytest.raises(InvalidChargeState) as refused:
        services.refund(record, 100)
    assert str(refused.value) == "A refund of 300 is still waiting for its outcome."
    with pytest.raises(ChargeOutcomeUnknown) as caught:
        services.refund(record)
    row = Refund.objects.get()
    assert (caught.value.refund.pk, caught.value.charge.pk, caught.value.processor) == (row.pk, record.pk, "default")
    assert services.refund(record).amount_refunded == 300


def test_a_refused_refund_leaves_no_row_and_a_bug_leaves_it_unknown(shopper, neighbour, monkeypatch):
    theirs = services.charge(neighbour, 1000, "USD", idempotency_key="rr-0")
    waiting = Refund.objects.create(charge=theirs, sequence=1, amount=10, idempotency_key="w")
    record = services.charge(shopper, 1000, "USD", idempotency_key="rr")
    SandboxProcessor.refund(get_processor("default"), record.processor_reference, 900, idempotency_key="outside")
    with pytest.raises(p.InvalidRequestError):
        services.refund(record, 300)  # the processor has only 100 left
    assert not Refund.objects.filter(charge=record).exists()
    assert Refund.objects.get(pk=waiting.pk).status == "pending"

    def bug(self, *args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(SandboxProcessor, "refund", bug)
    with pytest.raises(RuntimeError):
        services.refund(record, 50)
    assert Refund.objects.get(charge=record).status == "unknown"
    assert Refund.objects.get(pk=waiting.pk).status == "pending"


def test_a_refund_row_is_due_once_its_caller_may_have_died(shopper, monkeypatch):
    seen = {}
    real = SandboxProcessor.refund

    def look(self, *args, **kwargs):
        row = Refund.objects.get()
        seen["due_in"] = (row.next_check_at - timezone.now()).total_seconds()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SandboxProcessor, "refund", look)
    services.refund(services.charge(shopper, 1000, "USD", idempotency_key="rd"), 100)
    assert 55 < seen["due_in"] <= 60


# -- look-ups: bookkeeping, the settle time on both sides, a webhook racing the look-up ------------


def test_each_failed_look_up_backs_off_and_touches_only_its_charge(shopper, neighbour, down, settings):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "CHARGE_RESOLVE_DELAY_SECONDS": 30}
    theirs = Charge.objects.get(pk=lost(neighbour, "bo-0", down, amount=300).pk)
    record = lost(shopper, "bo-1", down, amount=400)
    assert Charge.objects.get(pk=record.pk).resolve_attempts == 1
    down["find_charge"] = 1
    started = timezone.now()
    again = charges.resolve_charge(record)
    assert (again.status, again.resolve_attempts) == ("unknown", 2)
    assert started + timedelta(seconds=59) < again.next_check_at <= timezone.now() + timedelta(seconds=60)
    after = Charge.objects.get(pk=theirs.pk)
    assert (after.resolve_attempts, after.next_check_at) == (theirs.resolve_attempts, theirs.next_check_at)
    # A pending charge whose caller died, and whose look-up fails: unknown from now on.
    stale = Charge.objects.create(customer=shopper, amount=500, currency="USD", status="pending",
                                  idempotency_key="died")
    Charge.objects.filter(pk=stale.pk).update(created_at=timezone.now() - STALE)
    down["find_charge"] = 1
    assert (charges.resolve_charge(stale).status, Charge.objects.get(pk=stale.pk).status) == ("unknown", "unknown")


@pytest.mark.parametrize("age, status", [(timedelta(seconds=1), "failed"),
                                         (timedelta(seconds=1) - timedelta(microseconds=1), "unknown")])
def test_not_processed_only_once_the_processor_settle_time_passed(shopper, neighbour, monkeypatch, age, status,
                                                                  django_capture_on_commit_callbacks):
    from vault_wallets.signals import charge_updated

    theirs = Charge.objects.create(customer=neighbour, amount=10, currency="USD", status="unknown",
                                   idempotency_key="theirs")
    record = Charge.objects.create(customer=shopper, amount=500, currency="USD", status="unknown",
                                   idempotency_key="never-made", next_check_at=timezone.now())
    monkeypatch.setattr(SandboxProcessor, "charge_lookup_settle_seconds", 1.0)
    now = timezone.now()
    monkeypatch.setattr(charges.timezone, "now", lambda: now)
    Charge.objects.filter(pk=record.pk).update(created_at=now - age, updated_at=now - age)
    seen = []

    def listener(sender, charge, **kwargs):
        seen.append((sender, charge.pk, charge.status))

    charge_updated.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            row = charges.resolve_charge(record)
    finally:
        charge_updated.disconnect(listener)
    assert (row.status, row.resolve_attempts, row.updated_at) == (status, 1, now)
    if status == "failed":
        assert (row.failure_code, row.failure_message, row.next_check_at) == (
            "not_processed", "The processor has no such charge: nothing was charged.", None)
        assert seen == [(Charge, record.pk, "failed")]
    assert Charge.objects.get(pk=theirs.pk).status == "unknown"


def test_a_charge_the_webhook_settles_during_a_lagging_look_up_stays_settled(shopper, down, monkeypatch):
    record = lost(shopper, "lag-1", down, amount=800)
    real = SandboxProcessor.find_charge

    def lagging(self, request):  # the processor's search lags: the webhook has the charge, the look-up not
        charges._settle(Charge.objects.get(pk=record.pk), real(self, request), source="webhook")
        return None

    monkeypatch.setattr(SandboxProcessor, "find_charge", lagging)
    assert charges.resolve_charge(record).status == "captured"
    assert Charge.objects.get(pk=record.pk).status == "captured"


def test_a_refund_look_up_backs_off_and_counts_refunds_made_elsewhere(shopper, down, settings):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "CHARGE_RESOLVE_DELAY_SECONDS": 30}
    record = services.charge(shopper, 1000, "USD", idempotency_key="rl")
    get_processor("default").faults.drop_next(only="refund")
    down["fetch_charge"] = 1
    started = timezone.now()
    with pytest.raises(ChargeOutcomeUnknown):
        services.refund(record, 300)
    row = Refund.objects.get()
    assert (row.status, row.resolve_attempts) == ("unknown", 1)
    assert started + timedelta(seconds=29) < row.next_check_at <= timezone.now() + timedelta(seconds=30)
    down["fetch_charge"] = 1
    assert charges.resolve_refund(row).resolve_attempts == 2
    # Meanwhile staff refunded 200 at the processor directly: the processor's total is the truth.
    SandboxProcessor.refund(get_processor("default"), record.processor_reference, 200, idempotency_key="desk")
    assert charges.resolve_refund(row).status == "succeeded"
    assert Charge.objects.get(pk=record.pk).amount_refunded == 500


@pytest.mark.parametrize("age, status", [(timedelta(seconds=1), "failed"),
                                         (timedelta(seconds=1) - timedelta(microseconds=1), "unknown")])
def test_a_refund_is_not_processed_only_once_the_settle_time_passed(shopper, monkeypatch, age, status):
    record = services.charge(shopper, 1000, "USD", idempotency_key="rn")
    row = Refund.objects.create(charge=record, sequence=1, amount=300, idempotency_key="never", status="unknown")
    monkeypatch.setattr(SandboxProcessor, "charge_lookup_settle_seconds", 1.0)
    now = timezone.now()
    monkeypatch.setattr(charges.timezone, "now", lambda: now)
    Refund.objects.filter(pk=row.pk).update(created_at=now - age)
    assert charges.resolve_refund(row).status == status


def test_a_refund_the_sweeper_settles_during_a_failed_look_up_stays_settled(shopper, monkeypatch):
    record = services.charge(shopper, 1000, "USD", idempotency_key="rw")
    SandboxProcessor.refund(get_processor("default"), record.processor_reference, 300, idempotency_key="x")
    row = Refund.objects.create(charge=record, sequence=1, amount=300, idempotency_key="x", status="unknown")
    real = SandboxProcessor.fetch_charge

    def settled_meanwhile(self, reference):
        charges._settle_refund(row, real(self, reference))
        raise p.ProcessorUnavailable("down", code="connection_error", processor="sandbox")

    monkeypatch.setattr(SandboxProcessor, "fetch_charge", settled_meanwhile)
    assert charges.resolve_refund(row).status == "succeeded"


def test_refund_edges(shopper):
    from vault_wallets.exceptions import InvalidChargeState

    auth = services.charge(shopper, 1000, "USD", idempotency_key="re-1", capture=False)
    with pytest.raises(InvalidChargeState) as caught:
        services.refund(auth, 100)
    assert str(caught.value) == "A authorized charge cannot be changed this way."
    record = services.charge(shopper, 1000, "USD", idempotency_key="re-2")
    assert services.refund(record, 1).amount_refunded == 1  # the smallest refund
    assert _keys("refund") == [f"refund-{record.uid}-1"]  # the processor got the refund's own key


def test_a_pending_refund_whose_caller_died_and_whose_look_up_fails_becomes_unknown(shopper, down):
    record = services.charge(shopper, 1000, "USD", idempotency_key="rp")
    row = Refund.objects.create(charge=record, sequence=1, amount=300, idempotency_key="died")
    _aged(row)
    down["fetch_charge"] = 1
    assert charges.resolve_refund(row).status == "unknown"
    assert charges.due_refunds(timezone.now() + timedelta(hours=2)).get().pk == row.pk


def test_a_charge_inside_the_callers_transaction_is_logged(shopper, caplog):
    caplog.set_level(logging.DEBUG, logger="vault_wallets.charges")
    services.charge(shopper, 100, "USD", idempotency_key="in-atomic")  # (a django_db test runs in a transaction)
    assert "charge in-atomic called inside a transaction: the pending row commits with it" in messages(caplog)


@pytest.mark.django_db(transaction=True)
def test_a_charge_outside_a_transaction_is_not_logged_as_inside(shopper, caplog):
    caplog.set_level(logging.DEBUG, logger="vault_wallets.charges")
    services.charge(shopper, 100, "USD", idempotency_key="outside")
    assert not [m for m in messages(caplog) if "inside a transaction" in m]


def test_a_bug_after_a_refund_the_sweeper_already_settled_leaves_it_settled(shopper, monkeypatch):
    record = services.charge(shopper, 1000, "USD", idempotency_key="rbug")
    real = SandboxProcessor.refund

    def refund_settled_then_bug(self, *args, **kwargs):
        real(self, *args, **kwargs)
        row = Refund.objects.get()
        _aged(row)
        assert charges.resolve_refund(row).status == "succeeded"  # a sweeper, while the call was slow
        raise RuntimeError("bug")

    monkeypatch.setattr(SandboxProcessor, "refund", refund_settled_then_bug)
    with pytest.raises(RuntimeError):
        services.refund(record, 300)
    assert Refund.objects.get().status == "succeeded"
    assert Charge.objects.get(pk=record.pk).amount_refunded == 300


def test_a_charge_event_of_the_second_account_is_fetched_there(abroad, down):
    named = lost(abroad, "eu-ev", down, amount=1900)
    down["find_charge"] = -1
    found = charges.link_charge_event("eu", event(sid_of(named), idempotency_key="eu-ev"))
    assert (found.pk, found.status) == (named.pk, "captured")


def test_an_answer_after_a_not_processed_look_up_corrects_it(shopper, monkeypatch):
    real = SandboxProcessor.charge

    def slow(self, request):  # the call takes so long that a sweeper looks it up before it is made
        row = Charge.objects.get(idempotency_key=request.idempotency_key)
        Charge.objects.filter(pk=row.pk).update(created_at=timezone.now() - STALE)
        assert charges.resolve_charge(row).failure_code == "not_processed"
        return real(self, request)

    monkeypatch.setattr(SandboxProcessor, "charge", slow)
    record = services.charge(shopper, 1000, "USD", idempotency_key="late-answer")
    assert (record.status, record.failure_code) == ("captured", "")
    assert Charge.objects.get().status == "captured"


def test_a_failed_charge_is_not_settled_again(customer, card_token):
    services.add_payment_method(customer, card_token("4000000000001216"))
    record = services.charge(customer, 500, "USD", idempotency_key="failed-once")
    assert (record.status, record.failure_code) == ("failed", "processing_error")
    again = charges._settle(record, p.ChargeResult(reference="ch_x", status="captured", amount=500, currency="USD",
                                                   amount_captured=500))
    assert (again.status, again.failure_code) == ("failed", "processing_error")


def test_the_first_settled_charge_fixes_the_currency(shopper):
    services.charge(shopper, 500, "USD", idempotency_key="cur-a")
    # A charge in another currency that was written before the first one settled (two first charges at once).
    other = Charge.objects.create(customer=shopper, amount=500, currency="EUR", status="pending",
                                  idempotency_key="cur-b")
    charges._settle(other, p.ChargeResult(reference="ch_eur", status="captured", amount=500, currency="EUR",
                                          amount_captured=500))
    shopper.refresh_from_db()
    assert shopper.currency == "USD"


def test_a_charge_failure_code_is_cut_to_the_column(shopper, monkeypatch):
    _answering(monkeypatch, "charge", failure_code="c" * 150)
    assert services.charge(shopper, 500, "USD", idempotency_key="long-code").failure_code == "c" * 100


def test_a_charge_the_webhook_settles_during_a_failed_look_up_stays_settled(shopper, down, monkeypatch):
    record = lost(shopper, "lag-2", down, amount=850)
    real = SandboxProcessor.find_charge

    def settled_then_down(self, request):
        charges._settle(Charge.objects.get(pk=record.pk), real(self, request), source="webhook")
        raise p.ProcessorUnavailable("down", code="connection_error", processor="sandbox")

    monkeypatch.setattr(SandboxProcessor, "find_charge", settled_then_down)
    assert charges.resolve_charge(record).status == "captured"


def test_a_charge_without_reference_or_description_sends_none(shopper, monkeypatch):
    seen = []
    real = SandboxProcessor.charge
    monkeypatch.setattr(SandboxProcessor, "charge", lambda self, request: seen.append(request) or real(self, request))
    record = services.charge(shopper, 300, "USD", idempotency_key="bare")
    assert (record.reference, record.description, seen[0].reference, seen[0].description) == ("", "", "", "")


def test_a_failed_charges_key_is_answered_without_calling_the_processor(customer, card_token, monkeypatch):
    services.add_payment_method(customer, card_token("4000000000001216"))
    first = services.charge(customer, 500, "USD", idempotency_key="failed-key")
    calls = []
    real = SandboxProcessor.charge
    monkeypatch.setattr(SandboxProcessor, "charge", lambda self, request: calls.append(1) or real(self, request))
    assert services.charge(customer, 500, "USD", idempotency_key="failed-key").pk == first.pk
    assert calls == []


def test_a_not_processed_key_is_sent_again_from_a_clean_pending_row(shopper, monkeypatch):
    get_processor("default").faults.fail_next(1, kind="timeout")
    with pytest.raises(p.ProcessorUnavailable):
        services.charge(shopper, 500, "USD", idempotency_key="np-clean")
    seen = []
    real = SandboxProcessor.charge

    def look(self, request):
        seen.append(Charge.objects.values_list("status", "failure_code", "failure_message").get())
        return real(self, request)

    monkeypatch.setattr(SandboxProcessor, "charge", look)
    services.charge(shopper, 500, "USD", idempotency_key="np-clean")
    assert seen == [("pending", "", "")]


def test_no_method_named_charges_the_default_one(customer, card_token):
    first, _ = services.add_payment_method(customer, card_token())
    second, _ = services.add_payment_method(customer, card_token("5555555555554444"))
    for method, key in ((first, "d-1"), (second, "d-2")):
        services.set_default_payment_method(customer, method.uid)
        assert services.charge(customer, 100, "USD", idempotency_key=key).payment_method_id == method.pk


def test_a_settled_charge_signals_its_listeners_after_commit(shopper, down, django_capture_on_commit_callbacks):
    """``charge_updated`` tells the shop a charge settled (fulfil the order): on commit, not before,
    with that charge in its settled state — for a charge answered at once and for one settled later
    by a look-up."""
    from vault_wallets.signals import charge_updated

    seen = []

    def listener(sender, charge, **kwargs):
        seen.append((sender, charge.pk, Charge.objects.get(pk=charge.pk).status, charge.status))

    charge_updated.connect(listener)
    try:
        with django_capture_on_commit_callbacks() as on_commit:
            paid = services.charge(shopper, 1200, "USD", idempotency_key="sig-1")
        assert seen == []  # not before the commit
        for callback in on_commit:
            callback()
        assert seen == [(Charge, paid.pk, "captured", "captured")]
        with django_capture_on_commit_callbacks(execute=True):
            held = services.charge(shopper, 800, "USD", idempotency_key="sig-2", capture=False)
        assert seen[1:] == [(Charge, held.pk, "authorized", "authorized")]
        unknown = lost(shopper, "sig-3", down)
        del seen[:]
        with django_capture_on_commit_callbacks(execute=True):
            charges.resolve_charge(unknown)
        assert seen == [(Charge, unknown.pk, "captured", "captured")]
    finally:
        charge_updated.disconnect(listener)


def test_a_customer_whose_only_card_closed_has_no_default_to_charge(customer, card_token, sandbox):
    """With no method named, only the default is charged: once the customer's only card is closed
    there is none, and the answer says so (the shopper must pick or add a method), not that some
    card cannot be charged; nothing is recorded."""
    from vault_wallets.exceptions import NoDefaultPaymentMethod
    from vault_wallets.models import SavedPaymentMethod
    from vault_wallets.services import events

    card, _ = services.add_payment_method(customer, card_token())
    sandbox.network_update(card.processor_ref.method_id, closed=True)
    events.refresh_payment_method(card)
    card.refresh_from_db()
    assert card.status == p.METHOD_CLOSED and not card.is_default
    assert list(SavedPaymentMethod.objects.visible().filter(customer=customer)) == [card]
    with pytest.raises(NoDefaultPaymentMethod):
        services.charge(customer, 500, "USD", idempotency_key="only-closed")
    assert not Charge.objects.filter(customer=customer).exists()
