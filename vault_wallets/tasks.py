"""Celery tasks (``shared_task``: the shop's Celery app runs them).

Recommended worker settings (see "Running Celery in production"): Redis broker,
``task_acks_late = True``, ``task_reject_on_worker_lost = True``, ``worker_prefetch_multiplier = 1``,
and the beat schedule below so nothing is lost::

    from vault_wallets.beat import BEAT_SCHEDULE   # importable from settings.py
    CELERY_BEAT_SCHEDULE = {**BEAT_SCHEDULE, **your_schedule}
"""

from __future__ import annotations

import logging
from typing import Any

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


@shared_task(name="vault_wallets.tasks.process_webhook_events", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def process_webhook_events(event_pks: list[int]) -> int:
    """Process stored webhook events one after the other: what the relay publishes, one message
    per batch of events received together.  An event to retry gets its own delayed
    ``process_webhook_event`` (and is due for the sweeper anyway); one that fails otherwise does
    not stop the others (it stays stored and due for the sweeper).  Returns how many finished."""
    done = 0
    for pk in event_pks:
        try:
            events.process_event(pk)
            done += 1
        except events.RetryLater as later:
            _publish(process_webhook_event, (pk,), countdown=later.countdown)
        except Exception:
            logger.exception("processing webhook event %s failed; the sweeper will retry it", pk)
    return done


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
    """Re-enqueue events and NOC chunks left unprocessed (broker down at receipt, worker killed,
    retries lost); nothing a live worker holds."""
    return len(events.sweep())


@shared_task(bind=True, name="vault_wallets.tasks.refresh_noc_chunk", acks_late=True,
             reject_on_worker_lost=True, ignore_result=True, max_retries=None)
def refresh_noc_chunk(self, chunk_pk: int) -> str:
    """Refresh one durable chunk of a large notification of change (see ``NocChunk``)."""
    try:
        return events.process_chunk(chunk_pk)
    except events.RetryLater as later:
        # The chunk that failed: this one, or one of its event's next chunks this task went on with.
        raise self.retry(countdown=later.countdown, args=[later.chunk_pk or chunk_pk]) from None


@shared_task(name="vault_wallets.tasks.resolve_charge", ignore_result=True, acks_late=True)
def resolve_charge(charge_pk: int) -> str:
    """Look up a charge whose answer was lost; it is looked up again by the sweeper if still unknown."""
    from .models import Charge
    from .services import charges

    record = Charge.objects.filter(pk=charge_pk).first()
    return charges.resolve_charge(record, source="task").status if record else "missing"


@shared_task(name="vault_wallets.tasks.sweep_money", ignore_result=True)
def sweep_money() -> int:
    """Look up unsettled charges and refunds whose next look-up is due."""
    from .services import charges

    return charges.sweep_money()


def _publish(task, args, countdown=None) -> bool:
    try:
        task.apply_async(args=list(args), retry=False, countdown=countdown)
        return True
    except Exception as exc:  # the broker being unreachable must not fail the caller
        logger.warning("could not enqueue %s%r (%s); the sweeper will pick it up", task.name, args,
                       type(exc).__name__)
        return False


def _send(task, *args, countdown=None) -> bool:
    """Hand a message to the broker without blocking the caller (see ``vault_wallets.relay``):
    inline with eager Celery; else through the relay thread.  The stored row is the message."""
    from .relay import relay

    if task.app.conf.task_always_eager:
        return _publish(task, args, countdown)
    return relay.submit(lambda: _publish(task, args, countdown), f"{task.name}{tuple(args)!r}")


def _publish_events(event_pks: list[int]) -> None:
    """The relay's publisher for events: one message for all the events handed over together.

    ``argsrepr``/``kwargsrepr`` (Celery's documented ``apply_async`` options for the message's
    printable arguments) are given as Celery would write them — the ids, at most ``BATCH_MAX`` of
    them — which spares its ``saferepr`` machinery (about a tenth of a publish's Python calls).
    """
    task: Any  # (the task stubs know no argsrepr/kwargsrepr; Celery documents and takes them)
    if len(event_pks) == 1:
        args: tuple = (event_pks[0],)
        task = process_webhook_event
    else:
        args = (event_pks,)
        task = process_webhook_events
    task.apply_async(args=args, retry=False, argsrepr=repr(args), kwargsrepr="{}")


def enqueue_event(event_pk: int) -> bool:
    """Hand event ``event_pk`` to the relay, which publishes it with those received alongside
    (``process_webhook_events``); inline with eager Celery."""
    from .relay import relay

    if process_webhook_event.app.conf.task_always_eager:
        return _publish(process_webhook_event, (event_pk,))
    return relay.submit_batched(_publish_events, event_pk, "webhook event")


def enqueue_refresh_chunk(event_pk: int | None, method_pks: list[int]) -> bool:
    return _send(refresh_payment_methods, event_pk, method_pks)


def enqueue_noc_chunk(chunk_pk: int) -> bool:
    return _send(refresh_noc_chunk, chunk_pk)


def enqueue_resolve_charge(charge_pk: int, countdown: float | None = None) -> bool:
    return _send(resolve_charge, charge_pk, countdown=countdown)


# --------------------------------------------------------------------------------------
# Staff operations: erasure retries, expiring cards, imports.
# --------------------------------------------------------------------------------------


@shared_task(name="vault_wallets.tasks.retry_erasure", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def retry_erasure(erasure_pk: int) -> str:
    """Run a pending erasure again (it schedules its own next attempt if the processor is still down)."""
    from .models import ErasureRequest
    from .services import erasure

    return erasure.run_erasure(ErasureRequest(pk=erasure_pk)).status


@shared_task(name="vault_wallets.tasks.sweep_erasures", ignore_result=True)
def sweep_erasures() -> int:
    """Retry pending erasures whose retry is due (a lost retry task must not leave one behind)."""
    from .services import erasure

    return len(erasure.retry_due_erasures())


@shared_task(name="vault_wallets.tasks.check_expiring_payment_methods", ignore_result=True)
def check_expiring_payment_methods() -> dict:
    """Mark methods past expiry ``expired`` and send ``payment_method_expiring`` once per window."""
    from .services import expiry

    return expiry.run_expiry_checks()


@shared_task(name="vault_wallets.tasks.run_import_job", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def run_import_job(job_pk: int) -> str:
    """Run an import uploaded through the staff API (progress and report on the ImportJob)."""
    from .services import importing

    return importing.run_job(job_pk)


def enqueue_erasure(erasure_pk: int, countdown: float = 0) -> bool:
    if retry_erasure.app.conf.task_always_eager:
        return False  # eager Celery ignores countdowns (it would retry at once, forever): the sweeper retries
    try:
        retry_erasure.apply_async(args=(erasure_pk,), countdown=countdown, retry=False)
        return True
    except Exception as exc:  # broker down: the sweeper retries it
        logger.warning("could not enqueue erasure %s (%s); the sweeper will pick it up", erasure_pk,
                       type(exc).__name__)
        return False


def enqueue_import_job(job_pk: int) -> bool:
    return _send(run_import_job, job_pk)
