"""Celery tasks (``shared_task``: the shop's Celery app runs them).

Recommended worker settings (see "Running Celery in production"): Redis broker,
``task_acks_late = True``, ``task_reject_on_worker_lost = True``, ``worker_prefetch_multiplier = 1``,
and the beat schedule below so nothing is lost::

    from vault_wallets.beat import BEAT_SCHEDULE   # importable from settings.py
    CELERY_BEAT_SCHEDULE = {**BEAT_SCHEDULE, **your_schedule}
"""

from __future__ import annotations

import logging

from celery import shared_task

from .beat import BEAT_SCHEDULE  # noqa: F401  (re-exported)
from .services import events

logger = logging.getLogger("vault_wallets.tasks")

@shared_task(bind=True, name="vault_wallets.tasks.process_webhook_event", acks_late=True,
             reject_on_worker_lost=True, ignore_result=True, max_retries=None)
def process_webhook_event(self, event_pk: int, force: bool = False) -> str:
    """Process one stored webhook event (idempotent; retried with backoff on transient failures)."""
    try:
        return events.process_event(event_pk, force=force)
    except events.RetryLater as later:
        raise self.retry(countdown=later.countdown, args=[event_pk], kwargs={"force": False}) from None


@shared_task(bind=True, name="vault_wallets.tasks.refresh_payment_methods", acks_late=True,
             reject_on_worker_lost=True, ignore_result=True, max_retries=8)
def refresh_payment_methods(self, event_pk: int | None, method_pks: list[int]) -> int:
    """Re-fetch a chunk of saved methods named by one large notification of change."""
    from .processors.base import ProcessorUnavailable

    try:
        return events.refresh_chunk(event_pk, method_pks)
    except ProcessorUnavailable as exc:
        raise self.retry(countdown=events.backoff_seconds(self.request.retries + 1), exc=exc) from None


@shared_task(name="vault_wallets.tasks.sweep_webhook_events", ignore_result=True)
def sweep_webhook_events() -> int:
    """Re-enqueue events left unprocessed (broker down at receipt, worker killed, retries lost)."""
    return len(events.sweep())


def _send(task, *args) -> bool:
    """Publish without blocking the caller when the broker is down: the sweeper catches up."""
    try:
        task.apply_async(args=list(args), retry=False)
        return True
    except Exception as exc:  # the broker being unreachable must not fail the webhook request
        logger.warning("could not enqueue %s%r (%s); the sweeper will pick it up", task.name, args,
                       type(exc).__name__)
        return False


def enqueue_event(event_pk: int) -> bool:
    return _send(process_webhook_event, event_pk)


def enqueue_refresh_chunk(event_pk: int | None, method_pks: list[int]) -> bool:
    return _send(refresh_payment_methods, event_pk, method_pks)
