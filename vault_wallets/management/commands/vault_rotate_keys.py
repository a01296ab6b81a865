"""``manage.py vault_rotate_keys``: re-encrypt every encrypted column with ``FERNET_KEYS[0]``
(see docs/key-rotation.md for the whole procedure)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ...services import keys
from ..progress import Progress


class Command(BaseCommand):
    help = "Re-encrypt every encrypted value with the first of FERNET_KEYS (resumable, safe under traffic)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=keys.BATCH_SIZE)
        parser.add_argument("--dry-run", action="store_true", help="Count what would be re-encrypted.")
        parser.add_argument("--jobs", type=int, default=1,
                            help="Worker processes, each rotating a slice of every table's primary keys "
                                 "(PostgreSQL; elsewhere the rotation runs in one process).")

    def handle(self, *args, **options):
        bars: dict[str, Progress] = {}

        def progress(label, done, total):
            bar = bars.setdefault(label, Progress(label, total))
            bar.update(done)
            if done >= total:
                bar.finish(done)

        columns = [f"{model._meta.label}.{f.name}" for model, fields in keys.encrypted_fields() for f in fields]
        self.stdout.write(f"encrypted columns: {', '.join(columns)}")
        report = keys.rotate_keys(batch_size=max(1, options["batch_size"]), dry_run=options["dry_run"],
                                  progress=progress, jobs=max(1, options["jobs"]))
        for where in report.unreadable:
            self.stderr.write(f"unreadable with every key in FERNET_KEYS: {where}")
        prefix = "DRY RUN: would re-encrypt" if options["dry_run"] else "re-encrypted"
        self.stdout.write(f"{prefix} {report.rotated} value(s); {report.current} already under the first key; "
                          f"{report.changed_meanwhile} changed meanwhile (already under the first key)")
        if report.unreadable:
            raise CommandError(f"{len(report.unreadable)} value(s) could not be decrypted: keep the old keys")
