"""Bring existing processor tokens into the vault (``manage.py vault_import``, the staff import API).

Streams the input (CSV with a header row, or JSON Lines), validates each row, and writes in
batches: one query finds the batch's customers, one creates the missing ones, one loads their
existing methods, one ``bulk_create`` and one ``bulk_update`` write the methods.  Tokens are
encrypted by the model field.  Idempotent: a row whose token (or processor method id) the
customer already has is ``updated`` when its display data differs and ``skipped`` otherwise.
A bad row is reported with its line number and never stops the rest.

Where the account's processor has a bulk import endpoint (``import_payment_methods``, e.g.
Caselle's ``POST /api/saved-payment-methods/import``) rows without a ``method_id`` are
registered there first, one call per customer and batch; the processor's answer decides
which rows are created and which fail.

Columns (CSV header names or JSONL keys)::

    customer_reference   required  the shop's id for the customer (Customer.reference_id)
    token                required  the processor's permanent token
    processor_customer_id          the processor's customer id (required unless the processor imports in bulk)
    method_id                      the processor's method id when it is not the token
    method_type                    card (default) | ach
    brand, last4, exp_month, exp_year, holder_name, bank_name, account_type, label
    is_default                     true/false
    customer_email, customer_name, customer_phone   used when the customer is created
"""

from __future__ import annotations

import codecs
import csv
import datetime
import decimal
import functools
import itertools
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from django.db import connections, models, router, transaction
from django.utils import timezone
from fernet_fields import EncryptedField

from .. import conf, ids
from ..models import Customer, ImportChunk, ImportJob, SavedPaymentMethod
from ..processors import base as p
from ..processors import get_processor
from .keys import RotationKey

logger = logging.getLogger("vault_wallets.services")

FORMATS = ("csv", "jsonl")
BATCH_SIZE = 1000
MAX_REPORTED_ERRORS = 1000
CHUNK_CHARS = 1024 * 1024
DISPLAY_FIELDS = ("brand", "last4", "exp_month", "exp_year", "holder_name", "bank_name", "account_type", "label")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"", "0", "false", "no", "n", "f"}
_LIMITS = {"brand": 32, "last4": 4, "holder_name": 200, "bank_name": 200, "account_type": 16, "label": 100,
           "customer_reference": 128, "processor_customer_id": 200, "customer_name": 200, "customer_phone": 40,
           "customer_email": 254, "token": 2000, "method_id": 2000}


