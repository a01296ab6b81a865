"""Kill tests for the bulk import (``vault_wallets.services.importing``), issue #13.

Each test drives the import through its public edges (``Importer(...).run``, ``import_file``, the
``vault_import`` command) and checks what a shop or a staff user sees: the report, the stored
methods, what reached the processor, that imported methods can be charged.
"""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.processors.test_caselle import options_for
from vault_wallets import services
from vault_wallets.models import Customer, SavedPaymentMethod
from vault_wallets.processors.base import METHOD_REMOVED, CustomerData, CustomerRef, VaultRequest
from vault_wallets.services import importing
from vault_wallets.testing.fakes.caselle import caselle_fake  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

CARD_COLUMNS = ["customer_reference", "processor_customer_id", "token", "method_id", "brand", "last4",
                "exp_month", "exp_year", "holder_name", "label", "is_default"]
BULK_COLUMNS = ["customer_reference", "token", "brand", "last4", "exp_month", "exp_year", "holder_name"]


def csv_lines(rows, columns):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().splitlines(keepends=True)


def sandbox_cards(sandbox, count, prefix="legacy"):
    """Cards already vaulted at the sandbox (the shop used the processor before vault_wallets)."""
    rows = []
    for n in range(count):
        pcus = sandbox.create_customer(CustomerData(reference_id=f"{prefix}-{n}"))
        vaulted = sandbox.vault_payment_method(VaultRequest(
            customer=CustomerRef(id=pcus.id),
            temporary_token=sandbox.tokenize_card("4242424242424242", 12, 2034, "123", f"Holder {n}")))
        rows.append({"customer_reference": f"{prefix}-{n}", "processor_customer_id": pcus.id,
                     "token": vaulted.token, "method_id": "", "brand": "visa", "last4": "4242",
                     "exp_month": "12", "exp_year": "2034", "holder_name": f"Holder {n}", "label": "",
                     "is_default": ""})
    return rows


@pytest.fixture
def caselle_account(settings, caselle_fake):  # noqa: F811
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "ACCOUNTS": {
        **settings.VAULT_WALLETS["ACCOUNTS"],
        "caselle": {"PROCESSOR": "vault_wallets.processors.caselle.CaselleProcessor",
                    "OPTIONS": options_for(caselle_fake)}}}
    return "caselle"


def bulk_row(reference, token, last4, exp_year="2031", holder_name=""):
    return {"customer_reference": reference, "token": token, "brand": "visa", "last4": last4, "exp_month": "12",
            "exp_year": exp_year, "holder_name": holder_name}


def answer_imports_with(fake, monkeypatch, answer):
    """Route the fake's bulk import endpoint through ``answer(request, real_handler)`` for this test."""
    routes = [(method, regex, (lambda request, _real=func: answer(request, _real))
               if method == "POST" and regex.pattern.startswith("^/api/saved-payment-methods/import") else func)
              for method, regex, func in fake._routes]
    assert routes != fake._routes
    monkeypatch.setattr(fake, "_routes", routes)


# --------------------------------------------------------------------------------------
# A processor with a bulk import endpoint (Caselle)
# --------------------------------------------------------------------------------------


def test_a_dry_run_counts_the_rows_the_processor_would_import_and_sends_nothing(caselle_account, caselle_fake):  # noqa: F811
    """Rows without a method id wait for the processor's bulk import; a dry run reports them as
    created without calling it (``_register_at_processor`` 9)."""
    rows = [bulk_row("c-1", "legacy-token-1", "4242"), bulk_row("c-1", "legacy-token-2", "1881"),
            bulk_row("c-2", "legacy-token-3", "4444")]
    report = importing.Importer(caselle_account, dry_run=True).run(csv_lines(rows, BULK_COLUMNS), "csv")
    summary = report.as_dict()
    assert {key: summary[key] for key in ("created", "updated", "skipped", "failed", "rows", "customers_created",
                                          "dry_run", "errors")} == {
        "created": 3, "updated": 0, "skipped": 0, "failed": 0, "rows": 3, "customers_created": 2, "dry_run": True,
        "errors": []}
    assert not any(path == "/api/saved-payment-methods/import" for _, path, _ in caselle_fake.calls)
    assert not caselle_fake.saved_methods and not Customer.objects.exists()
    # The real run then does what the dry run announced.
    real = importing.Importer(caselle_account).run(csv_lines(rows, BULK_COLUMNS), "csv")
    assert (real.created, real.failed, real.customers_created) == (3, 0, 2)
    assert SavedPaymentMethod.objects.filter(customer__account="caselle").count() == 3


