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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken
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


def _fernets() -> tuple[Fernet, list[Fernet]]:
    """The first key's Fernet and the others', each derived once per run (as the fields do)."""
    keys = getattr(settings, "FERNET_KEYS", None) or [settings.SECRET_KEY]
    if getattr(settings, "FERNET_USE_HKDF", True):
        keys = [derive_fernet_key(k) for k in keys]
    ferns = [Fernet(k) for k in keys]
    return ferns[0], ferns[1:]


_UNREADABLE = object()


def rotate_value(primary: Fernet, others: list[Fernet], raw: bytes):
    """``None`` when ``raw`` is already under the first key; its re-encryption under the first key
    (same timestamp, as ``MultiFernet.rotate``) when another key reads it; else ``_UNREADABLE``.

    Each key is tried once: a token under another key fails the first key's HMAC check before
    any decryption, so the common cases cost one HMAC (current) or two plus one AES (rotated).
    """
    try:
        primary.decrypt(raw)
        return None
    except InvalidToken:
        pass
    for other in others:
        try:
            plain = other.decrypt(raw)
        except InvalidToken:
            continue
        # The timestamp of the token just verified and decrypted (``extract_timestamp`` would
        # check its HMAC a second time): bytes 1-8 of the decoded token, big-endian.
        return primary.encrypt_at_time(plain, int.from_bytes(base64.urlsafe_b64decode(raw)[1:9], "big"))
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


def _rotate_range(model, fields: list, alias: str, batch_size: int, dry_run: bool, report: RotationReport,
                  low=None, high=None) -> Iterator[int]:
    """Rotate the rows with ``low < pk <= high`` (unbounded when None), batch by batch; yields
    each batch's row count."""
    primary, others = _fernets()
    connection = connections[alias]
    qn = connection.ops.quote_name
    table, pk = qn(model._meta.db_table), qn(model._meta.pk.column)
    label = model._meta.label
    cols = ", ".join(qn(f.column) for f in fields)
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
            with transaction.atomic(using=alias):
                written = compare_and_set(model, fields, updates, connection)
            for f, count in written.items():
                if count:
                    key = f"{label}.{f.name}"
                    report.per_column[key] = report.per_column.get(key, 0) + count
            report.rotated += sum(written.values())
            report.changed_meanwhile += wanted - sum(written.values())
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
