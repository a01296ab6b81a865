"""``manage.py vault_export --account NAME [--format csv|jsonl] [--output FILE]``: display data and
processor references of an account's saved methods — never a token."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from ... import conf
from ...services import exporting


class Command(BaseCommand):
    help = "Export an account's saved payment methods (display data and processor references, never tokens)."

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True)
        parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
        parser.add_argument("--output", "-o", help="File to write (default: standard output).")
        parser.add_argument("--include-removed", action="store_true")

    def handle(self, *args, **options):
        if not conf.is_configured_account(options["account"]):
            raise CommandError(f"vault_wallets account {options['account']!r} is not configured")
        kwargs = {"include_removed": options["include_removed"]}
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8", newline="") as out:
                count = exporting.write_export(out, options["account"], options["format"], **kwargs)
            self.stderr.write(f"exported {count} saved method(s) to {options['output']}")
        else:
            count = exporting.write_export(self.stdout, options["account"], options["format"], **kwargs)
            sys.stderr.write(f"exported {count} saved method(s)\n")
