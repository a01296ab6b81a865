"""Encryption key rotation: re-encrypt every encrypted column with the first of ``FERNET_KEYS``.

Columns are discovered from the models (every ``fernet_fields`` field of every installed
model), so a new encrypted field is covered without touching this module.  Rows are read in
primary-key batches as stored bytes; a value already readable with the first key is left
alone (so a re-run resumes where an interrupted one stopped), any other is re-encrypted and
written back only if it is still the value that was read (compare-and-set), so the shop can
keep serving traffic: a value the shop writes meanwhile is already under the new key.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.apps import apps
from django.conf import settings
from django.db import connections, models, router, transaction
from fernet_fields import EncryptedField
from fernet_fields.hkdf import derive_fernet_key

BATCH_SIZE = 2000


def encrypted_fields() -> Iterator[tuple[type[models.Model], list]]:
    """(model, [encrypted fields]) for every installed concrete model that has any."""
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        found = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedField)]
        if found:
            yield model, found


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
#: Longest padded plaintext chained block by block here; longer ones (webhook bodies, import
#: files) go through the library's CBC encryptor, whose set-up cost is then negligible.
_CHAINED_MAX = 64


class RotationKey:
    """One Fernet key, for reading and writing Fernet tokens in bulk.

    The token format is Fernet's (github.com/fernet/spec): ``0x80``, an 8-byte big-endian
    timestamp, a 16-byte IV, the AES-128-CBC ciphertext of the PKCS7-padded plaintext, and an
    HMAC-SHA256 over all of that; URL-safe base64.  ``cryptography.fernet`` builds a new
    ``Cipher``, ``HMAC`` and padder per token, which cost more than the cryptography itself (about
    two thirds of a rotation's CPU, docs/benchmarks.md).  Here, per key and once: the HMAC keyed
    (``copy()`` per token), one AES-ECB context each way from ``cryptography``.  CBC is then
    ``P_i = D(C_i) xor C_(i-1)`` (one call for all blocks) and ``C_i = E(P_i xor C_(i-1))``.
    Every token written is checked by ``tests/test_key_rotation.py`` against ``cryptography.fernet``
    both ways, tampered and malformed tokens included.
    """

    def __init__(self, key: bytes | str):
        self.fernet = Fernet(key)  # validates the key as the library does
        raw = base64.urlsafe_b64decode(key)
        self._mac = hmac.new(raw[:16], digestmod=hashlib.sha256)
        self._aes = algorithms.AES(raw[16:])
        # The raw block cipher, for CBC chained below (never used as a mode on its own).
        self._decrypt_blocks = Cipher(self._aes, modes.ECB()).decryptor().update  # noqa: S305
        self._encrypt_block = Cipher(self._aes, modes.ECB()).encryptor().update  # noqa: S305

    def open(self, data: bytes) -> bytes | None:
        """The plaintext of the decoded token ``data`` when this key signed it, else None;
        ``InvalidToken`` when it signed it but the ciphertext or padding is malformed (as Fernet)."""
        mac = self._mac.copy()
        mac.update(data[:-32])
        if not hmac.compare_digest(mac.digest(), data[-32:]):
            return None
        size = len(data) - 57  # 1 + 8 + 16 before the ciphertext, 32 after
        if size <= 0 or size % 16:
            raise InvalidToken
        # CBC over every block at once: each decrypted block xor the ciphertext block before it
        # (the IV for the first): data[9:-48] is IV + ciphertext without its last block.
        padded = (int.from_bytes(self._decrypt_blocks(data[25:-32]), "big")
                  ^ int.from_bytes(data[9:-48], "big")).to_bytes(size, "big")
        pad = padded[-1]
        if not 1 <= pad <= 16 or padded[-pad:] != bytes((pad,)) * pad:
            raise InvalidToken
        return padded[:-pad]

    def seal(self, plain: bytes, timestamp: int) -> bytes:
        """A Fernet token of ``plain`` at ``timestamp`` under this key, with a fresh random IV."""
        iv = os.urandom(16)
        pad = 16 - len(plain) % 16
        padded = plain + bytes((pad,)) * pad
        if len(padded) > _CHAINED_MAX:
            encryptor = Cipher(self._aes, modes.CBC(iv)).encryptor()
            ciphertext = encryptor.update(padded) + encryptor.finalize()
        else:
            blocks, previous, encrypt = [], int.from_bytes(iv, "big"), self._encrypt_block
            for start in range(0, len(padded), 16):
                block = encrypt((int.from_bytes(padded[start:start + 16], "big") ^ previous).to_bytes(16, "big"))
                blocks.append(block)
                previous = int.from_bytes(block, "big")
            ciphertext = b"".join(blocks)
        body = b"\x80" + timestamp.to_bytes(8, "big") + iv + ciphertext
        mac = self._mac.copy()
        mac.update(body)
        return binascii.b2a_base64(body + mac.digest(), newline=False).translate(_TO_URLSAFE)


def decode_token(raw: bytes) -> bytes | None:
    """A token's bytes as Fernet decodes them (non-strict URL-safe base64), or None when they
    cannot be a Fernet token (Fernet's own checks: base64, version byte, length)."""
    try:
        data = binascii.a2b_base64(raw.translate(_FROM_URLSAFE))
    except binascii.Error:
        return None
    if len(data) < 9 or data[0] != 0x80:
        return None
    return data


def _fernets() -> tuple[RotationKey, list[RotationKey]]:
    """The first key and the others, each derived once per run (as the fields do)."""
    keys = getattr(settings, "FERNET_KEYS", None) or [settings.SECRET_KEY]
    if getattr(settings, "FERNET_USE_HKDF", True):
        keys = [derive_fernet_key(k) for k in keys]
    keys = [k.encode() if isinstance(k, str) else k for k in keys]
    # A key listed twice is one key: as "other" it would re-encrypt values already current.
    others = [k for i, k in enumerate(keys) if i and k != keys[0] and k not in keys[1:i]]
    return RotationKey(keys[0]), [RotationKey(k) for k in others]


_UNREADABLE = object()


def rotate_value(primary: RotationKey, others: list[RotationKey], raw: bytes):
    """``None`` when ``raw`` is already under the first key; its re-encryption under the first key
    (same timestamp, as ``MultiFernet.rotate``) when another key reads it; else ``_UNREADABLE``.

    The other keys are tried first, the one that read the previous value first of all (a
    rotation is mostly values under one old key): a key that did not sign a token costs one
    HMAC, so the common case is one HMAC and one AES decryption, then the new token.
    """
    data = decode_token(raw)
    if data is None:
        return _UNREADABLE
    for index, other in enumerate(others):
        try:
            plain = other.open(data)
        except InvalidToken:
            continue
        if plain is not None:
            if index:
                others.insert(0, others.pop(index))
            return primary.seal(plain, int.from_bytes(data[1:9], "big"))
    try:
        if primary.open(data) is not None:
            return None
    except InvalidToken:
        pass
    return _UNREADABLE


def compare_and_set(model, fields: list, batch: list[tuple], connection) -> dict:
    """Write each row's new values where the row still holds the old ones, column by column.

    ``batch`` is ``[(pk, {field: (old, new)}), ...]``; returns ``{field: rows written}``.  A
    column the shop rewrote meanwhile is left as it is (it is already under the first key); the
    row's other columns are still rotated.  PostgreSQL: one ``UPDATE ... FROM (VALUES ...)`` per
    1,000 rows, all of a row's columns in one new row version.  Elsewhere (SQLite, in-process):
    the single-value compare-and-set, value by value.
    """
    qn = connection.ops.quote_name
    table, pk = qn(model._meta.db_table), qn(model._meta.pk.column)
    binary = connection.Database.Binary
    written = dict.fromkeys(fields, 0)
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            for row_pk, changes in batch:
                for f, (old, new) in changes.items():
                    column = qn(f.column)
                    # Identifiers come from the model, quoted by the backend; values are parameters.
                    cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {pk} = %s AND {column} = %s",  # noqa: S608
                                   [binary(new), row_pk, binary(old)])
                    written[f] += cursor.rowcount
            return written
        pk_type = model._meta.pk.rel_db_type(connection)
        names = [(qn(f.column), f"o{i}", f"n{i}") for i, f in enumerate(fields)]
        first = "(" + ", ".join([f"%s::{pk_type}"] + ["%s::bytea"] * (2 * len(fields))) + ")"
        other = "(" + ", ".join(["%s"] * (1 + 2 * len(fields))) + ")"
        alias = ", ".join(["pk"] + [name for _, o, n in names for name in (o, n)])
        sets = ", ".join(f"{c} = CASE WHEN t.{c} = v.{o} THEN v.{n} ELSE t.{c} END" for c, o, n in names)
        where = " OR ".join(f"t.{c} = v.{o}" for c, o, _ in names)
        returning = ", ".join(f"t.{c} = v.{n}" for c, _, n in names)
        for start in range(0, len(batch), 1000):
            chunk = batch[start:start + 1000]
            params = []
            for row_pk, changes in chunk:
                params.append(row_pk)
                for f in fields:
                    old, new = changes.get(f, (None, None))
                    params += [None if old is None else binary(old), None if new is None else binary(new)]
            values = ", ".join([first] + [other] * (len(chunk) - 1))
            # Identifiers come from the model, quoted by the backend; values are parameters.
            cursor.execute(f"UPDATE {table} AS t SET {sets} FROM (VALUES {values}) AS v({alias}) "  # noqa: S608
                           f"WHERE t.{pk} = v.pk AND ({where}) RETURNING {returning}", params)
            for flags in cursor.fetchall():
                for f, flag in zip(fields, flags, strict=True):
                    written[f] += bool(flag)
    return written


def reset_field_key_caches() -> None:
    """Forget the keys the fields cached (after FERNET_KEYS changed in this process, e.g. in tests)."""
    for _model, fields in encrypted_fields():
        for f in fields:
            for name in ("keys", "fernet_keys", "fernet"):
                f.__dict__.pop(name, None)


@dataclass
class RotationReport:
    rotated: int = 0
    current: int = 0
    changed_meanwhile: int = 0
    unreadable: list[str] = field(default_factory=list)
    per_column: dict[str, int] = field(default_factory=dict)


def rotate_keys(*, batch_size: int = BATCH_SIZE, dry_run: bool = False,
                progress: Callable[[str, int, int], None] | None = None, jobs: int = 1) -> RotationReport:
    """Re-encrypt every encrypted value not yet under ``FERNET_KEYS[0]``.

    ``jobs`` > 1 (PostgreSQL): each table's primary-key range is cut into ``jobs`` slices rotated
    by as many forked worker processes, each with its own connection (Fernet is CPU-bound and
    holds the GIL: threads would not help).  Elsewhere the rotation runs in this process.
    """
    report = RotationReport()
    for model, fields in encrypted_fields():
        alias = router.db_for_write(model)
        connection = connections[alias]
        total = model._base_manager.using(alias).count()
        label = model._meta.label
        if jobs > 1 and connection.vendor == "postgresql" and total > batch_size and not connection.in_atomic_block:
            _rotate_in_workers(model, alias, jobs, batch_size, dry_run, report, progress, total)
            continue
        done = 0
        for rows in _rotate_range(model, fields, alias, batch_size, dry_run, report):
            done += rows
            if progress:
                progress(label, done, total)
    return report


class _Writer:
    """The batches' compare-and-set writes, on one thread with its own database connection.

    PostgreSQL updates batch N while this process reads and re-encrypts batch N+1 (psycopg2
    releases the GIL while it waits): the rotation's Python and PostgreSQL halves, about equal
    in CPU, overlap instead of taking turns.  One write in flight at most, so memory stays at two
    batches; an error in a write is raised at the next batch or at ``close``.  Only outside a
    transaction (the other connection could not see the caller's uncommitted rows).
    """

    def __init__(self, alias: str):
        from concurrent.futures import ThreadPoolExecutor

        self.alias = alias
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vault-rotate-writer")
        self._pending: Future[None] | None = None

    def submit(self, write: Callable[[], None]) -> None:
        self.wait()
        self._pending = self._pool.submit(write)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.submit(lambda: connections[self.alias].close()).result()  # the writer thread's own
            self._pool.shutdown()


def _rotate_range(model, fields: list, alias: str, batch_size: int, dry_run: bool, report: RotationReport,
                  low=None, high=None) -> Iterator[int]:
    """Rotate the rows with ``low < pk <= high`` (unbounded when None), batch by batch; yields
    each batch's row count (once its write is handed over: ``_Writer``)."""
    connection = connections[alias]
    writer = None
    if not dry_run and connection.vendor == "postgresql" and not connection.in_atomic_block:
        writer = _Writer(alias)
    try:
        yield from _rotate_batches(model, fields, alias, batch_size, dry_run, report, low, high, writer)
    finally:
        if writer is not None:
            writer.close()


def _rotate_batches(model, fields: list, alias: str, batch_size: int, dry_run: bool, report: RotationReport,
                    low, high, writer: _Writer | None) -> Iterator[int]:
    primary, others = _fernets()
    connection = connections[alias]
    qn = connection.ops.quote_name
    table, pk = qn(model._meta.db_table), qn(model._meta.pk.column)
    label = model._meta.label
    cols = ", ".join(qn(f.column) for f in fields)

    def write(updates: list, wanted: int) -> None:
        with transaction.atomic(using=alias):
            written = compare_and_set(model, fields, updates, connections[alias])
        for f, count in written.items():  # one write at a time: the report is never updated concurrently
            if count:
                key = f"{label}.{f.name}"
                report.per_column[key] = report.per_column.get(key, 0) + count
        report.rotated += sum(written.values())
        report.changed_meanwhile += wanted - sum(written.values())

    last = low
    while True:
        where = " AND ".join([*([f"{pk} > %s"] if last is not None else []),
                              *([f"{pk} <= %s"] if high is not None else [])])
        params = [*([last] if last is not None else []), *([high] if high is not None else []), batch_size]
        with connection.cursor() as cursor:
            # Identifiers come from the models, quoted by the backend; values are parameters.
            cursor.execute(f"SELECT {pk}, {cols} FROM {table} {'WHERE ' + where if where else ''} "  # noqa: S608
                           f"ORDER BY {pk} LIMIT %s", params)
            rows = cursor.fetchall()
        if not rows:
            return
        updates = []
        for row in rows:
            changes = {}
            for f, raw in zip(fields, row[1:], strict=True):
                if raw is None:
                    continue
                raw = bytes(raw)
                new = rotate_value(primary, others, raw)
                if new is None:
                    report.current += 1
                elif new is _UNREADABLE:
                    report.unreadable.append(f"{label}.{f.name} pk={row[0]}")
                else:
                    changes[f] = (raw, new)
            if changes:
                updates.append((row[0], changes))
        wanted = sum(len(changes) for _, changes in updates)
        if updates and not dry_run:
            if writer is not None:
                writer.submit(functools.partial(write, updates, wanted))
            else:
                write(updates, wanted)
        elif updates:
            report.rotated += wanted
        last = rows[-1][0]
        yield len(rows)


def _worker(label: str, alias: str, batch_size: int, dry_run: bool, low, high) -> tuple[RotationReport, int]:
    """One slice, in a forked worker process (its own database connection)."""
    connections[alias].close()  # the parent's connection object, inherited by fork: never used here
    model = apps.get_model(label)
    fields = dict(encrypted_fields())[model]
    report = RotationReport()
    try:
        done = sum(_rotate_range(model, fields, alias, batch_size, dry_run, report, low, high))
    finally:
        connections.close_all()
    return report, done


def _rotate_in_workers(model, alias: str, jobs: int, batch_size: int, dry_run: bool, report: RotationReport,
                       progress, total: int) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    connection = connections[alias]
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:  # slice boundaries: primary keys at equal row counts
        # Identifiers come from the model, quoted by the backend; values are parameters.
        cursor.execute(f"SELECT max({qn('pk')}) FROM (SELECT {qn(model._meta.pk.column)} AS {qn('pk')}, "  # noqa: S608
                       f"ntile(%s) OVER (ORDER BY {qn(model._meta.pk.column)}) AS {qn('slice')} "
                       f"FROM {qn(model._meta.db_table)}) AS s GROUP BY {qn('slice')} ORDER BY 1", [jobs])
        bounds = [row[0] for row in cursor.fetchall()]
    bounds[-1] = None  # the last slice is open-ended: rows added meanwhile are rotated too
    slices = list(zip([None, *bounds[:-1]], bounds, strict=True))
    connections.close_all()  # no connection may be shared with the forked workers
    label, done = model._meta.label, 0
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_worker, label, alias, batch_size, dry_run, low, high) for low, high in slices]
        for future in as_completed(futures):
            part, rows = future.result()
            report.rotated += part.rotated
            report.current += part.current
            report.changed_meanwhile += part.changed_meanwhile
            report.unreadable += part.unreadable
            for key, count in part.per_column.items():
                report.per_column[key] = report.per_column.get(key, 0) + count
            done += rows
            if progress:
                progress(label, min(done, total), total)
