"""Secret scan: a shopper's whole life through the real app — once per processor (the sandbox and
the five fakes) — with DEBUG logging captured (SQL included); then every log record, every API
answer, every admin list and change page, and every database cell is searched for processor
tokens, the account's keys and webhook secrets, Fernet keys, SECRET_KEY, JWTs and card numbers.

The sandbox app's own tables are the sandbox *processor's* storage (its tokens are its ids) and
are left out of the database scan, as a real processor's database would be; its admin pages are
scanned like every other.
"""

from __future__ import annotations

import logging
import re

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from tests.test_processor_services import add, vault  # noqa: F401  (the per-processor fixture)
from vault_wallets import services
from vault_wallets.models import Customer, SavedPaymentMethod, WebhookEvent
from vault_wallets.processors.base import VaultedMethod
from vault_wallets.testing.conformance import CARD_DECLINE, NetworkUpdate

from .conftest import record, secret_values

pytestmark = pytest.mark.django_db

JWT = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{16,}")
CARD_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?:4\d{12}(?:\d{3}){0,2}|5[1-5]\d{14}|2[2-7]\d{14}|3[47]\d{13}|"
                         r"6(?:011|5\d\d)\d{12})(?![0-9A-Za-z])")


def luhn(number: str) -> bool:
    total = 0
    for i, digit in enumerate(reversed(number)):
        d = int(digit) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))  # includes exception text and SQL parameters


@pytest.fixture
def debug_logs():
    handler = Capture()
    names = ["", "django", "django.db.backends", "django.request", "vault_wallets", "urllib3", "celery"]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    connection.force_debug_cursor = True  # SQL (with parameters) logged as with DEBUG = True
    yield handler
    connection.force_debug_cursor = False
    logging.getLogger().removeHandler(handler)
    for lg, level in zip(loggers, levels):
        lg.setLevel(level)


def _sandbox_storage_sql(line: str) -> bool:
    """SQL on the sandbox processor's own tables only (its ids are its tokens): like a real
    processor's database log, not the shop's."""
    tables = set(re.findall(r'"(vault_wallets_[a-z_]+)"', line))
    return line.startswith("django.db.backends") and bool(tables) and all(
        t.startswith("vault_wallets_sandbox_") for t in tables)


def find_secrets(text: str, secrets: list[str], *, allow_jwt: bool = False) -> list[str]:
    found = [f"secret {s[:6]}…" for s in secrets if s in text]
    if not allow_jwt:
        found += [f"JWT {m[:12]}…" for m in JWT.findall(text)]
    found += [f"card {m[:6]}…" for m in CARD_NUMBER.findall(text) if luhn(m)]
    return found


def shopper_life(vault, api, user):  # noqa: F811
    """What a shopper and the processor do; returns every API answer ``(label, text)`` and every
    processor token the vault held on the way."""
    answers = []

    def keep(label, response):
        answers.append((label, response.content.decode("utf-8", "replace")))
        assert response.status_code < 500, (label, response.status_code, response.content[:300])
        return response

    first = keep("add card", add(api, vault)).json()
    keep("add declined card", add(api, vault, CARD_DECLINE))
    keep("add the same card again", add(api, vault))
    keep("list", api.get("/wallet/api/payment-methods/"))
    keep("one", api.get(f"/wallet/api/payment-methods/{first['id']}/"))
    keep("label", api.patch(f"/wallet/api/payment-methods/{first['id']}/", {"label": "Personal"}, format="json"))
    keep("default", api.put("/wallet/api/default-payment-method/", {"saved_payment_method_id": first["id"]},
                            format="json"))
    keep("address", api.post("/wallet/api/addresses/", {"name": "Alex", "line1": "1 Main St", "city": "Springfield",
                                                        "postal_code": "12345", "country": "US"}, format="json"))
    keep("me", api.get("/wallet/api/me/"))
    keep("bad token", api.post("/wallet/api/payment-methods/", {"token": "tok_not_real_0000"}, format="json"))
    token = api.post("/wallet/customer-token/", {}, format="json")
    answers.append(("customer-token (its JWTs are the point)", token.content.decode()))
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {token.json()['token']}")
    keep("list with the customer token", bearer.get("/wallet/api/payment-methods/"))

    # The processor announces a change (a NOC); it is received, stored and processed.
    method = SavedPaymentMethod.objects.get(uid=first["id"])
    customer = Customer.objects.get(user=user)
    vaulted = VaultedMethod(token=method.processor_token, method_id=method.processor_ref.method_id)
    vault.harness.network_update(customer.processor_ref, vaulted, NetworkUpdate(exp_month=3, exp_year=2036))
    delivery = vault.harness.signed_update_webhook(customer.processor_ref, vaulted)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in delivery.headers.items()
             if k.lower() not in ("content-type", "content-length")}
    keep("webhook", APIClient().generic("POST", "/wallet/webhooks/default/", delivery.body,
                                        content_type="application/json", **extra))
    for event in WebhookEvent.objects.all():
        services.events.process_event(event.pk)
    keep("after the NOC", api.get(f"/wallet/api/payment-methods/{first['id']}/"))
    services.charge(customer, 1234, "USD", first["id"], idempotency_key="scan-1")
    held = tokens_at_rest()  # removing a method forgets its token: remember every token it had
    keep("remove", api.delete(f"/wallet/api/payment-methods/{first['id']}/"))
    return answers, held


