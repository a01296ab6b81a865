"""Process stored webhook events by hand, in this process (no broker needed).

    manage.py vault_process_events                 # what is waiting: received/processing events, retryable
                                                   # failures, and pending chunks of large NOCs
    manage.py vault_process_events --failed        # also every failed event, even past the attempt limit
    manage.py vault_process_events --ids evt_… evt_…   # these events, whatever their status
    manage.py vault_process_events --since 2026-11-01T00:00
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from vault_wallets.models import NocChunk, WebhookEvent
from vault_wallets.services import events


class Command(BaseCommand):
    help = "Process stored webhook events now, in this process."

    def add_arguments(self, parser):
        parser.add_argument("--failed", action="store_true", help="include every failed event")
        parser.add_argument("--ids", nargs="+", default=[], metavar="EVENT",
                            help="event uids (evt_…) or processor event ids; processed whatever their status")
        parser.add_argument("--since", help="only events received at or after this ISO date/time")
        parser.add_argument("--account", help="only this account's events")

    def handle(self, *args, failed=False, ids=(), since=None, account=None, **options):
        if ids:
            hashes = [WebhookEvent.hash_event_id(i) for i in ids]
            queryset = WebhookEvent.objects.filter(Q(uid__in=ids) | Q(event_id_hash__in=hashes))
        else:
            waiting = events.waiting_events()
            queryset = waiting | WebhookEvent.objects.filter(status=WebhookEvent.FAILED) if failed else waiting
        if since:
            moment = parse_datetime(since) or (parse_date(since) and parse_datetime(f"{since}T00:00:00"))
            if moment is None:
                raise CommandError(f"--since: cannot read {since!r} as an ISO date or date-time")
            if timezone.is_naive(moment):
                moment = timezone.make_aware(moment)
            queryset = queryset.filter(received_at__gte=moment)
        if account:
            queryset = queryset.filter(account=account)
        pks = list(queryset.order_by("received_at").values_list("pk", flat=True).distinct())
        if ids and not pks:
            raise CommandError("no such events")
        counts: dict[str, int] = {}
        for pk in pks:
            try:
                status = events.process_event(pk, force=bool(ids))
            except events.RetryLater as later:
                status = f"retry later ({later})"
            counts[status] = counts.get(status, 0) + 1
            event = WebhookEvent.objects.get(pk=pk)
            self.stdout.write(f"{event.uid} {event.event_type or '-'}: {status}")
        if not ids:
            for chunk in NocChunk.objects.filter(status=NocChunk.PENDING, event__in=queryset.model.objects.filter(
                    account=account) if account else WebhookEvent.objects.all()).order_by("pk"):
                try:
                    status = events.process_chunk(chunk.pk)
                except events.RetryLater as later:
                    status = f"retry later ({later})"
                self.stdout.write(f"{chunk}: {status}")
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to do"
        self.stdout.write(self.style.SUCCESS(f"{len(pks)} event(s): {summary}"))
