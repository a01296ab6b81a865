"""Processor events: store a verified delivery, then process it once (in a worker).

* ``store_delivery`` writes the ``WebhookEvent`` (unique per account + processor event id, so a
  duplicate delivery — even a concurrent one — is stored once) before anything is processed.
* ``process_event`` claims the event with a row lock held for the whole processing, so two
  workers never process one event; a worker killed mid-way releases the lock when its
  connection drops and leaves the event ``received`` for the sweeper.  Transient failures
  (processor unavailable) are retried with exponential backoff and jitter; after
  ``WEBHOOK_MAX_ATTEMPTS`` the event is ``failed`` and ``webhook_processing_failed`` fires.
* Notifications of change re-fetch each affected method from the processor — the payload's
  card data is never trusted — and record a ``PaymentMethodChange``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import re
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from typing import Any, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from fernet_fields import EncryptedField

from .. import conf
from ..models import Charge, Customer, NocChunk, PaymentMethodChange, SavedPaymentMethod, WebhookEvent
from ..processors import base as p
from ..processors import get_processor
from ..signals import payment_method_updated, vault_event, webhook_processing_failed
from .payment_methods import promote_next_default

logger = logging.getLogger("vault_wallets.events")

METHOD_EVENTS = (p.EVENT_PAYMENT_METHOD_UPDATED, p.EVENT_PAYMENT_METHOD_CLOSED, p.EVENT_VERIFICATION_SUCCEEDED,
                 p.EVENT_VERIFICATION_FAILED)
CHARGE_EVENTS = (p.EVENT_CHARGE_SUCCEEDED, p.EVENT_CHARGE_FAILED, p.EVENT_CHARGE_REFUNDED, p.EVENT_CHARGE_VOIDED)
_SECRET_HEADER_WORDS = ("signature", "secret", "token", "authorization", "cookie", "hmac", "api-key", "apikey")
_KEPT_HEADERS_MAX = 40


@dataclass(frozen=True)
class VaultEvent:
    """A normalized event, as the ``vault_event`` signal delivers it."""

    account: str
    processor: str
    event: p.NormalizedEvent
    webhook_event: WebhookEvent
    payment_methods: tuple[SavedPaymentMethod, ...] = ()
    charge: Charge | None = None

    @property
    def type(self) -> str:
        return self.event.type


class RetryLater(Exception):
    """Try again in ``countdown`` seconds; ``chunk_pk``: the ``NocChunk`` to try again, when a
    chunk task failed on a chunk after its own (``process_chunk``)."""

    def __init__(self, countdown: float, error: str, *, chunk_pk: int | None = None):
        self.countdown = countdown
        self.chunk_pk = chunk_pk
        super().__init__(error)


@dataclass
class _Outcome:
    status: str = WebhookEvent.PROCESSED
    notes: list[str] = field(default_factory=list)
    chunks: list[list[int]] = field(default_factory=list)
    signals: list[VaultEvent] = field(default_factory=list)
    webhook_pk: int | None = None


# -- receiving -------------------------------------------------------------------------------


_SECRET_HEADER_RE = re.compile("|".join(re.escape(word) for word in _SECRET_HEADER_WORDS))


def sanitize_headers(headers: Mapping[str, str], processor: p.BaseProcessor) -> dict[str, str]:
    secret_names = {h.lower() for h in getattr(processor, "webhook_secret_headers", ())}
    secret_word = _SECRET_HEADER_RE.search  # any of _SECRET_HEADER_WORDS within the name
    kept = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in secret_names or secret_word(lowered):
            continue
        kept[lowered] = value[:500]
        if len(kept) >= _KEPT_HEADERS_MAX:
            break
    return kept


_PLAIN = (str, int, bool)
_INSERT_PLANS: dict[str, tuple] = {}
#: The values ``store_delivery`` gives every new event; the other columns take their field's
#: default (``uid``: a new id per event; the rest: constants prepared once per plan).
_DELIVERY_FIELDS = frozenset({"account", "processor", "event_id", "event_id_hash", "event_type", "received_at",
                              "remote_addr", "headers", "body", "next_attempt_at"})


def _insert_plan(conn) -> tuple:
    """The event table's INSERT, compiled once per database alias: the SQL, per column how its
    value is found, and how the new row's id comes back (``RETURNING`` where the backend has it).

    A column is either a delivery value (``_DELIVERY_FIELDS``), a per-event default (a callable
    default other than an empty ``list``/``dict``: the uid) or a constant default, prepared for
    the database once here (status, attempts, notes, …)."""
    plan = _INSERT_PLANS.get(conn.alias)
    if plan is None:
        meta = WebhookEvent._meta
        qn = conn.ops.quote_name
        # ``_insert_event`` builds the instance's values as [pk, *these columns]
        assert meta.concrete_fields[0].primary_key  # noqa: S101 - the model's own layout
        columns = []
        for f in meta.concrete_fields[1:]:
            # Encrypted fields always go through their own get_db_prep_save (their value is
            # text, their column holds the ciphertext); others only when the value is not plain.
            encrypted = isinstance(f, EncryptedField)
            if f.attname in _DELIVERY_FIELDS:
                columns.append((f, "value", encrypted, None))
            elif callable(f.default) and f.default not in (list, dict):
                columns.append((f, "default", encrypted, None))
            else:
                if encrypted:
                    raise TypeError(f"{f.name}: an encrypted column needs a value per event")
                columns.append((f, "constant", False, f.get_db_prep_save(f.get_default(), conn)))
        sql = (f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(c[0].column) for c in columns)}) "  # noqa: S608
               f"VALUES ({', '.join(['%s'] * len(columns))})")
        # ``RETURNING`` written out (PostgreSQL, SQLite ≥ 3.35): Django's own helpers for it are
        # private and changed between 5.2 and 6.0; other backends read the id back instead.
        returning = conn.vendor in ("postgresql", "sqlite") and conn.features.can_return_columns_from_insert
        if returning:
            sql += f" RETURNING {qn(meta.pk.column)}"
        plan = _INSERT_PLANS[conn.alias] = (sql, tuple(columns), returning,
                                            tuple(f.attname for f in meta.concrete_fields))
    return plan


def _insert_event(values: dict[str, Any]) -> WebhookEvent:
    """A new event's ``save()`` without the ORM's per-call query compilation nor building the
    model from keyword arguments: one ``INSERT … RETURNING id`` whose values go through each
    field's ``get_db_prep_save`` (the body and headers are Fernet-encrypted by their fields
    exactly as on ``save()``) except plain text, numbers and booleans; the instance returned is
    built from the row's values (``Model.from_db``, as a query would).  Sends no
    ``pre_save``/``post_save`` (as ``bulk_create``)."""
    conn = connection
    sql, columns, returning, names = _insert_plan(conn)
    params = []
    row: list[Any] = [None]  # the primary key, filled in below; then every other column, in order
    for f, kind, encrypted, prepared in columns:
        if kind == "constant":
            params.append(prepared)
            row.append(f.get_default())
            continue
        value = values[f.attname] if kind == "value" else f.get_default()
        row.append(value)
        if encrypted or not (value is None or type(value) in _PLAIN):
            value = f.get_db_prep_save(value, conn)
        params.append(value)
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        if returning:
            row[0] = cursor.fetchone()[0]
        else:
            row[0] = conn.ops.last_insert_id(cursor, WebhookEvent._meta.db_table, WebhookEvent._meta.pk.column)
    return WebhookEvent.from_db(conn.alias, names, row)


def store_delivery(account: str, processor: p.BaseProcessor, request: p.WebhookRequest, event_id: str,
                   event_type: str) -> tuple[WebhookEvent, bool]:
    """Store a verified delivery; ``(event, created)`` — ``created`` is False for a duplicate.

    Enqueues processing when the transaction commits (never inside the request).
    """
    from ..tasks import enqueue_event

    now = timezone.now()
    values = {
        "account": account, "processor": processor.name, "event_id": event_id,
        "event_id_hash": WebhookEvent.hash_event_id(event_id), "event_type": event_type[:128], "received_at": now,
        "remote_addr": request.remote_addr or None, "headers": sanitize_headers(request.headers, processor),
        "body": request.body.decode("utf-8"),
        "next_attempt_at": now + timedelta(seconds=conf.get_setting("WEBHOOK_RELAY_GRACE_SECONDS")),
    }
    try:
        if connection.in_atomic_block:
            # Inside a caller's transaction: a savepoint keeps a duplicate's IntegrityError from
            # breaking it, and processing is enqueued when it commits.
            with transaction.atomic():
                event = _insert_event(values)
                transaction.on_commit(partial(enqueue_event, event.pk))
        else:
            # Autocommit (the webhook view): the INSERT commits by itself — one round trip, not
            # BEGIN/INSERT/COMMIT — and the event is handed over at once (what on_commit does
            # outside a transaction).
            event = _insert_event(values)
            enqueue_event(event.pk)
    except IntegrityError:
        # De-duplicated on a digest of the whole id: ids that differ after any prefix stay apart.
        existing = WebhookEvent.objects.filter(account=account, event_id_hash=values["event_id_hash"]).first()
        if existing is None:
            raise
        return existing, False
    return event, True


def redacted_body(event: WebhookEvent) -> str:
    """The stored delivery as staff may see it: JSON with the processor module's token fields
    (and any key naming a token, secret or card/account number) replaced by ``[redacted]``.

    A body that is not JSON is not shown at all: nothing in it can be told apart from a token.
    """
    size = len(event.body.encode("utf-8", "surrogatepass"))
    try:
        payload = json.loads(event.body)
    except (ValueError, RecursionError):
        return f"({size} bytes, not JSON: not shown)"
    try:
        processor = get_processor(event.account)
    except Exception:  # the account was removed from settings since: no module knows its fields
        return f"({size} bytes from an account no longer configured: not shown)"
    try:
        redacted = processor.redact_webhook_payload(payload)
        return json.dumps(redacted, indent=2, ensure_ascii=False, sort_keys=True)
    except RecursionError:
        return f"({size} bytes, nested too deeply: not shown)"


# -- processing ------------------------------------------------------------------------------


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter: up to base·2^(attempt-1), capped."""
    base = conf.get_setting("WEBHOOK_RETRY_BACKOFF_SECONDS")
    cap = conf.get_setting("WEBHOOK_RETRY_BACKOFF_MAX_SECONDS")
    ceiling = min(cap, base * (2 ** max(attempt - 1, 0)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security


def _lock(queryset):
    """Lock the queryset's own rows only (``of=("self",)``): a model ordered through a foreign key
    (``NocChunk`` by its event) would otherwise join and lock the related row as well, so that
    two chunks of one event could never be claimed at once."""
    features = connection.features
    of = ("self",) if features.has_select_for_update_of else ()
    if features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True, of=of)
    return queryset.select_for_update(of=of)


def process_event(pk: int, *, force: bool = False) -> str:
    """Process stored event ``pk`` once; return its status.

    Raises ``RetryLater`` after a transient failure that should be retried.  ``force``
    reprocesses an event already processed or ignored (re-fetching is idempotent).
    """
    retry: RetryLater | None = None
    with transaction.atomic():
        event = _lock(WebhookEvent.objects.filter(pk=pk)).first()
        if event is None:
            return "busy"  # another worker holds it (or it does not exist)
        if event.status in (WebhookEvent.PROCESSED, WebhookEvent.IGNORED) and not force:
            return event.status
        if event.chunks.exists():
            if not force:  # its work is in its chunks: they finish it (the sweeper re-enqueues them)
                return event.status
            event.chunks.all().delete()
        max_attempts = conf.get_setting("WEBHOOK_MAX_ATTEMPTS")
        event.attempts += 1
        event.status = WebhookEvent.PROCESSING
        event.save(update_fields=["attempts", "status"])
        try:
            with transaction.atomic():
                outcome = _handle(event)
        except p.ProcessorUnavailable as exc:
            delay = backoff_seconds(event.attempts)
            _record_failure(event, exc, transient=True, delay=delay, max_attempts=max_attempts)
            if event.status != WebhookEvent.FAILED:
                retry = RetryLater(delay, exc.message)
        except Exception as exc:  # a bug or an unexpected payload: keep the event, tell the shop
            _record_failure(event, exc, transient=False, delay=backoff_seconds(event.attempts),
                            max_attempts=max_attempts)
        else:
            event.status = outcome.status
            event.notes = outcome.notes
            event.processed_at = None if outcome.status == WebhookEvent.PROCESSING else timezone.now()
            event.next_attempt_at = None
            event.last_error = event.last_traceback = ""
            event.save()
            _after_commit(outcome)
    if retry is not None:
        raise retry
    return event.status


def _record_failure(event: WebhookEvent, exc: Exception, *, transient: bool, delay: float,
                    max_attempts: int) -> None:
    message = getattr(exc, "message", "") or str(exc)
    event.last_error = f"{type(exc).__name__}: {message}"[:2000]
    event.last_traceback = "".join(traceback.format_exception(exc))[-10000:]
    exhausted = event.attempts >= max_attempts
    if transient and not exhausted:
        event.status = WebhookEvent.RECEIVED
    else:
        event.status = WebhookEvent.FAILED
    # The sweeper picks the event up again at next_attempt_at if the retry message is lost.
    grace = conf.get_setting("WEBHOOK_STALE_SECONDS")
    event.next_attempt_at = None if exhausted else timezone.now() + timedelta(seconds=delay + grace)
    event.save()
    logger.warning("webhook event %s (%s) attempt %s failed: %s", event.uid, event.event_type, event.attempts,
                   event.last_error)
    if event.status == WebhookEvent.FAILED:
        transaction.on_commit(lambda: webhook_processing_failed.send(
            sender=WebhookEvent, webhook_event=event, error=event.last_error))


def _after_commit(outcome: _Outcome) -> None:
    from ..tasks import enqueue_noc_chunk

    for vault in outcome.signals:
        transaction.on_commit(partial(vault_event.send, sender=WebhookEvent, event=vault))
    if outcome.chunks:
        grace = timedelta(seconds=conf.get_setting("WEBHOOK_RELAY_GRACE_SECONDS"))
        chunks = [NocChunk.objects.create(event_id=outcome.webhook_pk, index=i, method_pks=pks,
                                          next_attempt_at=timezone.now() + grace)
                  for i, pks in enumerate(outcome.chunks)]
        for chunk in chunks:
            transaction.on_commit(partial(enqueue_noc_chunk, chunk.pk))


def _handle(event: WebhookEvent) -> _Outcome:
    processor = get_processor(event.account)
    request = p.WebhookRequest(headers=event.headers, body=event.body.encode("utf-8"),
                               remote_addr=event.remote_addr or "", received_at=event.received_at)
    outcome = _Outcome(webhook_pk=event.pk)
    try:
        normalized = processor.parse_webhook(request)
    except p.WebhookVerificationError as exc:  # e.g. ProcessOut's re-fetch does not know the event
        outcome.status = WebhookEvent.IGNORED
        outcome.notes.append(f"not authenticated: {exc.reason}")
        return outcome
    handled = False
    for item in normalized:
        if item.type in METHOD_EVENTS:
            handled = True
            methods = _handle_method_event(event, processor, item, outcome)
            outcome.signals.append(VaultEvent(event.account, processor.name, item, event, tuple(methods)))
        elif item.type in CHARGE_EVENTS:
            handled = True
            from .charges import link_charge_event

            charge = link_charge_event(event.account, item)
            if charge is None:
                outcome.notes.append(f"{item.type}: no local charge for this processor reference")
            outcome.signals.append(VaultEvent(event.account, processor.name, item, event, (), charge))
        else:
            outcome.notes.append(f"{item.processor_event_type or 'event'}: not a type vault_wallets acts on")
            outcome.signals.append(VaultEvent(event.account, processor.name, item, event))
    if not handled:
        outcome.status = WebhookEvent.IGNORED
    return outcome


def _handle_method_event(event: WebhookEvent, processor: p.BaseProcessor, item: p.NormalizedEvent,
                         outcome: _Outcome) -> list[SavedPaymentMethod]:
    lookups = {SavedPaymentMethod.lookup_for(event.account, mid): mid for mid in item.payment_method_ids}
    if not lookups and item.customer_id:
        # A customer-level event (processors without per-method events): refresh its methods.
        queryset = SavedPaymentMethod.objects.visible().filter(
            customer__account=event.account, customer__processor_customer_id=item.customer_id)
    else:
        queryset = SavedPaymentMethod.objects.filter(customer__account=event.account,
                                                     processor_lookup__in=list(lookups))
    # Ids first (light): a large event only needs them, for its chunks.
    rows = list(queryset.values_list("pk", "processor_lookup"))
    found = {lookup for _, lookup in rows}
    unknown = [lookups[h] for h in lookups if h not in found]
    if unknown:
        outcome.notes.append(f"{len(unknown)} payment method id(s) unknown here")
    chunk_size = conf.get_setting("NOC_CHUNK_SIZE")
    if len(rows) > chunk_size:
        pks = [pk for pk, _ in rows]
        outcome.chunks.extend(pks[i:i + chunk_size] for i in range(0, len(pks), chunk_size))
        outcome.status = WebhookEvent.PROCESSING  # processed when its chunks are
        outcome.notes.append(f"{len(rows)} payment methods refreshed in {len(outcome.chunks)} chunked task(s)")
        return list(queryset.for_display())  # for the signal: nothing decrypted
    methods = list(queryset)
    for method in methods:
        refresh_payment_method(method, source_event=event, source=item.type)
    return methods


# -- refreshing one saved method -------------------------------------------------------------


def _snapshot(method: SavedPaymentMethod) -> dict:
    return {"brand": method.brand, "last4": method.last4, "exp_month": method.exp_month,
            "exp_year": method.exp_year, "status": method.status, "verification_status": method.verification_status,
            "is_default": method.is_default}


def _status_from(fetched: p.VaultedMethod) -> str:
    if fetched.status in (p.METHOD_CLOSED, p.METHOD_REMOVED):
        return p.METHOD_CLOSED
    if fetched.exp_year and fetched.exp_month:
        today = date.today()
        if (fetched.exp_year, fetched.exp_month) < (today.year, today.month):
            return p.METHOD_EXPIRED
    return p.METHOD_ACTIVE


def refresh_payment_method(method: SavedPaymentMethod, *, source_event: WebhookEvent | None = None,
                           source: str = "manual refresh") -> PaymentMethodChange | None:
    """Re-fetch ``method`` from its processor and apply what changed; return the change, if any.

    A method the processor no longer knows becomes ``closed``.  A closed or expired method stops
    being the default and the newest chargeable one is promoted.  Raises
    ``ProcessorUnavailable`` (retry later); writes nothing then.
    """
    customer = method.customer
    return apply_fetched(method, _fetch(customer.account, customer.processor_ref, method.processor_ref),
                         source_event=source_event, source=source)


def _fetch(account: str, customer: p.CustomerRef, method: p.MethodRef) -> p.VaultedMethod | None:
    """The processor's current view of a method (None: it no longer knows it).  Plain values in, no
    database access, so it may run in a thread."""
    try:
        return get_processor(account).fetch_payment_method(customer, method)
    except p.NotFoundError:
        return None


def _fetch_group(account: str, customer: p.CustomerRef, methods: list[p.MethodRef]) -> list[p.VaultedMethod | None]:
    """``_fetch`` for several methods of one customer (thread-safe likewise)."""
    return get_processor(account).fetch_payment_methods(customer, methods)


def _apply_to(current: SavedPaymentMethod, fetched: p.VaultedMethod | None) -> None:
    """Set ``current``'s display fields from the processor's answer (None: closed there)."""
    if fetched is None:
        current.status = p.METHOD_CLOSED
    else:
        current.brand = fetched.brand[:32] or current.brand
        current.last4 = fetched.last4[-4:] or current.last4
        current.exp_month = fetched.exp_month or current.exp_month
        current.exp_year = fetched.exp_year or current.exp_year
        if fetched.verification_status in p.VERIFICATION_STATUSES and \
                fetched.verification_status != p.VERIFICATION_UNKNOWN:
            current.verification_status = fetched.verification_status
        current.status = _status_from(fetched)
    if current.is_default and not current.is_chargeable:
        current.is_default = False


def apply_fetched_batch(answers: list[tuple[SavedPaymentMethod, p.VaultedMethod | None]], *,
                        source_event: WebhookEvent | None = None, source: str = "manual refresh") -> int:
    """``apply_fetched`` for many methods in one transaction and a handful of queries; returns how many
    changed.  Locks the customers, then the methods (each in pk order, so concurrent chunks never
    deadlock), writes only what changed, then promotes a new default where one was lost."""
    if not answers:
        return 0
    now = timezone.now()
    with transaction.atomic():
        # Lock the customers without loading them (a row, and its encrypted secret, per method); the
        # few that lose their default are loaded below.
        list(Customer.objects.select_for_update().order_by("pk").filter(pk__in={m.customer_id for m, _ in answers})
             .values_list("pk", flat=True))
        currents = {m.pk: m for m in SavedPaymentMethod.objects.select_for_update().order_by("pk")
                    .for_display().filter(pk__in=[m.pk for m, _ in answers])}
        changed, history, lost_default, lost_pks = [], [], [], set()
        for method, fetched in answers:
            current = currents.get(method.pk)
            if current is None or current.status == p.METHOD_REMOVED:
                continue
            before = _snapshot(current)
            _apply_to(current, fetched)
            after = _snapshot(current)
            if after == before:
                continue
            current.updated_at = now
            changed.append(current)
            history.append(PaymentMethodChange(payment_method=current, source_event=source_event,
                                               source=source[:64], before=before, after=after))
            if before["is_default"] and not current.is_default:
                lost_default.append(current.customer_id)
                lost_pks.add(current.pk)
        _write_display_fields(changed)
        _insert_changes(history, now)
        promoted = {customer.pk: promote_next_default(customer)
                    for customer in Customer.objects.filter(pk__in=lost_default).order_by("pk")} if lost_default else {}
        for current, change in zip(changed, history, strict=True):
            transaction.on_commit(partial(
                payment_method_updated.send, sender=SavedPaymentMethod, payment_method=current, changes=change,
                promoted=promoted.get(current.customer_id) if current.pk in lost_pks else None))
    return len(changed)


#: Field types whose ``get_db_prep_save`` returns a value of this exact type unchanged (PostgreSQL).
_PREPARED_AS = {"CharField": str, "PositiveSmallIntegerField": int, "BooleanField": bool}
_DISPLAY_COLUMNS = ("brand", "last4", "exp_month", "exp_year", "verification_status", "status", "is_default",
                    "updated_at")


def _write_display_fields(methods: list[SavedPaymentMethod]) -> None:
    """One UPDATE for many rows.  On PostgreSQL ``UPDATE … FROM (VALUES …)``: Django's
    ``bulk_update`` builds a CASE expression per field and row, which costs more CPU than the
    whole rest of a NOC chunk (see docs/benchmarks.md)."""
    if not methods:
        return
    if connection.vendor != "postgresql":
        SavedPaymentMethod.objects.bulk_update(methods, list(_DISPLAY_COLUMNS))
        return
    meta = SavedPaymentMethod._meta
    qn = connection.ops.quote_name
    fields: list[Any] = [meta.get_field(name) for name in _DISPLAY_COLUMNS]  # concrete fields, not relations
    casts = [f"%s::{field.db_type(connection)}" for field in fields]
    row = f"(%s::bigint, {', '.join(casts)})"
    # A value already of the type a field prepares it to (text, whole number, boolean) or None is sent
    # as it is (what ``get_db_prep_save`` returns for it); anything else goes through the field.
    plain = [(f, f.attname, _PREPARED_AS.get(f.get_internal_type())) for f in fields]
    params: list[Any] = []
    for method in methods:
        params.append(method.pk)
        for f, attname, kind in plain:
            value = getattr(method, attname)
            params.append(value if value is None or type(value) is kind else f.get_db_prep_save(value, connection))
    assignments = ", ".join(f"{qn(f.column)} = v.{qn(f.column)}" for f in fields)
    sql = (f"UPDATE {qn(meta.db_table)} AS t SET {assignments} "  # noqa: S608 - names from _meta, values bound
           f"FROM (VALUES {', '.join([row] * len(methods))}) AS v(id, {', '.join(qn(f.column) for f in fields)}) "
           f"WHERE t.{qn(meta.pk.column)} = v.id")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _insert_changes(history: list[PaymentMethodChange], now) -> None:
    """``bulk_create`` of the changes.  On PostgreSQL one ``INSERT … RETURNING`` built here: Django's
    per-object, per-field preparation in ``bulk_create`` was about a fifth of a NOC chunk task's own
    CPU (see docs/benchmarks.md).  Each change gets its pk, as with ``bulk_create``."""
    if not history:
        return
    if connection.vendor != "postgresql":
        PaymentMethodChange.objects.bulk_create(history)
        return
    meta = PaymentMethodChange._meta
    qn = connection.ops.quote_name
    fields: list[Any] = [meta.get_field(name) for name in  # concrete fields, not relations
                         ("payment_method", "source_event", "source", "before", "after", "created_at")]
    columns = ", ".join(qn(field.column) for field in fields)
    params: list[Any] = []
    for change in history:
        change.created_at = now
        params.extend((change.payment_method_id, change.source_event_id, change.source, json.dumps(change.before),
                       json.dumps(change.after), now))
    row = "(%s, %s, %s, %s::jsonb, %s::jsonb, %s)"
    sql = (f"INSERT INTO {qn(meta.db_table)} ({columns}) "  # noqa: S608 - names from _meta, values bound
           f"VALUES {', '.join([row] * len(history))} RETURNING {qn(meta.pk.column)}")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        pks = [pk for (pk,) in cursor.fetchall()]
    for change, pk in zip(history, pks, strict=True):
        change.pk = pk
        change._state.adding = False
        change._state.db = connection.alias


def apply_fetched(method: SavedPaymentMethod, fetched: p.VaultedMethod | None, *,
                  source_event: WebhookEvent | None = None,
                  source: str = "manual refresh") -> PaymentMethodChange | None:
    """Apply what the processor answered for ``method`` (``refresh_payment_method``'s second half)."""
    customer = method.customer
    with transaction.atomic():
        Customer.objects.select_for_update().filter(pk=customer.pk).first()
        current = SavedPaymentMethod.objects.select_for_update().get(pk=method.pk)
        if current.status == p.METHOD_REMOVED:
            return None
        before = _snapshot(current)
        _apply_to(current, fetched)
        promoted = None
        current.save()
        if before["is_default"] and not current.is_default:
            promoted = promote_next_default(customer)
        after = _snapshot(current)
        if after == before:
            return None
        change = PaymentMethodChange.objects.create(payment_method=current, source_event=source_event,
                                                    source=source[:64], before=before, after=after)
        transaction.on_commit(lambda: payment_method_updated.send(
            sender=SavedPaymentMethod, payment_method=current, changes=change, promoted=promoted))
    method.__dict__.update({k: getattr(current, k) for k in after})
    return change


def refresh_chunk(webhook_pk: int | None, method_pks: list[int]) -> int:
    """Refresh several methods (one chunk of a large event); return how many changed."""
    started = _start_chunk(webhook_pk, method_pks)
    try:
        return started.finish()
    finally:
        started.discard()


@dataclass
class _Started:
    """A chunk whose fetches are queued on this process's fetch pool (``_start_chunk``); ``finish``
    applies their answers in this thread.  ``fetches`` is None for a processor fetched one by one:
    ``finish`` then does everything."""

    event: WebhookEvent | None
    source: str
    method_pks: list[int]
    limit: int
    group_count: int = 0
    fetches: _Fetches | None = None

    def finish(self) -> int:
        if self.fetches is None:
            methods = list(SavedPaymentMethod.objects.select_related("customer").filter(pk__in=self.method_pks))
            return refresh_concurrently(methods, source_event=self.event, source=self.source, concurrency=1)
        return _apply_answers(self.fetches, self.limit, self.group_count, source_event=self.event,
                              source=self.source)

    def discard(self) -> None:
        """Wait for the fetches still queued or in flight, their answers unused (nothing when
        ``finish`` consumed them all)."""
        if self.fetches is not None:
            self.fetches.close()


def _start_chunk(webhook_pk: int | None, method_pks: list[int]) -> _Started:
    """Read what a chunk's fetches need and queue them (a processor fetched one by one: nothing
    is queued, ``finish`` does the work)."""
    # Only what the changes record: the event's body (a large NOC's is hundreds of KiB, encrypted) is
    # not decrypted again for every chunk.
    event = WebhookEvent.objects.only("pk", "event_type").filter(pk=webhook_pk).first() if webhook_pk else None
    source = event.event_type if event else "manual refresh"
    # What the fetches need, as plain rows (no model instances: the answers are applied to rows
    # locked and loaded again per batch); the methods themselves only when they are refreshed one by one.
    rows = list(SavedPaymentMethod.objects.filter(pk__in=method_pks).values_list(*_FETCH_COLUMNS))
    limit = _fetch_limit(len(rows), None, {row[2] for row in rows})
    if limit == 1:
        return _Started(event, source, method_pks, limit)
    groups: dict[tuple[str, int], _FetchGroup] = {}
    for pk, customer_pk, account, customer_id, secret, reference_id, method_type, token, method_id in rows:
        group = groups.get((account, customer_pk))
        if group is None:
            group = groups[(account, customer_pk)] = _FetchGroup(
                account, p.CustomerRef(id=customer_id, secret=secret, reference_id=reference_id))
        # As ``SavedPaymentMethod.processor_ref``.
        group.add(_Answered(pk, customer_pk), p.MethodRef(token=token, method_id=method_id or token,
                                                          method_type=method_type))
    # The pool of the configured size, however few methods this chunk has (``limit`` still sizes its
    # batches): a chunk taken along by ``process_chunk`` queues its fetches behind the previous
    # chunk's on the same threads, so never more than NOC_FETCH_CONCURRENCY are in flight (an event's
    # small last chunk on a pool of its own would add its fetches to the previous chunk's).
    pool = _fetch_pool(max(limit, conf.get_setting("NOC_FETCH_CONCURRENCY")))
    return _Started(event, source, method_pks, limit, len(groups), pool.fetch(list(groups.values())))


#: ``refresh_chunk``'s columns: the method, its customer and what the processor needs to fetch it.
_FETCH_COLUMNS = ("pk", "customer_id", "customer__account", "customer__processor_customer_id",
                  "customer__processor_customer_secret", "customer__reference_id", "method_type",
                  "processor_token", "processor_method_id")


class _Answered(NamedTuple):
    """A method as ``apply_fetched_batch`` needs it: which row, and whose (a ``SavedPaymentMethod``
    serves as well)."""

    pk: int
    customer_id: int


@dataclass
class _FetchGroup:
    """One customer's methods: one ``fetch_payment_methods`` call (a processor that lists a wallet
    answers all of them at once)."""

    account: str
    customer: p.CustomerRef
    methods: list[Any] = field(default_factory=list)
    refs: list[p.MethodRef] = field(default_factory=list)

    def add(self, method: Any, ref: p.MethodRef) -> None:
        self.methods.append(method)
        self.refs.append(ref)


def _fetch_limit(count: int, concurrency: int | None, accounts: set[str]) -> int:
    """How many fetches may be in flight for ``count`` methods of ``accounts``: 1 (one by one) when
    any of their processors must not be fetched concurrently."""
    limit = max(1, min(concurrency or conf.get_setting("NOC_FETCH_CONCURRENCY"), count or 1))
    if not all(get_processor(account).concurrent_fetches for account in accounts):
        return 1
    return limit


def refresh_concurrently(methods: list[SavedPaymentMethod], *, source_event: WebhookEvent | None = None,
                         source: str = "manual refresh", concurrency: int | None = None) -> int:
    """Refresh ``methods``: fetch them from the processor concurrently, apply the answers here.

    At most ``NOC_FETCH_CONCURRENCY`` fetches are in flight (threads sharing each processor's
    pooled HTTP session).  Every database write stays in this thread: answers are applied in
    batches (``apply_fetched_batch``: a few queries per batch, not per method) while the other
    fetches are still waiting.  Every answer that arrived is applied; then the first failure
    (e.g. ``ProcessorUnavailable``) is raised so the task retries the chunk — re-fetching is
    idempotent.  Returns how many methods changed.
    """
    limit = _fetch_limit(len(methods), concurrency, {m.customer.account for m in methods})
    if limit == 1:
        changed = 0
        for method in methods:
            if refresh_payment_method(method, source_event=source_event, source=source) is not None:
                changed += 1
        return changed
    groups: dict[tuple[str, int], _FetchGroup] = {}
    for method in methods:
        key = (method.customer.account, method.customer_id)
        if key not in groups:
            groups[key] = _FetchGroup(method.customer.account, method.customer.processor_ref)
        groups[key].add(method, method.processor_ref)
    return _refresh_groups(list(groups.values()), limit, source_event=source_event, source=source)


#: Answers applied together (at least; ``limit`` if higher).  Each batch pays two locking SELECTs
#: built by the ORM, a savepoint and the SQL of its UPDATE and INSERT — about 4 ms of CPU — so 50 a batch
#: costs the chunk's thread a third less per method than 25 did, and a default chunk (100) still
#: applies its first half while the rest is being fetched (docs/benchmarks.md).
_APPLY_BATCH = 50


def _refresh_groups(groups: list[_FetchGroup], limit: int, *, source_event: WebhookEvent | None,
                    source: str) -> int:
    """Fetch ``groups`` with at most ``limit`` in flight; apply the answers in batches here, then
    raise the first failure (see ``refresh_concurrently``)."""
    return _apply_answers(_fetch_pool(limit).fetch(groups), limit, len(groups), source_event=source_event,
                          source=source)


def _apply_answers(results: _Fetches, limit: int, count: int, *, source_event: WebhookEvent | None,
                   source: str) -> int:
    """Apply the answers of ``count`` queued fetches in batches as they come, then raise the first
    failure."""
    ready: list[tuple[Any, p.VaultedMethod | None]] = []
    changed, failure = 0, None
    batch = max(limit, _APPLY_BATCH)
    try:
        for done, (group, answers, error) in enumerate(results, 1):
            if error is None:
                try:
                    ready.extend(zip(group.methods, answers, strict=True))
                except Exception as exc:  # e.g. a short answer: it must not pass for a complete one
                    error = exc
            if error is not None:  # applied after the others; the first one is raised
                failure = failure or error
            if len(ready) >= batch or (done == count and ready):
                changed += apply_fetched_batch(ready, source_event=source_event, source=source)
                ready = []
    finally:
        results.close()  # waits for the fetches still queued when applying failed
    if failure is not None:
        raise failure
    return changed


class _FetchPool:
    """``size`` threads fetching for the chunks of this process, kept from one chunk to the next
    (a thread pool per chunk started ``size`` threads every 100 methods, and a future, a condition
    and a waiter per fetch cost the chunk's own thread more than this queue).  At most ``size``
    fetches are in flight across every caller sharing it."""

    def __init__(self, size: int):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(size):
            threading.Thread(target=self._work, name=f"vault-fetch-{size}-{i}", daemon=True).start()

    def _work(self) -> None:
        while True:
            self._fetch_one(*self.jobs.get())

    @staticmethod
    def _fetch_one(group: _FetchGroup, results: queue.SimpleQueue) -> None:
        try:
            answers = _fetch_group(group.account, group.customer, group.refs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, as a future would
            results.put((group, None, exc))
        else:
            results.put((group, answers, None))

    def fetch(self, groups: list[_FetchGroup]) -> _Fetches:
        """Queue a fetch per group now; the answers come from the returned ``_Fetches``."""
        results: queue.SimpleQueue = queue.SimpleQueue()
        for group in groups:
            self.jobs.put((group, results))
        return _Fetches(results, len(groups))


class _Fetches:
    """The answers of fetches queued together: ``(group, answers, error)`` for each group, as they
    complete.  ``close`` waits for those not taken yet — when the caller stops early (an exception
    while applying) or never looks (a chunk fetched ahead and then not processed here), the fetches
    already queued still finish before it goes on, as with a thread pool's ``with`` block: the next
    chunk never finds this one's in flight."""

    def __init__(self, results: queue.SimpleQueue, pending: int):
        self.results = results
        self.pending = pending

    def __iter__(self):
        while self.pending:
            group, answers, error = self.results.get()
            self.pending -= 1
            if error is not None and not isinstance(error, Exception):
                raise error  # KeyboardInterrupt, SystemExit: not a failed fetch
            yield group, answers, error

    def close(self) -> None:
        while self.pending:
            self.results.get()
            self.pending -= 1


_fetch_pools: dict[int, _FetchPool] = {}
_fetch_pools_lock = threading.Lock()


def _fetch_pool(size: int) -> _FetchPool:
    """This process's pool of ``size`` fetch threads (started on first use)."""
    with _fetch_pools_lock:
        pool = _fetch_pools.get(size)
        if pool is None:
            pool = _fetch_pools[size] = _FetchPool(size)
        return pool


def _forget_fetch_pools() -> None:
    """In a forked child (a prefork worker process): none of the parent's threads exist there, and
    its lock may have been held at the fork; the child starts its own pools."""
    global _fetch_pools_lock
    _fetch_pools.clear()
    _fetch_pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_fetch_pools)


# -- durable NOC chunks -------------------------------------------------------------------------


#: How many more chunks of its event one chunk task may refresh after its own (``process_chunk``):
#: about 20 × 0.35 s at the default chunk size, 16 fetches in flight and a 50 ms processor, so
#: a worker asked to stop (warm shutdown) still finishes its task within seconds.
_CHAIN_CHUNKS = 20


def process_chunk(pk: int) -> str:
    """Refresh one ``NocChunk`` once; when it is the event's last, mark the event processed.
    Return its status.

    The chunk's row lock is held while its methods are refreshed: a worker killed mid-chunk
    rolls back and releases it, and the sweeper re-enqueues the chunk.  Raises ``RetryLater``
    (``chunk_pk`` naming the chunk) while the processor is unavailable.

    Fetched concurrently, a chunk's fetches end in a partly empty wave and nothing is in flight
    while its last answers are applied, the chunk committed and the next task taken from the
    broker.  So while a chunk is refreshed, the next pending chunk of the same event that no
    other worker holds is locked too and its fetches are queued behind this chunk's, and it is
    refreshed next in this task, in its own transaction (up to ``_CHAIN_CHUNKS`` of them; its own
    task message then finds it done).  Between the two transactions another worker may take it
    (its lock is taken again with ``SKIP LOCKED``): then its answers are dropped and the chain ends.
    """
    status, ahead = _process_chunk(pk, None, chain=_CHAIN_CHUNKS > 0)
    for left in range(_CHAIN_CHUNKS - 1, -1, -1):
        if ahead is None:
            break
        _, ahead = _process_chunk(*ahead, chain=left > 0)
    return status


def _process_chunk(pk: int, started: _Started | None, *, chain: bool) -> tuple[str, tuple[int, _Started] | None]:
    """Refresh chunk ``pk`` (its fetches already ``started``, or not); return its status and, when
    ``chain``, the next chunk of its event with its fetches started (or None)."""
    retry: RetryLater | None = None
    ahead: tuple[int, _Started] | None = None
    try:
        with transaction.atomic():
            chunk = _lock(NocChunk.objects.filter(pk=pk)).first()
            if chunk is None:
                return "busy", None
            if chunk.status != NocChunk.PENDING:
                return chunk.status, None
            chunk.attempts += 1
            try:
                with transaction.atomic():
                    started = started or _start_chunk(chunk.event_id, chunk.method_pks)
                    if chain and started.fetches is not None:
                        ahead = _start_next_chunk(chunk)
                    chunk.changed = started.finish()
            except p.ProcessorUnavailable as exc:
                delay = backoff_seconds(chunk.attempts)
                chunk.last_error = f"ProcessorUnavailable: {exc.message}"[:2000]
                if chunk.attempts >= conf.get_setting("WEBHOOK_MAX_ATTEMPTS"):
                    chunk.status, chunk.next_attempt_at = NocChunk.FAILED, None
                else:
                    chunk.next_attempt_at = timezone.now() + timedelta(
                        seconds=delay + conf.get_setting("WEBHOOK_STALE_SECONDS"))
                    retry = RetryLater(delay, exc.message, chunk_pk=pk)
            else:
                chunk.status, chunk.finished_at, chunk.next_attempt_at, chunk.last_error = (
                    NocChunk.DONE, timezone.now(), None, "")
            chunk.save()
            if chunk.status != NocChunk.PENDING:
                _finish_chunked_event(chunk.event_id)
    except BaseException:
        if ahead is not None:
            ahead[1].discard()
        raise
    finally:
        if started is not None:
            started.discard()
    if retry is not None:
        if ahead is not None:
            ahead[1].discard()
        raise retry
    return chunk.status, ahead


def _start_next_chunk(chunk: NocChunk) -> tuple[int, _Started] | None:
    """Lock the next pending, never tried chunk of ``chunk``'s event that no other worker holds
    and queue its fetches (behind ``chunk``'s); None when there is none."""
    # Only chunks never tried: one waiting for its retry after a failure keeps its backoff.
    row = (_lock(NocChunk.objects.filter(event_id=chunk.event_id, status=NocChunk.PENDING, attempts=0)
                 .exclude(pk=chunk.pk))
           .order_by("index").values_list("pk", "method_pks").first())
    if row is None:
        return None
    return row[0], _start_chunk(chunk.event_id, row[1])


def _finish_chunked_event(event_pk: int) -> None:
    event = WebhookEvent.objects.select_for_update().filter(pk=event_pk).first()
    if event is None or event.chunks.filter(status=NocChunk.PENDING).exists():
        return
    failed = event.chunks.filter(status=NocChunk.FAILED).count()
    if failed:
        event.status = WebhookEvent.FAILED
        event.last_error = f"{failed} chunk(s) of this event could not be refreshed"
    else:
        event.status = WebhookEvent.PROCESSED
        event.processed_at = timezone.now()
    event.save(update_fields=["status", "processed_at", "last_error"])


def mark_for_reprocessing(pk: int) -> bool:
    """Staff asked for stored event ``pk`` to be processed again: forget its chunks (their work is
    redone from the event) and make it due, so that it is processed by the task enqueued next or,
    if that message is lost, by the sweeper.  False when a worker holds the event right now."""
    with transaction.atomic():
        event = _lock(WebhookEvent.objects.filter(pk=pk)).first()
        if event is None:
            return False
        event.chunks.all().delete()
        WebhookEvent.objects.filter(pk=pk).update(status=WebhookEvent.RECEIVED, next_attempt_at=None)
    return True


# -- sweeping ---------------------------------------------------------------------------------


def _chunked():
    return Exists(NocChunk.objects.filter(event=OuterRef("pk")))


def due_events(now=None):
    """Events that should be (re)processed now: left received/processing past their due time,
    and failed ones below the attempt limit whose backoff has passed.  An event whose work is in
    its chunks is not: its chunks are (``due_chunks``)."""
    now = now or timezone.now()
    max_attempts = conf.get_setting("WEBHOOK_MAX_ATTEMPTS")
    return WebhookEvent.objects.filter(
        Q(status__in=[WebhookEvent.RECEIVED, WebhookEvent.PROCESSING])
        | Q(status=WebhookEvent.FAILED, attempts__lt=max_attempts),
        Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True),
    ).filter(~_chunked())


