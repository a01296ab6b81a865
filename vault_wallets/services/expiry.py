"""Expiring saved cards: which cards expire within N days, the ``payment_method_expiring``
signal (once per method, expiry date and window) and ``expired`` status for cards past expiry.

A card is valid through the last day of its expiry month.
"""

from __future__ import annotations

import calendar
import logging
from datetime import date, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ..models import Customer, ExpiryNotice, PaymentMethodChange, SavedPaymentMethod
from ..processors import base as p
from ..signals import payment_method_expiring, payment_method_updated
from .payment_methods import _tell_processor_default, promote_next_default

logger = logging.getLogger("vault_wallets.services")

#: The windows the periodic task notifies for (days before the last valid day).
DEFAULT_WINDOWS = (30,)


def last_valid_day(exp_year: int, exp_month: int) -> date:
    return date(exp_year, exp_month, calendar.monthrange(exp_year, exp_month)[1])


def _months_ending_between(start: date, end: date) -> list[tuple[int, int]]:
    """(year, month) pairs whose last day lies in [start, end]."""
    months: list[tuple[int, int]] = []
    year, month = start.year, start.month
    while True:
        last = last_valid_day(year, month)
        if last > end:
            return months
        if last >= start:
            months.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def expiring_within_q(days: int, today: date | None = None) -> Q:
    """A filter for saved methods whose card expires within ``days`` days (not yet expired)."""
    today = today or timezone.localdate()
    pairs = _months_ending_between(today, today + timedelta(days=days))
    q = Q(pk__in=[])
    for year, month in pairs:
        q |= Q(exp_year=year, exp_month=month)
    return q


def expired_q(today: date | None = None) -> Q:
    """Cards whose last valid day is before ``today``."""
    today = today or timezone.localdate()
    return Q(exp_year__lt=today.year) | Q(exp_year=today.year, exp_month__lt=today.month)


def notify_expiring(within_days: int, today: date | None = None) -> int:
    """Send ``payment_method_expiring`` for active cards expiring within ``within_days``;
    once per method, expiry and window (re-runs send nothing new).  Returns how many were sent."""
    today = today or timezone.localdate()
    candidates = (SavedPaymentMethod.objects.for_display().select_related("customer")
                  .filter(status=p.METHOD_ACTIVE, method_type=p.METHOD_CARD)
                  .filter(expiring_within_q(within_days, today))
                  .exclude(Exists(ExpiryNotice.objects.filter(
                      payment_method=OuterRef("pk"), window_days=within_days,
                      exp_year=OuterRef("exp_year"), exp_month=OuterRef("exp_month")))))
    sent = 0
    for method in candidates.iterator(chunk_size=500):
        try:
            with transaction.atomic():
                ExpiryNotice.objects.create(payment_method=method, window_days=within_days,
                                            exp_year=method.exp_year, exp_month=method.exp_month)
        except IntegrityError:
            continue  # another run sent it
        expires_on = last_valid_day(method.exp_year, method.exp_month)
        payment_method_expiring.send(sender=SavedPaymentMethod, payment_method=method, window_days=within_days,
                                     expires_on=expires_on, days_left=(expires_on - today).days)
        sent += 1
    return sent


def expire_past_due(today: date | None = None) -> int:
    """Active cards past their expiry become ``expired`` (history kept; the default moves on)."""
    today = today or timezone.localdate()
    count = 0
    for method in (SavedPaymentMethod.objects.for_display().filter(status=p.METHOD_ACTIVE, method_type=p.METHOD_CARD)
                   .filter(expired_q(today)).iterator(chunk_size=500)):
        promoted = None
        with transaction.atomic():
            customer = Customer.objects.select_for_update().get(pk=method.customer_id)
            updated = SavedPaymentMethod.objects.filter(pk=method.pk, status=p.METHOD_ACTIVE).update(
                status=p.METHOD_EXPIRED, is_default=False)
            if not updated:
                continue
            change = PaymentMethodChange.objects.create(payment_method=method, source="expired",
                                               before={"status": p.METHOD_ACTIVE},
                                               after={"status": p.METHOD_EXPIRED})
            if method.is_default:
                promoted = promote_next_default(customer)
        count += 1
        method.status = p.METHOD_EXPIRED
        if promoted is not None:
            _tell_processor_default(customer, promoted)
        payment_method_updated.send(sender=SavedPaymentMethod, payment_method=method, changes=change,
                                    promoted=promoted)
    return count


def run_expiry_checks(windows=None, today: date | None = None) -> dict:
    """What the periodic task does: expire past-due cards, then notify each window."""
    windows = tuple(windows or DEFAULT_WINDOWS)
    result = {"expired": expire_past_due(today)}
    for days in windows:
        result[f"notified_{days}"] = notify_expiring(days, today)
    return result
