"""Export an account's saved methods: display data and processor references, never tokens.

A processor method id is exported only where it is stored apart from the token (where the
two are the same value, it is the token and stays in the vault).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import TextIO

from ..models import SavedPaymentMethod

COLUMNS = ("id", "customer_id", "customer_reference", "customer_email", "processor_customer_id",
           "processor_method_id", "method_type", "brand", "last4", "exp_month", "exp_year", "holder_name",
           "bank_name", "account_type", "label", "is_default", "status", "verification_status", "created_at")


def export_rows(account: str, *, include_removed: bool = False) -> Iterator[dict]:
    methods = (SavedPaymentMethod.objects.filter(customer__account=account).select_related("customer")
               .defer("processor_token", "customer__processor_customer_secret").order_by("pk"))
    if not include_removed:
        methods = methods.visible()
    for m in methods.iterator(chunk_size=2000):
        customer = m.customer
        yield {
            "id": m.uid, "customer_id": customer.uid, "customer_reference": customer.reference_id,
            "customer_email": customer.email, "processor_customer_id": customer.processor_customer_id,
            "processor_method_id": m.processor_method_id, "method_type": m.method_type, "brand": m.brand,
            "last4": m.last4, "exp_month": m.exp_month, "exp_year": m.exp_year, "holder_name": m.holder_name,
            "bank_name": m.bank_name, "account_type": m.account_type, "label": m.label,
            "is_default": m.is_default, "status": m.status, "verification_status": m.verification_status,
            "created_at": m.created_at.isoformat(),
        }


def write_export(out: TextIO, account: str, fmt: str = "csv", **kwargs) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in export_rows(account, **kwargs):
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
            count += 1
    elif fmt == "jsonl":
        for row in export_rows(account, **kwargs):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    else:
        raise ValueError("format must be csv or jsonl")
    return count
