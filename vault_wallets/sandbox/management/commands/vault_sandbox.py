"""Make the sandbox processor emit events, delivered through the real webhook endpoint.

    manage.py vault_sandbox noc spm_… --exp-month 11 --exp-year 2031 [--last4 1234] --site http://127.0.0.1:8000
    manage.py vault_sandbox noc spm_… --closed --site http://127.0.0.1:8000
    manage.py vault_sandbox verify spm_… --succeed | --fail  --url https://shop.example/wallet/webhooks/default/

Each changes the sandbox's own record first (as the card network or the verification would),
then POSTs a signed event to the running site's webhook endpoint: ``--url`` (the whole webhook
URL), or ``--site`` (the site's base URL; default ``$VAULT_SITE_URL``) joined with the path your
URLconf gives ``vault_wallets:webhook`` for the method's account.
"""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError
from django.urls import NoReverseMatch, reverse

from vault_wallets.models import SavedPaymentMethod
from vault_wallets.processors import base as p
from vault_wallets.processors import get_processor
from vault_wallets.processors.sandbox import SandboxProcessor


def webhook_url(account: str, url: str | None, site: str | None) -> str:
    """``url`` as given, or the running site's base URL joined with the account's webhook path."""
    if url:
        return url
    site = site or os.environ.get("VAULT_SITE_URL", "")
    if not site:
        raise CommandError("say where the running site is: --site http://127.0.0.1:8000 (or set VAULT_SITE_URL), "
                           "or give the whole webhook URL with --url")
    if not site.startswith(("http://", "https://")):
        raise CommandError(f"--site must start with http:// or https://, not {site!r}")
    try:
        path = reverse("vault_wallets:webhook", kwargs={"account": account})
    except NoReverseMatch:
        raise CommandError("your URLconf does not name 'vault_wallets:webhook' (a custom namespace?): "
                           "give the whole webhook URL with --url") from None
    return site.rstrip("/") + path


class Command(BaseCommand):
    help = "Emit sandbox processor events (notification of change, verification) as signed webhooks."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        noc = sub.add_parser("noc", help="the card network changed a saved card")
        noc.add_argument("method", help="the saved payment method's id (spm_…)")
        noc.add_argument("--exp-month", type=int, help="the new expiry month (required unless --closed)")
        noc.add_argument("--exp-year", type=int, help="the new expiry year (required unless --closed)")
        noc.add_argument("--last4")
        noc.add_argument("--closed", action="store_true", help="the account was closed (no new expiry)")
        verify = sub.add_parser("verify", help="complete a pending verification")
        verify.add_argument("method", help="the saved payment method's id (spm_…)")
        outcome = verify.add_mutually_exclusive_group(required=True)
        outcome.add_argument("--succeed", action="store_true")
        outcome.add_argument("--fail", action="store_true")
        for command in (noc, verify):
            command.add_argument("--url", help="the whole webhook URL to POST to")
            command.add_argument("--site", help="the running site's base URL, e.g. http://127.0.0.1:8000 "
                                                "(default: $VAULT_SITE_URL); the path comes from your URLconf")

    def handle(self, *args, action, method, url=None, site=None, **options):
        saved = SavedPaymentMethod.objects.select_related("customer").filter(uid=method).first()
        if saved is None or not saved.processor_token:
            raise CommandError(f"no saved payment method {method!r} (or it was removed)")
        account = saved.customer.account
        processor = get_processor(account)
        if not isinstance(processor, SandboxProcessor):
            raise CommandError(f"{method} belongs to account {account!r}, which does not use the sandbox")
        method_id = saved.processor_ref.method_id
        target = webhook_url(account, url, site)
        try:
            if action == "noc":
                last4 = options.get("last4")
                if last4 is not None and not (len(last4) == 4 and last4.isdigit()):
                    raise CommandError("--last4 must be four digits")
                exp_month, exp_year = options.get("exp_month"), options.get("exp_year")
                if not options["closed"] and (exp_month is None or exp_year is None):
                    raise CommandError("give the new expiry with --exp-month and --exp-year (or use --closed)")
                if exp_month is not None and not 1 <= exp_month <= 12:
                    raise CommandError("--exp-month must be 1 to 12")
                processor.network_update(method_id, exp_month=exp_month, exp_year=exp_year,
                                         last4=last4, closed=options["closed"])
                event_type, data = "provider.noc", {"payment_method_ids": [method_id],
                                                    "customer_id": saved.customer.processor_customer_id}
            else:
                processor.complete_verification(method_id, succeed=options["succeed"])
                event_type = ("payment_method.verification_succeeded" if options["succeed"]
                              else "payment_method.verification_failed")
                data = {"payment_method_id": method_id, "customer_id": saved.customer.processor_customer_id}
            status, body = processor.deliver_webhook(target, event_type, data)
        except p.ProcessorError as exc:
            raise CommandError(exc.message) from None
        if status != 200:
            raise CommandError(f"the webhook endpoint answered {status}: {body[:300]}")
        self.stdout.write(self.style.SUCCESS(f"delivered {event_type} for {method} to {target}: {body[:200]}"))
