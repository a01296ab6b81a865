"""Print new secrets for your settings (nothing is stored; run it once per secret you need).

    manage.py vault_keys            # FERNET_KEY=… and VAULT_WEBHOOK_SECRET=whsec_… lines
    manage.py vault_keys fernet     # only a Fernet key (for FERNET_KEYS)
    manage.py vault_keys webhook    # only a whsec_ secret (the sandbox's WEBHOOK_SECRETS)

Export the values in your environment or secret store; never commit them.  Real processors
issue their own webhook secrets (see each processor's page); ``whsec_`` secrets are the
Standard Webhooks format the sandbox signs with.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand


def new_fernet_key() -> str:
    """A fresh key for ``FERNET_KEYS`` (32 random bytes, url-safe base64)."""
    return Fernet.generate_key().decode("ascii")


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class Command(BaseCommand):
    help = "Print a new Fernet key (FERNET_KEYS) and/or a new whsec_ webhook secret."
    # Runs before the settings are complete (that is what it is for): no system checks.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("kind", nargs="?", choices=("fernet", "webhook"),
                            help="print only this secret, bare (default: both, as NAME=value lines)")

    def handle(self, *args, kind=None, **options):
        if kind == "fernet":
            self.stdout.write(new_fernet_key())
        elif kind == "webhook":
            self.stdout.write(new_webhook_secret())
        else:
            self.stdout.write(f"FERNET_KEY={new_fernet_key()}")
            self.stdout.write(f"VAULT_WEBHOOK_SECRET={new_webhook_secret()}")