class RowError(ValueError):
    pass


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    rows: int = 0
    customers_created: int = 0
    errors: list[dict] = field(default_factory=list)
    dry_run: bool = False

    def error(self, line: int, message: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": line, "error": message})

    def as_dict(self) -> dict:
        return {"created": self.created, "updated": self.updated, "skipped": self.skipped, "failed": self.failed,
                "rows": self.rows, "customers_created": self.customers_created, "dry_run": self.dry_run,
                "errors": self.errors, "errors_truncated": self.failed > len(self.errors)}


@dataclass
class Row:
    line: int
    customer_reference: str
    token: str
    processor_customer_id: str = ""
    method_id: str = ""
    method_type: str = p.METHOD_CARD
    brand: str = ""
    last4: str = ""
    exp_month: int | None = None
    exp_year: int | None = None
    holder_name: str = ""
    bank_name: str = ""
    account_type: str = ""
    label: str = ""
    is_default: bool = False
    customer_email: str = ""
    customer_name: str = ""
    customer_phone: str = ""

    def __repr__(self) -> str:  # never the token
        return f"<Row line={self.line} customer={self.customer_reference!r} ••••{self.last4}>"


def _text(raw: dict, key: str) -> str:
    value = raw.get(key)
    if value is None or value == "":
        return ""
    if type(value) is not str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise RowError(f"{key} must be text")
    value = value.strip()
    if "\x00" in value:
        raise RowError(f"{key} contains a NUL byte")
    if len(value) > _LIMITS.get(key, 200):
        raise RowError(f"{key} is longer than {_LIMITS.get(key, 200)} characters")
    return value


def _int(raw: dict, key: str, low: int, high: int) -> int | None:
    value = raw.get(key)
    if value in (None, ""):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        raise RowError(f"{key} must be a whole number") from None
    if not low <= number <= high:
        raise RowError(f"{key} must be between {low} and {high}")
    return number


def parse_row(raw: dict, line: int) -> Row:
    """Validate one input row (a dict of column → value); ``RowError`` says what is wrong."""
    if not isinstance(raw, dict):
        raise RowError("a row must be an object")
    reference = _text(raw, "customer_reference") or _text(raw, "reference_id")
    if not reference:
        raise RowError("customer_reference is required")
    token = _text(raw, "token")
    if not token:
        raise RowError("token is required")
    method_type = (_text(raw, "method_type") or p.METHOD_CARD).lower()
    if method_type not in p.METHOD_TYPES:
        raise RowError(f"method_type must be one of {', '.join(p.METHOD_TYPES)}")
    last4 = _text(raw, "last4")
    if last4 and not (last4.isdigit() and len(last4) == 4):
        raise RowError("last4 must be four digits")
    default = raw.get("is_default", "")
    if isinstance(default, bool):
        is_default = default
    elif str(default).strip().lower() in _TRUE:
        is_default = True
    elif str(default).strip().lower() in _FALSE:
        is_default = False
    else:
        raise RowError("is_default must be true or false")
    exp_month = _int(raw, "exp_month", 1, 12)
    exp_year = _int(raw, "exp_year", 2000, 2099)
    if method_type == p.METHOD_CARD and (exp_month is None) != (exp_year is None):
        raise RowError("exp_month and exp_year go together")
    return Row(
        line=line, customer_reference=reference, token=token, method_type=method_type, last4=last4,
        processor_customer_id=_text(raw, "processor_customer_id"), method_id=_text(raw, "method_id"),
        brand=_text(raw, "brand").lower(), exp_month=exp_month, exp_year=exp_year,
        holder_name=_text(raw, "holder_name"), bank_name=_text(raw, "bank_name"),
        account_type=_text(raw, "account_type"), label=_text(raw, "label"), is_default=is_default,
        customer_email=_text(raw, "customer_email"), customer_name=_text(raw, "customer_name"),
        customer_phone=_text(raw, "customer_phone"),
    )


# --------------------------------------------------------------------------------------
# Reading: any iterable of text lines → (line number, raw dict | RowError)
# --------------------------------------------------------------------------------------


def read_rows(lines: Iterable[str], fmt: str) -> Iterator[tuple[int, dict | RowError]]:
    if fmt == "csv":
        read = 0  # lines handed to the reader: on an error its own line_num is still the previous row's

        def counted() -> Iterator[str]:
            nonlocal read
            for line in lines:
                read += 1
                yield line

        reader = csv.DictReader(counted())
        while True:
            try:
                raw = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield read, RowError(f"unreadable CSV: {exc}")
                continue
            if None in raw:
                yield reader.line_num, RowError("more values than columns")
                continue
            yield reader.line_num, raw
    elif fmt == "jsonl":
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except (ValueError, RecursionError) as exc:
                yield number, RowError(f"not JSON: {str(exc)[:100]}")
    else:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")


def lines_of(chunks: Iterable[str]) -> Iterator[str]:
    """Re-split text chunks into lines (with their endings), holding at most one chunk."""
    carry = ""
    for chunk in chunks:
        pieces = (carry + chunk).splitlines(keepends=True)
        carry = pieces.pop() if pieces and not pieces[-1].endswith(("\n", "\r")) else ""
        yield from pieces
    if carry:
        yield carry


# --------------------------------------------------------------------------------------
# Writing, one batch at a time
# --------------------------------------------------------------------------------------


# What the import needs of a customer: never its encrypted secret (not decrypted for nothing).
CUSTOMER_FIELDS = ("pk", "account", "reference_id", "processor_customer_id", "erased_at")
_MISSING = object()
_PLAIN = (str, int, bool)


def fast_insert(model, objs: list) -> None:
    """``bulk_create`` without model instances or per-object query compilation.

    ``objs`` are plain objects with the model's attribute names (``customer_id``, …); a missing
    attribute takes the field's default, ``auto_now``/``auto_now_add`` fields the current time.
    Tokens are Fernet-encrypted with the field's own (cached) Fernet, exactly as on ``save()``;
    an empty encrypted value is encrypted once per call and that ciphertext reused (it decrypts
    to "" like any other; that a column is empty is no secret).  Primary keys are not returned.

    PostgreSQL (psycopg2): one ``COPY … FROM STDIN`` per call, the rows rendered while they are
    sent, so PostgreSQL inserts one chunk while the next is encrypted.  Elsewhere (and for a field
    type the ``COPY`` renderer does not know): one multi-row ``INSERT`` per chunk, values through
    each field's ``get_db_prep_save`` except plain text, numbers and booleans.
    """
    if not objs:
        return
    alias = router.db_for_write(model)
    connection = connections[alias]
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    now = timezone.now()
    if connection.vendor == "postgresql" and _copy_insert(model, fields, objs, connection, now):
        return
    qn = connection.ops.quote_name
    plan = []
    for f in fields:
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            plan.append((f, "now", f.get_db_prep_save(now, connection)))
        elif isinstance(f, EncryptedField):
            plan.append((f, "encrypted", f.get_db_prep_save("", connection)))
        else:
            plan.append((f, "value", None))
    per_statement = max(1, min(500, (connection.features.max_query_params or 100_000) // len(fields)))
    columns = ", ".join(qn(f.column) for f in fields)
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(objs), per_statement):
            chunk = objs[start:start + per_statement]
            params = []
            for obj in chunk:
                for f, kind, prepared in plan:
                    if kind == "now":
                        params.append(prepared)
                        continue
                    value = getattr(obj, f.attname, _MISSING)
                    if value is _MISSING:
                        value = f.get_default()
                    if kind == "encrypted":
                        params.append(prepared if value == "" else f.get_db_prep_save(value, connection))
                    elif value is None or type(value) in _PLAIN:
                        params.append(value)
                    else:
                        params.append(f.get_db_prep_save(value, connection))
            # Identifiers come from the model, quoted by the backend; every value is a parameter.
            cursor.execute(f"INSERT INTO {qn(model._meta.db_table)} ({columns}) VALUES "  # noqa: S608
                           + ", ".join([row_sql] * len(chunk)), params)


# COPY's text format: a tab between columns, \\N for NULL, backslash escapes in text.
_COPY_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_CONST, _VALUE, _ENCRYPTED, _JSON = range(4)


class _Unrenderable(Exception):
    pass


def _copy_text(value) -> str:
    """One value in ``COPY``'s text format (what PostgreSQL would parse from the column's input)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPE) if _COPY_SPECIAL.search(value) else str(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(getattr(value, "adapted", None), (bytes, bytearray, memoryview)):  # psycopg2's Binary
        value = value.adapted
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\\\x" + bytes(value).hex()  # bytea's hex input, its backslash escaped for COPY
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time, decimal.Decimal, uuid.UUID)):
        return _copy_text(str(value))
    raise _Unrenderable(type(value).__name__)


def _copy_insert(model, fields: list, objs: list, connection, now) -> bool:
    """``fast_insert``'s PostgreSQL path; ``False`` (nothing sent) where it cannot render a field."""
    with connection.cursor() as cursor:
        raw = cursor.cursor
        if not callable(getattr(raw, "copy_expert", None)):  # psycopg 3: the INSERT path
            return False
        # Per column: (kind, attname, field, text when the attribute is missing — None: the field's
        # default per row, e.g. a random uid —, the text of "" for an encrypted column).
        plan: list[tuple] = []
        try:
            for f in fields:
                if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                    plan.append((_CONST, f.attname, f, _copy_text(now), None))
                    continue
                missing = None
                if not (f.has_default() and callable(f.default)):
                    missing = f.get_default()
                elif isinstance(f, models.JSONField) and f.default in (dict, list):
                    missing = f.default()  # JSONField(default=dict): the same empty value every row
                if isinstance(f, EncryptedField):
                    empty = _copy_text(f.fernet.encrypt(b""))
                    missing = None if missing is None else empty if missing == "" else None
                    plan.append((_ENCRYPTED, f.attname, f, missing, empty))
                elif isinstance(f, models.JSONField):
                    text = None if missing is None else _copy_text(json.dumps(missing, cls=f.encoder))
                    plan.append((_JSON, f.attname, f, text, None))
                else:
                    text = None if missing is None else _copy_text(f.get_db_prep_save(missing, connection))
                    plan.append((_VALUE, f.attname, f, text, None))
            # The first row is rendered before anything is sent: a type COPY cannot take falls back.
            first = _copy_line(plan, objs[0], connection)
        except _Unrenderable:
            return False
        qn = connection.ops.quote_name
        columns = ", ".join(qn(f.column) for f in fields)
        lines = itertools.chain([first], (_copy_line(plan, obj, connection) for obj in objs[1:]))
        # Identifiers come from the model, quoted by the backend; the values travel as COPY data.
        raw.copy_expert(f"COPY {qn(model._meta.db_table)} ({columns}) FROM STDIN", _LineReader(lines),
                        size=_COPY_READ)
    return True


_COPY_READ = 64 * 1024


def _copy_line(plan: list[tuple], obj, connection) -> str:
    """One row in COPY's text format.  The common cases (text, numbers, an encrypted token) are
    inline: this runs once per column and row."""
    out: list[str] = []
    append = out.append
    special = _COPY_SPECIAL.search
    for kind, attname, f, missing, empty in plan:
        if kind == _CONST:
            append(missing)
            continue
        value: Any = getattr(obj, attname, _MISSING)
        if value is _MISSING:
            if missing is not None:
                append(missing)
                continue
            value = f.get_default()
        if value is None:
            append("\\N")
        elif kind == _VALUE:
            t = type(value)
            if t is str:
                append(value.translate(_COPY_ESCAPE) if special(value) else value)
            elif t is int:
                append(str(value))
            elif t is bool:
                append("t" if value else "f")
            else:
                append(_copy_text(f.get_db_prep_save(value, connection)))
        elif kind == _ENCRYPTED:
            if value == "":
                append(empty)
            elif type(value) is str:  # a Fernet token of the field's first key, as its get_db_prep_save
                append("\\\\x" + _seal(f, value.encode("utf-8")).hex())
            else:
                append(_copy_text(f.get_db_prep_save(value, connection)))
        else:
            append(_copy_text(json.dumps(value, cls=f.encoder)))
    return "\t".join(out) + "\n"


def _seal(f, plain: bytes) -> bytes:
    """``f.fernet.encrypt(plain)``: the same Fernet token (the field encrypts with its first key,
    Fernet or MultiFernet alike) without ``cryptography.fernet``'s per-token set-up — 7 µs a token
    instead of 14.5 (``services.keys.RotationKey``)."""
    return _sealer(f.fernet_keys[0])(plain, int(time.time()))


@functools.lru_cache(maxsize=8)
def _sealer(key: bytes | str) -> Callable[[bytes, int], bytes]:
    return RotationKey(key).seal


class _LineReader:
    """A file-like ``read(size)`` over an iterator of lines, for ``copy_expert``: the rows are
    rendered as psycopg2 asks for them, so the whole batch never sits in memory as text."""

    def __init__(self, lines: Iterator[str]):
        self.lines = lines

    def read(self, size: int = -1) -> str:
        parts, total = [], 0
        for line in self.lines:
            parts.append(line)
            total += len(line)
            if 0 <= size <= total:
                break
        return "".join(parts)


class Importer:
    """``Importer(account).run(lines, fmt)`` → ``ImportReport``; ``progress(rows)`` after each batch."""

    def __init__(self, account: str, *, dry_run: bool = False, batch_size: int = BATCH_SIZE,
                 progress: Callable[[ImportReport], None] | None = None):
        conf.account_config(account)  # ImproperlyConfigured for an unknown account
        self.account = account
        self.dry_run = dry_run
        self.batch_size = batch_size
        self.progress = progress
        self.processor = get_processor(account)
        self.bulk = callable(getattr(self.processor, "import_payment_methods", None))
        self.report = ImportReport(dry_run=dry_run)
        self._dry_seen: set[str] = set()  # only in dry runs, where nothing is written to find them by
        self._dry_customers: set[str] = set()  # likewise: customers a dry run's earlier batches "created"
        self.today = timezone.localdate()

    def run(self, lines: Iterable[str], fmt: str) -> ImportReport:
        batch: list[Row] = []
        for line, raw in read_rows(lines, fmt):
            self.report.rows += 1
            if isinstance(raw, RowError):
                self.report.error(line, str(raw))
                continue
            try:
                batch.append(parse_row(raw, line))
            except RowError as exc:
                self.report.error(line, str(exc))
            if len(batch) >= self.batch_size:
                self._batch(batch)
                batch = []
        if batch:
            self._batch(batch)
        self.report.errors.sort(key=lambda e: e["line"])
        return self.report

    def _batch(self, rows: list[Row]) -> None:
        try:
            with transaction.atomic():
                self._write(rows)
                if self.dry_run:
                    transaction.set_rollback(True)
        except Exception as exc:  # a whole batch failing (database) is reported, the rest goes on
            logger.exception("import batch failed")
            for row in rows:
                self.report.error(row.line, f"not imported: {type(exc).__name__}")
        if self.progress:
            self.progress(self.report)

    def _customers(self, rows: list[Row]) -> tuple[dict[str, Customer], set[int]]:
        """The batch's customers by reference, and the primary keys of those created just now (in
        this batch's transaction, so they have no methods yet)."""
        refs = {row.customer_reference for row in rows}
        found = {c.reference_id: c for c in Customer.objects.filter(account=self.account, reference_id__in=refs)
                 .only(*CUSTOMER_FIELDS)}
        missing: dict[str, Row] = {}
        created: set[int] = set()
        for row in rows:
            if row.customer_reference in found or row.customer_reference in missing:
                continue
            if self.bulk or row.processor_customer_id:  # a row that cannot be imported creates no customer
                missing[row.customer_reference] = row
        if missing:
            fast_insert(Customer, [
                SimpleNamespace(uid=uid, account=self.account, reference_id=ref, name=row.customer_name,
                                email=row.customer_email, phone=row.customer_phone,
                                processor_customer_id=row.processor_customer_id)
                for (ref, row), uid in zip(missing.items(), ids.new_uids("cus", len(missing)), strict=True)])
            new = {c.reference_id: c for c in Customer.objects.filter(
                account=self.account, reference_id__in=list(missing)).only(*CUSTOMER_FIELDS)}
            found.update(new)
            created.update(c.pk for c in new.values())
            if self.dry_run:  # each batch is rolled back: a customer made again later is not a new one
                self.report.customers_created += len(missing.keys() - self._dry_customers)
                self._dry_customers.update(missing)
            else:
                self.report.customers_created += len(missing)
        return found, created

    def _write(self, rows: list[Row]) -> None:
        customers, created = self._customers(rows)
        # Customers created by this batch have no methods: only the others' are looked up (the query
        # read the whole methods table while PostgreSQL's statistics still said it was small).
        existing = list(SavedPaymentMethod.objects.filter(customer__in=[c for c in customers.values()
                                                                        if c.pk not in created])
                        .only("pk", "customer_id", "processor_token", "processor_lookup", "status", "is_default",
                              *DISPLAY_FIELDS))
        by_lookup = {m.processor_lookup: m for m in existing if m.processor_lookup}
        by_token = {(m.customer_id, m.processor_token): m for m in existing if m.processor_token}
        has_default = {m.customer_id for m in existing if m.is_default}
        to_create: list[tuple[Row, SavedPaymentMethod]] = []
        to_update: list[SavedPaymentMethod] = []
        make_default: dict[int, SavedPaymentMethod] = {}
        seen: dict[str, int] = {}
        lookup_of = SavedPaymentMethod.lookup_function()
        for row in rows:
            customer = customers.get(row.customer_reference)
            if customer is None:
                self.report.error(row.line, "processor_customer_id is required: this processor has no bulk import")
                continue
            if (row.processor_customer_id and customer.processor_customer_id
                    and row.processor_customer_id != customer.processor_customer_id):
                self.report.error(row.line, f"customer {row.customer_reference!r} belongs to another processor "
                                            "customer")
                continue
            if customer.erased_at is not None:
                self.report.error(row.line, f"customer {row.customer_reference!r} was erased")
                continue
            lookup = lookup_of(self.account, row.method_id or row.token)
            if lookup in seen:
                self.report.error(row.line, f"the same token as line {seen[lookup]}")
                continue
            seen[lookup] = row.line
            match = by_lookup.get(lookup) or by_token.get((customer.pk, row.token))
            if match is None and self.dry_run and lookup in self._dry_seen:
                self.report.skipped += 1
                continue
            if match is not None:
                if match.status == p.METHOD_REMOVED:
                    self.report.skipped += 1
                    continue
                changed = False
                for name in DISPLAY_FIELDS:
                    value = getattr(row, name)
                    if value not in ("", None) and getattr(match, name) != value:
                        setattr(match, name, value)
                        changed = True
                if changed:
                    to_update.append(match)
                    self.report.updated += 1
                else:
                    self.report.skipped += 1
                continue
            if not self.bulk and not (row.processor_customer_id or customer.processor_customer_id):
                self.report.error(row.line, "processor_customer_id is required: this processor has no bulk import")
                continue
            if self.dry_run:
                self._dry_seen.add(lookup)
            expired = (row.exp_year is not None and (row.exp_year, row.exp_month) < (self.today.year,
                                                                                        self.today.month))
            # A stand-in with the model's attributes that fast_insert writes (a full model costs CPU per row).
            method: Any = SimpleNamespace(
                customer=customer, customer_id=customer.pk, method_type=row.method_type, processor_token=row.token,
                processor_method_id=row.method_id if row.method_id != row.token else "", processor_lookup=lookup,
                status=p.METHOD_EXPIRED if expired else p.METHOD_ACTIVE, is_default=False,
                **{name: getattr(row, name) for name in DISPLAY_FIELDS})
            if not expired and (row.is_default or (customer.pk not in has_default
                                                   and customer.pk not in make_default)):
                make_default[customer.pk] = method
            to_create.append((row, method))
        if self.bulk:
            to_create = self._register_at_processor(customers, to_create)
        if to_update:
            now = timezone.now()
            for method in to_update:
                method.updated_at = now
            SavedPaymentMethod.objects.bulk_update(to_update, [*DISPLAY_FIELDS, "updated_at"])
        creating = {id(m) for _, m in to_create}
        defaults = {pk: m for pk, m in make_default.items() if id(m) in creating}
        if defaults:
            older = [pk for pk in defaults if pk not in created]  # a new customer has no default to clear
            SavedPaymentMethod.objects.filter(customer_id__in=older, is_default=True).update(is_default=False)
            for method in defaults.values():
                method.is_default = True
        for (_, method), uid in zip(to_create, ids.new_uids("spm", len(to_create)), strict=True):
            method.uid = uid
        fast_insert(SavedPaymentMethod, [m for _, m in to_create])
        self.report.created += len(to_create)

    def _register_at_processor(self, customers: dict[str, Customer],
                               to_create: list[tuple[Row, SavedPaymentMethod]]):
        """Rows without a processor method id go through the processor's bulk import endpoint."""
        from .customers import ensure_processor_customer

        direct = [(row, m) for row, m in to_create if row.method_id]
        pending: dict[int, list[tuple[Row, SavedPaymentMethod]]] = {}
        for row, method in to_create:
            if not row.method_id:
                pending.setdefault(method.customer.pk, []).append((row, method))
        if self.dry_run:
            return direct + [pair for group in pending.values() for pair in group]
        item_class = _import_item_class(self.processor)
        for group in pending.values():
            customer = group[0][1].customer
            try:
                customer = ensure_processor_customer(customer)
                items = [item_class(token=row.token, method_type=row.method_type, last4=row.last4,
                                    exp_month=row.exp_month, exp_year=row.exp_year, brand=row.brand,
                                    holder_name=row.holder_name, bank_name=row.bank_name,
                                    account_type=row.account_type) for row, _ in group]
                processor: Any = self.processor  # self.bulk: this processor has import_payment_methods
                result = processor.import_payment_methods(customer.processor_ref, items)
            except p.ProcessorError as exc:
                for row, _ in group:
                    self.report.error(row.line, f"the processor refused the import: {exc.message}")
                continue
            failed = {f.index: f for f in result.failures}
            imported = iter(result.methods)
            for index, (row, method) in enumerate(group):
                if index in failed:
                    self.report.error(row.line, f"the processor refused it: {failed[index].message}")
                    continue
                vaulted = next(imported, None)
                if vaulted is None:
                    self.report.error(row.line, "the processor did not confirm it")
                    continue
                method.customer, method.customer_id = customer, customer.pk
                if vaulted.method_id and vaulted.method_id != row.token:
                    method.processor_method_id = vaulted.method_id
                    method.processor_lookup = SavedPaymentMethod.lookup_for(self.account, vaulted.method_id)
                direct.append((row, method))
        return direct


def _import_item_class(processor):
    module = __import__(type(processor).__module__, fromlist=["ImportItem"])
    return module.ImportItem


def import_file(path: str, account: str, fmt: str | None = None, **kwargs) -> ImportReport:
    """Import a file from disk (the management command's core)."""
    fmt = fmt or guess_format(path)
    with open(path, encoding="utf-8-sig", newline="", errors="strict") as handle:
        return Importer(account, **kwargs).run(handle, fmt)


def guess_format(name: str) -> str:
    return "jsonl" if name.lower().endswith((".jsonl", ".ndjson", ".json")) else "csv"


# --------------------------------------------------------------------------------------
# Jobs (the staff API): the upload is stored encrypted in chunks, run by a Celery task
# --------------------------------------------------------------------------------------


def create_job(upload, account: str, fmt: str, *, dry_run: bool = False, user=None) -> ImportJob:
    """Store ``upload`` (a Django ``UploadedFile``) encrypted, chunk by chunk, and return a queued job."""
    conf.account_config(account)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    with transaction.atomic():
        job = ImportJob.objects.create(account=account, format=fmt, dry_run=dry_run,
                                       file_name=(getattr(upload, "name", "") or "")[:255],
                                       total_bytes=getattr(upload, "size", 0) or 0,
                                       requested_by=user if getattr(user, "is_authenticated", False) else None)
        seq, buffer = 0, []
        size = 0
        for piece in upload.chunks(CHUNK_CHARS):
            text = decoder.decode(piece)
            if "\x00" in text:
                raise ValueError("the file contains NUL bytes")
            buffer.append(text)
            size += len(text)
            if size >= CHUNK_CHARS:
                ImportChunk.objects.create(job=job, seq=seq, data="".join(buffer))
                seq, buffer, size = seq + 1, [], 0
        tail = decoder.decode(b"", final=True)
        if buffer or tail:
            ImportChunk.objects.create(job=job, seq=seq, data="".join(buffer) + tail)
    return job


def _job_chunks(job: ImportJob, done: list[int]) -> Iterator[str]:
    pks = list(job.chunks.order_by("seq").values_list("pk", flat=True))
    for pk in pks:
        text = ImportChunk.objects.get(pk=pk).data
        done[0] += len(text.encode("utf-8"))
        yield text


def run_job(job_pk: int) -> str:
    """Run a queued job (the Celery task); progress is saved after every batch."""
    claimed = ImportJob.objects.filter(pk=job_pk, status=ImportJob.QUEUED).update(
        status=ImportJob.RUNNING, started_at=timezone.now())
    if not claimed:
        return "not queued"
    job = ImportJob.objects.get(pk=job_pk)
    done = [0]

    def progress(report: ImportReport) -> None:
        ImportJob.objects.filter(pk=job.pk).update(processed_bytes=min(done[0], job.total_bytes or done[0]),
                                                   report=report.as_dict())

    try:
        report = Importer(job.account, dry_run=job.dry_run, progress=progress).run(
            lines_of(_job_chunks(job, done)), job.format)
    except Exception as exc:
        logger.exception("import job %s failed", job.uid)
        ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.FAILED, finished_at=timezone.now(),
                                                   last_error=f"{type(exc).__name__}: {str(exc)[:500]}")
        job.chunks.all().delete()
        return ImportJob.FAILED
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.DONE, finished_at=timezone.now(),
                                               processed_bytes=job.total_bytes or done[0], report=report.as_dict())
    job.chunks.all().delete()  # the upload held tokens: it goes as soon as it is no longer needed
    return ImportJob.DONE

