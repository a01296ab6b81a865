"""Processor migration: re-point saved methods to a new account and its tokens.

When a shop changes processor, the processors move the card data between themselves and hand
back a map old token → new token.  ``migrate_account`` moves each customer of the old account
whose every saved method is in the map: same ``cus_…``/``spm_…`` ids, default flag, labels and
history (plus one history entry "processor migration"), new account, processor customer id and
tokens.  One customer per transaction, so an interrupted run leaves every customer either
moved or not, and a re-run goes on with the ones still on the old account (resumable).

The map (CSV with a header, or JSON Lines) has ``old_token`` (or the old processor method id),
``new_token``, and optionally ``new_method_id`` and ``new_customer_id``.  It is held in memory
as keyed hashes of the old tokens plus the new values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from .. import conf
from ..models import Customer, PaymentMethodChange, SavedPaymentMethod
from ..processors import base as p
from .importing import RowError, read_rows

BATCH_SIZE = 200


@dataclass
class MigrationReport:
    customers_moved: int = 0
    methods_moved: int = 0
    customers_left: int = 0
    map_rows: int = 0
    errors: list[dict] = field(default_factory=list)
    dry_run: bool = False


@dataclass(frozen=True)
class Target:
    token: str
    method_id: str
    customer_id: str

    def __repr__(self) -> str:
        return f"<Target method_id={'set' if self.method_id else ''} customer_id={self.customer_id!r}>"


def load_map(lines: Iterable[str], fmt: str, old_account: str, report: MigrationReport) -> dict[str, Target]:
    mapping: dict[str, Target] = {}
    for line, raw in read_rows(lines, fmt):
        report.map_rows += 1
        if isinstance(raw, RowError):
            report.errors.append({"map_line": line, "error": str(raw)})
            continue
        old = str(raw.get("old_token") or raw.get("old_method_id") or "").strip()
        new = str(raw.get("new_token") or "").strip()
        if not old or not new:
            report.errors.append({"map_line": line, "error": "old_token and new_token are required"})
            continue
        mapping[SavedPaymentMethod.lookup_for(old_account, old)] = Target(
            token=new, method_id=str(raw.get("new_method_id") or "").strip(),
            customer_id=str(raw.get("new_customer_id") or "").strip())
    return mapping


def migrate_account(old_account: str, new_account: str, mapping: dict[str, Target], *, dry_run: bool = False,
                    report: MigrationReport | None = None,
                    progress: Callable[[MigrationReport], None] | None = None) -> MigrationReport:
    conf.account_config(old_account)
    conf.account_config(new_account)
    if old_account == new_account:
        raise ValueError("the old and the new account are the same")
    report = report or MigrationReport()
    report.dry_run = dry_run
    last = 0
    while True:
        batch = list(Customer.objects.filter(account=old_account, pk__gt=last).order_by("pk")
                     .values_list("pk", flat=True)[:BATCH_SIZE])
        if not batch:
            break
        for pk in batch:
            _move_customer(pk, old_account, new_account, mapping, dry_run, report)
        last = batch[-1]
        if progress:
            progress(report)
    return report


def _move_customer(pk: int, old: str, new: str, mapping: dict[str, Target], dry_run: bool,
                   report: MigrationReport) -> None:
    try:
        with transaction.atomic():
            customer = Customer.objects.select_for_update().get(pk=pk)
            if customer.account != old:
                return  # moved meanwhile
            methods = list(SavedPaymentMethod.objects.filter(customer=customer).for_display())
            live = [m for m in methods if m.status != p.METHOD_REMOVED]
            unmapped = [m.uid for m in live if m.processor_lookup not in mapping]
            if unmapped:
                report.customers_left += 1
                report.errors.append({"customer": customer.uid,
                                      "error": f"{len(unmapped)} saved method(s) not in the map: "
                                               f"{', '.join(unmapped[:5])}"})
                return
            new_customer_ids = {mapping[m.processor_lookup].customer_id for m in live} - {""}
            if len(new_customer_ids) > 1:
                report.customers_left += 1
                report.errors.append({"customer": customer.uid, "error": "the map names several new customers"})
                return
            for m in live:
                target = mapping[m.processor_lookup]
                method_id = target.method_id or target.token
                before = {"account": old}
                SavedPaymentMethod.objects.filter(pk=m.pk).update(
                    processor_token=target.token,
                    processor_method_id=target.method_id if target.method_id != target.token else "",
                    processor_lookup=SavedPaymentMethod.lookup_for(new, method_id))
                PaymentMethodChange.objects.create(payment_method=m, source="processor migration",
                                                   before=before, after={"account": new})
            Customer.objects.filter(pk=customer.pk).update(
                account=new, processor_customer_id=next(iter(new_customer_ids), ""), processor_customer_secret="")
            report.customers_moved += 1
            report.methods_moved += len(live)
            if dry_run:
                transaction.set_rollback(True)
    except IntegrityError:
        report.customers_left += 1
        report.errors.append({"customer": Customer.objects.filter(pk=pk).values_list("uid", flat=True).first(),
                              "error": f"account {new!r} already has a customer with this reference"})
