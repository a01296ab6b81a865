"""Erasure through to the processor (with outages), and expiring cards."""

from __future__ import annotations

from datetime import date

import pytest
from django.core.management import call_command
from django.utils import timezone

from vault_wallets import services
from vault_wallets.beat import BEAT_SCHEDULE
from vault_wallets.models import (
    Address,
    Charge,
    Customer,
    ErasureRequest,
    ExpiryNotice,
    PaymentMethodChange,
    SavedPaymentMethod,
)
from vault_wallets.sandbox.models import SandboxCustomer, SandboxMethod
from vault_wallets.services import erasure, expiry
from vault_wallets.signals import payment_method_expiring

pytestmark = pytest.mark.django_db


@pytest.fixture
def wallet(customer, card_token):
    first = services.add_payment_method(customer, card_token(), label="work card")[0]
    second = services.add_payment_method(customer, card_token("5555555555554444"))[0]
    services.create_address(customer, line1="1 Main St", city="Springfield", country="US")
    return first, second


def test_erase_customer_with_charges_keeps_anonymized_charges(customer, wallet, admin_user):
    first, second = wallet
    charge = services.charge(customer, 1999, "USD", idempotency_key="order-1")
    sandbox_customer = customer.processor_customer_id
    result = services.erase_customer(customer, requested_by=admin_user, reason="GDPR request #7")
    assert result.status == ErasureRequest.COMPLETED and result.charges_kept == 1
    assert result.requested_by_name == "admin" and result.completed_at is not None
    assert {(o["object"], o["outcome"]) for o in result.outcomes} >= {
        ("payment_method", "deleted at the processor"), ("customer", "deleted at the processor")}
    # At the processor: gone.
    assert SandboxCustomer.objects.get(sid=sandbox_customer).deleted
    assert set(SandboxMethod.objects.filter(customer__sid=sandbox_customer).values_list("state", flat=True)) == {
        "deleted"}
    # Locally: no personal data, charges kept on an anonymous holder.
    row = Customer.objects.get(pk=customer.pk)
    assert (row.name, row.email, row.phone, row.user_id, row.processor_customer_id) == ("", "", "", None, "")
    assert row.reference_id == f"erased-{customer.uid}" and row.erased_at is not None
    assert not Address.objects.filter(customer=row).exists()
    assert not PaymentMethodChange.objects.filter(payment_method__customer=row).exists()
    for m in SavedPaymentMethod.objects.filter(customer=row):
        assert (m.status, m.processor_token, m.holder_name, m.label) == ("removed", "", "", "")
    kept = Charge.objects.get(pk=charge.pk)
    assert (kept.amount, kept.customer_id, kept.payment_method.last4) == (1999, row.pk, "4242")
    # The user can become a fresh customer; the erased one is not relinked.
    fresh = services.get_or_create_customer(customer.user if customer.user_id else admin_user)
    assert fresh.pk != row.pk


def test_erase_customer_without_charges_removes_the_row(customer, wallet):
    result = services.erase_customer(customer)
    assert result.status == ErasureRequest.COMPLETED
    assert not Customer.objects.filter(pk=customer.pk).exists()
    assert ErasureRequest.objects.get(pk=result.pk).customer_uid == customer.uid  # the audit record stays


def test_processor_outage_leaves_erasure_pending_then_the_sweeper_finishes(customer, wallet, sandbox):
    first, second = wallet
    sandbox.faults.fail_next(1)  # the first method delete fails
    pending = services.erase_customer(customer)
    assert pending.status == ErasureRequest.PENDING and "503" in pending.last_error
    assert pending.next_attempt_at > timezone.now()
    assert pending.outcomes[-1]["outcome"] == "processor error"
    # Personal data that the processor calls do not need is already gone; the tokens are kept for the retry.
    row = Customer.objects.get(pk=customer.pk)
    assert row.email == "" and row.erased_at is None and row.processor_customer_id
    assert SavedPaymentMethod.objects.get(pk=second.pk).processor_token
    # Not due yet: the sweeper leaves it alone.
    assert erasure.retry_due_erasures() == []
    ErasureRequest.objects.filter(pk=pending.pk).update(next_attempt_at=timezone.now())
    assert erasure.retry_due_erasures() == [pending.pk]
    done = ErasureRequest.objects.get(pk=pending.pk)
    assert done.status == ErasureRequest.COMPLETED and done.attempts == 2
    assert not Customer.objects.filter(pk=customer.pk).exists()
    assert SandboxMethod.objects.filter(state="active").count() == 0


def test_calling_erase_again_resumes_the_pending_request(customer, wallet, sandbox):
    sandbox.faults.fail_next(3)
    first = services.erase_customer(customer)
    second = services.erase_customer(Customer.objects.get(pk=customer.pk))
    assert first.pk == second.pk and ErasureRequest.objects.count() == 1


def test_beat_schedule_ships_the_new_periodic_tasks():
    tasks = {entry["task"] for entry in BEAT_SCHEDULE.values()}
    assert {"vault_wallets.tasks.sweep_erasures", "vault_wallets.tasks.check_expiring_payment_methods"} <= tasks


# -- expiring cards ------------------------------------------------------------------------


def test_expiring_within_months():
    pairs = expiry._months_ending_between(date(2026, 12, 1), date(2026, 12, 31))
    assert pairs == [(2026, 12)]
    assert expiry._months_ending_between(date(2026, 12, 1), date(2027, 1, 30)) == [(2026, 12)]
    assert expiry._months_ending_between(date(2026, 12, 1), date(2027, 1, 31)) == [(2026, 12), (2027, 1)]


def test_expiring_signal_once_per_method_and_window(customer, card_token):
    today = timezone.localdate()
    soon = services.add_payment_method(customer, card_token("5555555555554444", today.month, today.year))[0]
    services.add_payment_method(customer, card_token())  # 12/2034: not expiring
    received = []

    def listener(sender, payment_method, window_days, expires_on, days_left, **kwargs):
        received.append((payment_method.uid, window_days, days_left))

    payment_method_expiring.connect(listener)
    try:
        call_command("vault_expiring", "--within-days", "30")
        call_command("vault_expiring", "--within-days", "30")  # a re-run sends nothing new
        call_command("vault_expiring", "--within-days", "60")  # another window: once more
    finally:
        payment_method_expiring.disconnect(listener)
    assert [(uid, window) for uid, window, _ in received] == [(soon.uid, 30), (soon.uid, 60)]
    assert ExpiryNotice.objects.count() == 2
    # A new expiry (e.g. from a notification of change) is a new notice.
    SavedPaymentMethod.objects.filter(pk=soon.pk).update(exp_year=today.year + 1)
    assert expiry.notify_expiring(400) == 1


def test_past_expiry_becomes_expired_and_the_default_moves(customer, card_token):
    old = services.add_payment_method(customer, card_token())[0]
    other = services.add_payment_method(customer, card_token("5555555555554444"))[0]
    SavedPaymentMethod.objects.filter(pk=old.pk).update(exp_month=1, exp_year=2020)
    assert SavedPaymentMethod.objects.get(pk=old.pk).is_default
    result = expiry.run_expiry_checks()
    assert result["expired"] == 1
    expired = SavedPaymentMethod.objects.get(pk=old.pk)
    assert expired.status == "expired" and not expired.is_default
    assert SavedPaymentMethod.objects.get(pk=other.pk).is_default
    assert expired.changes.get().source == "expired"
    assert expiry.run_expiry_checks()["expired"] == 0
