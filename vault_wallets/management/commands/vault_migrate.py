"""``manage.py vault_migrate --from ACCOUNT --to ACCOUNT MAP_FILE [--dry-run]``: re-point saved
methods to a new processor account keeping their ids, defaults, labels and history (resumable)."""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from ...models import Customer
from ...services import importing, migration
from ..progress import Progress


class Command(BaseCommand):
    help = "Move an account's saved methods to another account using the processors' old → new token map."

    def add_arguments(self, parser):
        parser.add_argument("map_file")
        parser.add_argument("--from", dest="old", required=True)
        parser.add_argument("--to", dest="new", required=True)
        parser.add_argument("--format", choices=importing.FORMATS)
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args, **options):
        path = options["map_file"]
        if not os.path.isfile(path):
            raise CommandError(f"no such file: {path}")
        report = migration.MigrationReport()
        with open(path, encoding="utf-8-sig", newline="") as handle:
            mapping = migration.load_map(handle, options["format"] or importing.guess_format(path), options["old"],
                                         report)
        progress = Progress("migrating customers", Customer.objects.filter(account=options["old"]).count())
        try:
            migration.migrate_account(options["old"], options["new"], mapping, dry_run=options["dry_run"],
                                      report=report, progress=lambda r: progress.update(
                                          r.customers_moved + r.customers_left))
        except (ImproperlyConfigured, ValueError) as exc:
            raise CommandError(str(exc)) from None
        progress.finish(report.customers_moved + report.customers_left)
        for error in report.errors:
            where = f"map line {error['map_line']}" if "map_line" in error else f"customer {error['customer']}"
            self.stderr.write(f"{where}: {error['error']}")
        prefix = "DRY RUN (nothing written): " if report.dry_run else ""
        self.stdout.write(f"{prefix}{report.map_rows} map rows; moved {report.customers_moved} customer(s) and "
                          f"{report.methods_moved} saved method(s); {report.customers_left} customer(s) left on "
                          f"{options['old']!r}")