def test_the_holder_name_reaches_the_processor_in_a_bulk_import(caselle_account, caselle_fake):  # noqa: F811
    """The processor keeps the card holder's name and brand of every imported card (``_register_at_processor``
    33, 23)."""
    rows = [bulk_row("c-1", "legacy-token-1", "4242", holder_name="Ada Lovelace"),
            bulk_row("c-2", "legacy-token-2", "4444", holder_name="Grace Hopper")]
    report = importing.Importer(caselle_account).run(csv_lines(rows, BULK_COLUMNS), "csv")
    assert (report.created, report.failed) == (2, 0)
    at_processor = {m["token"]: (m["details"].get("holder_name"), m["details"].get("card_brand"))
                    for m in caselle_fake.saved_methods.values()}
    assert at_processor == {"legacy-token-1": ("Ada Lovelace", "visa"), "legacy-token-2": ("Grace Hopper", "visa")}
    stored = SavedPaymentMethod.objects.get(customer__reference_id="c-1")
    assert stored.holder_name == "Ada Lovelace"
    assert caselle_fake.saved_methods[stored.processor_method_id]["details"]["holder_name"] == "Ada Lovelace"


def test_every_row_of_a_customer_is_reported_when_the_processor_confirms_fewer(
        caselle_account, caselle_fake, monkeypatch):  # noqa: F811
    """The processor's answer leaves out an imported card (a truncated answer): that row fails as
    unconfirmed, and the customer's rows after it are still handled (``_register_at_processor`` 68)."""
    def truncated(request, real):
        response = real(request)
        response.body = {**response.body, "imported": response.body["imported"][:-1]}
        return response

    answer_imports_with(caselle_fake, monkeypatch, truncated)
    rows = [bulk_row("c-1", "legacy-token-1", "4242"),                      # line 2: imported
            bulk_row("c-1", "legacy-token-2", "4444"),                      # line 3: left out of the answer
            bulk_row("c-1", "legacy-token-3", "1881", exp_year="2020"),     # line 4: refused (expired)
            bulk_row("c-1", "legacy-token-4", "1111", exp_year="2019")]     # line 5: refused (expired)
    report = importing.Importer(caselle_account).run(csv_lines(rows, BULK_COLUMNS), "csv")
    assert (report.rows, report.created, report.failed) == (4, 1, 3)
    assert [e["line"] for e in report.errors] == [3, 4, 5]
    assert report.errors[0]["error"] == "the processor did not confirm it"
    assert all(e["error"].startswith("the processor refused it: ") for e in report.errors[1:])
    assert list(SavedPaymentMethod.objects.values_list("processor_token", flat=True)) == ["legacy-token-1"]


def test_a_customer_the_processor_refuses_fails_alone_with_its_reason(caselle_account, caselle_fake, monkeypatch):  # noqa: F811
    """The processor refuses one customer's whole import call: each of its rows is reported with the
    processor's reason, and the next customer's rows are still imported (``_register_at_processor`` 42-46)."""
    refused = []

    def refuse_first_customer(request, real):
        if not refused:
            refused.append(request)
            return caselle_fake.error(400, "the import is temporarily disabled for this customer")
        return real(request)

    answer_imports_with(caselle_fake, monkeypatch, refuse_first_customer)
    rows = [bulk_row("c-1", "legacy-token-1", "4242"), bulk_row("c-1", "legacy-token-2", "4444"),
            bulk_row("c-2", "legacy-token-3", "1111")]
    report = importing.Importer(caselle_account).run(csv_lines(rows, BULK_COLUMNS), "csv")
    assert (report.rows, report.created, report.failed) == (3, 1, 2)
    reason = "the processor refused the import: the import is temporarily disabled for this customer"
    assert report.errors == [{"line": 2, "error": reason}, {"line": 3, "error": reason}]
    assert list(SavedPaymentMethod.objects.values_list("customer__reference_id", "processor_token")) == [
        ("c-2", "legacy-token-3")]


# --------------------------------------------------------------------------------------
# A processor without one (the sandbox)
# --------------------------------------------------------------------------------------


def test_a_re_import_costs_the_same_queries_for_few_or_many_rows(sandbox):
    """Re-importing unchanged methods reads them in one query, whatever their number (``_write`` 15:
    a status loaded per row would be one more query per row of a million-row file)."""
    rows = sandbox_cards(sandbox, 6)
    first = importing.Importer("default").run(csv_lines(rows, CARD_COLUMNS), "csv")
    assert first.created == 6

    def queries(subset):
        with CaptureQueriesContext(connection) as captured:
            report = importing.Importer("default").run(csv_lines(subset, CARD_COLUMNS), "csv")
        assert (report.created, report.updated, report.skipped, report.failed) == (0, 0, len(subset), 0)
        return len(captured.captured_queries)

    assert queries(rows[:2]) == queries(rows)


