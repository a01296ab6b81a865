"""Make the sandbox processor emit events, delivered through the real webhook endpoint.

    manage.py vault_sandbox noc spm_… --exp-month 11 --exp-year 2031 [--last4 1234] [--closed]
    manage.py vault_sandbox verify spm_… --succeed | --fail

Each changes the sandbox's own record first (as the card network or the verification would),
then POSTs a signed event to ``--url`` (default: the example shop's webhook URL).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from vault_wallets.models import SavedPaymentMethod
from vault_wallets.processors import base as p
from vault_wallets.processors import get_processor
from vault_wallets.processors.sandbox import SandboxProcessor

DEFAULT_URL = "http://127.0.0.1:8000/wallet/webhooks/{account}/"


class Command(BaseCommand):
    help = "Emit sandbox processor events (notification of change, verification) as signed webhooks."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        noc = sub.add_parser("noc", help="the card network changed a saved card")
        noc.add_argument("method", help="the saved payment method's id (spm_…)")
        noc.add_argument("--exp-month", type=int, required=True)
        noc.add_argument("--exp-year", type=int, required=True)
        noc.add_argument("--last4")
        noc.add_argument("--closed", action="store_true", help="the account was closed")
        verify = sub.add_parser("verify", help="complete a pending verification")
        verify.add_argument("method", help="the saved payment method's id (spm_…)")
        outcome = verify.add_mutually_exclusive_group(required=True)
        outcome.add_argument("--succeed", action="store_true")
        outcome.add_argument("--fail", action="store_true")
        for command in (noc, verify):
            command.add_argument("--url", help=f"webhook URL (default: {DEFAULT_URL})")

    def handle(self, *args, action, method, url=None, **options):
        saved = SavedPaymentMethod.objects.select_related("customer").filter(uid=method).first()
        if saved is None or not saved.processor_token:
            raise CommandError(f"no saved payment method {method!r} (or it was removed)")
        account = saved.customer.account
        processor = get_processor(account)
        if not isinstance(processor, SandboxProcessor):
            raise CommandError(f"{method} belongs to account {account!r}, which does not use the sandbox")
        method_id = saved.processor_ref.method_id
        try:
            if action == "noc":
                last4 = options.get("last4")
                if last4 is not None and not (len(last4) == 4 and last4.isdigit()):
                    raise CommandError("--last4 must be four digits")
                if not 1 <= options["exp_month"] <= 12:
                    raise CommandError("--exp-month must be 1 to 12")
                processor.network_update(method_id, exp_month=options["exp_month"], exp_year=options["exp_year"],
                                         last4=last4, closed=options["closed"])
                event_type, data = "provider.noc", {"payment_method_ids": [method_id],
                                                    "customer_id": saved.customer.processor_customer_id}
            else:
                processor.complete_verification(method_id, succeed=options["succeed"])
                event_type = ("payment_method.verification_succeeded" if options["succeed"]
                              else "payment_method.verification_failed")
                data = {"payment_method_id": method_id, "customer_id": saved.customer.processor_customer_id}
            target = url or DEFAULT_URL.format(account=account)
            status, body = processor.deliver_webhook(target, event_type, data)
        except p.ProcessorError as exc:
            raise CommandError(exc.message) from None
        if status != 200:
            raise CommandError(f"the webhook endpoint answered {status}: {body[:300]}")
        self.stdout.write(self.style.SUCCESS(f"delivered {event_type} for {method} to {target}: {body[:200]}"))
