"""Encryption key rotation: re-encrypt every encrypted column with the first of ``FERNET_KEYS``.

Columns are discovered from the models (every ``fernet_fields`` field of every installed
model), so a new encrypted field is covered without touching this module.  Rows are read in
primary-key batches as stored bytes; a value already readable with the first key is left
alone (so a re-run resumes where an interrupted one stopped), any other is re-encrypted and
written back only if it is still the value that was read (compare-and-set), so the shop can
keep serving traffic: a value the shop writes meanwhile is already under the new key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.db import connections, models, router, transaction
from fernet_fields import EncryptedField
from fernet_fields.hkdf import derive_fernet_key

BATCH_SIZE = 500


def encrypted_fields() -> Iterator[tuple[type[models.Model], list]]:
    """(model, [encrypted fields]) for every installed concrete model that has any."""
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        found = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedField)]
        if found:
            yield model, found


def _fernets() -> tuple[Fernet, MultiFernet]:
    keys = getattr(settings, "FERNET_KEYS", None) or [settings.SECRET_KEY]
    if getattr(settings, "FERNET_USE_HKDF", True):
        keys = [derive_fernet_key(k) for k in keys]
    ferns = [Fernet(k) for k in keys]
    return ferns[0], MultiFernet(ferns)


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
                progress: Callable[[str, int, int], None] | None = None) -> RotationReport:
    """Re-encrypt every encrypted value not yet under ``FERNET_KEYS[0]``."""
    primary, multi = _fernets()
    report = RotationReport()
    for model, fields in encrypted_fields():
        alias = router.db_for_write(model)
        connection = connections[alias]
        qn = connection.ops.quote_name
        table, pk = qn(model._meta.db_table), qn(model._meta.pk.column)
        total = model._base_manager.using(alias).count()
        label = model._meta.label
        done, last = 0, None
        while True:
            where = f"WHERE {pk} > %s " if last is not None else ""
            cols = ", ".join(qn(f.column) for f in fields)
            with connection.cursor() as cursor:
                # Identifiers come from the models, quoted by the backend; values are parameters.
                cursor.execute(f"SELECT {pk}, {cols} FROM {table} {where}ORDER BY {pk} LIMIT %s",  # noqa: S608
                               [*([last] if last is not None else []), batch_size])
                rows = cursor.fetchall()
            if not rows:
                break
            updates = []
            for row in rows:
                for f, raw in zip(fields, row[1:], strict=True):
                    if raw is None:
                        continue
                    raw = bytes(raw)
                    try:
                        primary.decrypt(raw)
                        report.current += 1
                        continue
                    except InvalidToken:
                        pass
                    try:
                        new = multi.rotate(raw)
                    except InvalidToken:
                        report.unreadable.append(f"{label}.{f.name} pk={row[0]}")
                        continue
                    updates.append((f, row[0], raw, new))
            if updates and not dry_run:
                binary = connection.Database.Binary  # type: ignore[attr-defined]  # the DB-API module (not in django-stubs)
                with transaction.atomic(using=alias), connection.cursor() as cursor:
                    for f, row_pk, old, new in updates:
                        column = qn(f.column)
                        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {pk} = %s AND {column} = %s",  # noqa: S608
                                       [binary(new), row_pk, binary(old)])
                        if cursor.rowcount:
                            report.rotated += 1
                            key = f"{label}.{f.name}"
                            report.per_column[key] = report.per_column.get(key, 0) + 1
                        else:
                            report.changed_meanwhile += 1
            elif updates:
                report.rotated += len(updates)
            last = rows[-1][0]
            done += len(rows)
            if progress:
                progress(label, done, total)
    return report