def test_removed_methods_are_skipped_on_re_import_and_all_counted(sandbox):
    """A method the customer removed is not brought back by a re-run of the same file; the report counts
    every such row (``_write`` 93)."""
    rows = sandbox_cards(sandbox, 3)
    path_lines = csv_lines(rows, CARD_COLUMNS)
    assert importing.Importer("default").run(path_lines, "csv").created == 3
    for row in rows[:2]:
        customer = Customer.objects.get(reference_id=row["customer_reference"])
        services.remove_payment_method(customer, SavedPaymentMethod.objects.get(customer=customer))
    report = importing.Importer("default").run(path_lines, "csv")
    assert (report.created, report.updated, report.skipped, report.failed) == (0, 0, 3, 0)
    assert SavedPaymentMethod.objects.filter(status=METHOD_REMOVED).count() == 2
    assert SavedPaymentMethod.objects.count() == 3


def test_a_customer_not_yet_at_the_processor_needs_its_processor_customer_id(sandbox, customer, tmp_path):
    """The shop's customer exists in the vault but was never registered at the processor: a row
    without ``processor_customer_id`` is refused with the message a staff user reads (``_write`` 137)."""
    assert customer.processor_customer_id == ""
    [card] = sandbox_cards(sandbox, 1)
    lines = csv_lines([{**card, "customer_reference": customer.reference_id, "processor_customer_id": ""}],
                      CARD_COLUMNS)
    out, err = io.StringIO(), io.StringIO()
    import_path = str(tmp_path / "cards.csv")
    with open(import_path, "w", encoding="utf-8", newline="") as handle:
        handle.writelines(lines)
    call_command("vault_import", import_path, "--account", "default", stdout=out, stderr=err)
    assert "created 0, updated 0, skipped 0, failed 1" in out.getvalue()
    assert err.getvalue().splitlines() == [
        "line 2: processor_customer_id is required: this processor has no bulk import"]
    report = importing.import_file(import_path, "default")
    assert report.errors == [{"line": 2, "error": "processor_customer_id is required: this processor has no bulk "
                                                  "import"}]
    assert not SavedPaymentMethod.objects.exists()


def test_the_processor_method_id_is_kept_only_when_it_differs_from_the_token(sandbox):
    """``method_id`` names the method at the processor (what a charge or a removal sends); a method id
    equal to the token is not stored twice (``_write`` 157, 165)."""
    rows = sandbox_cards(sandbox, 2)
    rows[0]["method_id"] = rows[0]["token"]             # an export that repeats the token as the method id
    rows[1]["method_id"] = "pm_legacy_other_id"         # a processor whose method id is not the token
    report = importing.Importer("default").run(csv_lines(rows, CARD_COLUMNS), "csv")
    assert (report.created, report.failed) == (2, 0)
    same = SavedPaymentMethod.objects.get(customer__reference_id="legacy-0")
    other = SavedPaymentMethod.objects.get(customer__reference_id="legacy-1")
    assert same.processor_method_id == "" and same.processor_ref.method_id == rows[0]["token"]
    assert other.processor_method_id == "pm_legacy_other_id"
    assert other.processor_ref.method_id == "pm_legacy_other_id"
    # The first one is charged at the processor through the method id the import kept.
    charge = services.charge(same.customer, 1500, "USD", idempotency_key="imported-same-id")
    assert charge.status == "captured"


def test_a_bank_account_without_a_method_id_is_refused_for_its_routing_number(caselle_account, caselle_fake):  # noqa: F811
    """Caselle's import needs an ACH account's routing number, which an import file has no column
    for: the row is refused with the processor's reason, sent as a bank account — not as a card —
    with its bank and account type (``_register_at_processor`` 28; 25, 26, 34, 35 are equivalent:
    the item is refused before those fields matter, docs/testing.md)."""
    rows = [{"customer_reference": "c-1", "token": "legacy-ach-1", "method_type": "ach", "last4": "6789",
             "exp_month": "12", "exp_year": "2034", "bank_name": "First Bank", "account_type": "checking"},
            bulk_row("c-1", "legacy-token-2", "4444")]
    columns = [*BULK_COLUMNS, "method_type", "bank_name", "account_type"]
    report = importing.Importer(caselle_account).run(csv_lines(rows, columns), "csv")
    assert (report.rows, report.created, report.failed) == (2, 1, 1)
    assert report.errors == [{"line": 2, "error": "the processor refused it: "
                                                  "items[0].payment_method.ach.routing_number is required"}]
    assert list(SavedPaymentMethod.objects.values_list("processor_token", flat=True)) == ["legacy-token-2"]
    assert [m["token"] for m in caselle_fake.saved_methods.values()] == ["legacy-token-2"]