def tokens_at_rest() -> list[str]:
    """The processors' permanent tokens and customer-level secrets.  (A processor's own id for a
    method, when it is not the token, is an identifier like a charge id: not searched for.)"""
    values = set()
    for method in SavedPaymentMethod.objects.all():
        values.add(method.processor_token)
    for customer in Customer.objects.all():
        values.add(customer.processor_customer_secret)
    return [v for v in values if v and len(v) >= 8]


def admin_pages(superuser) -> list[tuple[str, str]]:
    client = Client()
    client.force_login(superuser)
    pages = []
    for model in admin.site._registry:
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        response = client.get(changelist)
        assert response.status_code == 200, changelist
        pages.append((changelist, response.content.decode()))
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            change = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
            response = client.get(change)
            assert response.status_code == 200, change
            pages.append((change, response.content.decode()))
    return pages


def database_cells() -> list[tuple[str, str]]:
    from django.apps import apps

    cells = []
    with connection.cursor() as cursor:
        for model in apps.get_models():
            if model._meta.app_label == "vault_wallets_sandbox" or model._meta.proxy:
                continue  # the sandbox processor's own storage (see the module docstring)
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608  (table names from the models)
            columns = [c[0] for c in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(columns, row):
                    if value is not None:
                        text = bytes(value).decode("latin-1") if isinstance(value, (bytes, memoryview)) else str(value)
                        cells.append((f"{model._meta.db_table}.{column}", text))
    return cells


def test_no_secret_anywhere(vault, api, user, settings, debug_logs, django_user_model):  # noqa: F811
    answers, held = shopper_life(vault, api, user)
    secrets = sorted({*secret_values(settings), *held, *tokens_at_rest()})
    assert any(s.startswith(("sbxpm_", "whsec_")) or len(s) > 12 for s in secrets)
    superuser = django_user_model.objects.create_superuser("scan-admin", "a@example.com", "pw")
    surfaces = {
        "log records": [("log", line) for line in debug_logs.lines if not _sandbox_storage_sql(line)],
        "API answers": answers,
        "admin pages": admin_pages(superuser),
        "database cells": database_cells(),
    }
    assert len(surfaces["log records"]) > 50 and any("INSERT" in line for _, line in surfaces["log records"])
    problems = []
    for surface, items in surfaces.items():
        for where, text in items:
            found = find_secrets(text, secrets, allow_jwt=where.startswith("customer-token"))
            record(f"secret scan: {surface}", 200, refused=not found, leaked=bool(found))
            problems += [f"{vault.name} {surface} {where}: {f}" for f in found]
    assert not problems, "\n".join(problems[:30]) + "\n" + "\n".join(
        text[:600] for _, text in surfaces["log records"] if any(s in text for s in secrets))[:3000]