def waiting_events():
    """Everything waiting to be processed, due or not (what ``vault_process_events`` processes):
    received or processing events, and failed ones below the attempt limit."""
    max_attempts = conf.get_setting("WEBHOOK_MAX_ATTEMPTS")
    return WebhookEvent.objects.filter(
        Q(status__in=[WebhookEvent.RECEIVED, WebhookEvent.PROCESSING])
        | Q(status=WebhookEvent.FAILED, attempts__lt=max_attempts)).filter(~_chunked())


def due_chunks(now=None):
    now = now or timezone.now()
    return NocChunk.objects.filter(status=NocChunk.PENDING).filter(
        Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True))


def _claimable(queryset, limit: int) -> list[int]:
    """pks of ``queryset`` no worker holds right now (a worker holds its event's or chunk's row
    lock while processing it: the lock is the lease, released the moment its connection dies)."""
    return list(_lock(queryset.order_by("pk")).values_list("pk", flat=True)[:limit])


def sweep(now=None, limit: int = 500) -> list[int]:
    """Re-enqueue due events and chunks nobody is working on; return the events' pks."""
    from ..tasks import enqueue_event, enqueue_noc_chunk

    now = now or timezone.now()
    stale = timedelta(seconds=conf.get_setting("WEBHOOK_STALE_SECONDS"))
    with transaction.atomic():
        pks = _claimable(due_events(now), limit)
        if pks:
            WebhookEvent.objects.filter(pk__in=pks).update(next_attempt_at=now + stale)
        chunk_pks = _claimable(due_chunks(now), limit)
        if chunk_pks:
            NocChunk.objects.filter(pk__in=chunk_pks).update(next_attempt_at=now + stale)
    for pk in pks:
        enqueue_event(pk)
    for pk in chunk_pks:
        enqueue_noc_chunk(pk)
    return pks
