"""``manage.py vault_import FILE --account NAME [--format csv|jsonl] [--dry-run]``: bring existing
processor tokens in (see docs/import-export.md).  Streams the file, writes in batches, and ends
with a report; bad rows are listed with their line numbers and never stop the rest."""

from __future__ import annotations

import json
import os

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from ...services import importing
from ..progress import Progress


class Command(BaseCommand):
    help = "Import saved payment methods (existing processor tokens) from a CSV or JSON Lines file."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--account", required=True, help="The vault_wallets account the tokens belong to.")
        parser.add_argument("--format", choices=importing.FORMATS, help="Default: from the file name (csv).")
        parser.add_argument("--dry-run", action="store_true", help="Validate and report; write nothing.")
        parser.add_argument("--batch-size", type=int, default=importing.BATCH_SIZE)
        parser.add_argument("--report", help="Also write the report as JSON to this file.")

    def handle(self, *args, **options):
        path = options["file"]
        if not os.path.isfile(path):
            raise CommandError(f"no such file: {path}")
        fmt = options["format"] or importing.guess_format(path)
        total = os.path.getsize(path)
        progress = Progress("importing", total)
        handle = open(path, "rb")  # noqa: SIM115  (closed below; its position drives the progress bar)
        text = _TextLines(handle)

        def on_batch(report):
            progress.update(handle.tell(), f"created {report.created} updated {report.updated} "
                                           f"skipped {report.skipped} failed {report.failed}")

        try:
            importer = importing.Importer(options["account"], dry_run=options["dry_run"],
                                          batch_size=max(1, options["batch_size"]), progress=on_batch)
            report = importer.run(text, fmt)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        except UnicodeDecodeError:
            raise CommandError("the file is not UTF-8 text") from None
        finally:
            handle.close()
        progress.finish(total)
        self._print(report)
        if options["report"]:
            with open(options["report"], "w", encoding="utf-8") as out:
                json.dump(report.as_dict(), out, indent=2)

    def _print(self, report):
        for error in report.errors:
            self.stderr.write(f"line {error['line']}: {error['error']}")
        if report.failed > len(report.errors):
            self.stderr.write(f"… and {report.failed - len(report.errors)} more errors")
        prefix = "DRY RUN (nothing written): " if report.dry_run else ""
        self.stdout.write(f"{prefix}{report.rows} rows: created {report.created}, updated {report.updated}, "
                          f"skipped {report.skipped}, failed {report.failed}; "
                          f"{report.customers_created} new customer(s)")


class _TextLines:
    """UTF-8 lines (BOM removed, endings kept for the csv module) read from a binary file."""

    def __init__(self, handle):
        self.handle = handle
        self.first = True

    def __iter__(self):
        for raw in self.handle:
            text = raw.decode("utf-8")
            if self.first:
                text, self.first = text.removeprefix("\ufeff"), False
            yield text
