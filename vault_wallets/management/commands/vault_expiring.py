"""``manage.py vault_expiring --within-days N``: mark cards past expiry ``expired`` and send
``payment_method_expiring`` once per method and window (what the periodic task does)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from ...services import expiry


class Command(BaseCommand):
    help = "Expire past-due cards and notify (payment_method_expiring) about cards expiring within N days."

    def add_arguments(self, parser):
        parser.add_argument("--within-days", type=int, action="append", dest="windows",
                            help="A notice window in days (repeatable; default 30).")

    def handle(self, *args, **options):
        windows = [w for w in (options["windows"] or expiry.DEFAULT_WINDOWS) if w > 0]
        result = expiry.run_expiry_checks(windows)
        self.stdout.write(f"{result['expired']} card(s) marked expired")
        for days in windows:
            self.stdout.write(f"{result[f'notified_{days}']} card(s) expiring within {days} days notified")
