"""vault_import / vault_export / vault_migrate and the staff import API."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.processors.test_caselle import options_for
from vault_wallets import ids, services
from vault_wallets.models import Customer, ImportChunk, ImportJob, SavedPaymentMethod
from vault_wallets.processors import get_processor
from vault_wallets.processors.base import CustomerData, VaultRequest
from vault_wallets.services import importing
from vault_wallets.testing.fakes.caselle import caselle_fake  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

COLUMNS = ["customer_reference", "customer_email", "processor_customer_id", "token", "brand", "last4", "exp_month",
           "exp_year", "holder_name", "label", "is_default"]


def existing_tokens(sandbox, count, account="default"):
    """Methods that already exist at the processor (the shop used it before vault_wallets)."""
    processor = get_processor(account)
    rows = []
    for n in range(count):
        pcus = processor.create_customer(CustomerData(reference_id=f"legacy-{n}", email=f"legacy{n}@example.com"))
        vaulted = processor.vault_payment_method(VaultRequest(
            customer=__import__("vault_wallets.processors.base", fromlist=["CustomerRef"]).CustomerRef(id=pcus.id),
            temporary_token=processor.tokenize_card("4242424242424242", 12, 2034, "123", "Legacy Holder")))
        rows.append({"customer_reference": f"legacy-{n}", "customer_email": f"legacy{n}@example.com",
                     "processor_customer_id": pcus.id, "token": vaulted.token, "brand": "visa", "last4": "4242",
                     "exp_month": "12", "exp_year": "2034", "holder_name": "Legacy Holder", "label": "",
                     "is_default": ""})
    return rows


def write_csv(path, rows, columns=COLUMNS):
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_import_creates_chargeable_methods_reports_bad_rows_and_is_idempotent(tmp_path, sandbox):
    rows = existing_tokens(sandbox, 3)
    bad = [{**rows[0], "token": "", "customer_reference": "x"},                   # line 5: no token
           {**rows[1], "exp_month": "13", "customer_reference": "y"},             # line 6: bad month
           {**rows[2], "last4": "42a2", "customer_reference": "z"}]               # line 7: bad last4
    path = write_csv(tmp_path / "cards.csv", rows + bad)
    out, err = run("vault_import", path, "--account", "default")
    assert "3 new customer(s)" in out and "created 3, updated 0, skipped 0, failed 3" in out
    assert "line 5: token is required" in err and "line 6: exp_month must be between 1 and 12" in err
    assert "line 7: last4 must be four digits" in err
    customer = Customer.objects.get(reference_id="legacy-1")
    method = SavedPaymentMethod.objects.get(customer=customer)
    assert method.is_default and method.status == "active" and method.holder_name == "Legacy Holder"
    assert method.uid.startswith("spm_")
    charge = services.charge(customer, 1200, "USD", idempotency_key="imported-1")
    assert charge.status == "captured"  # the imported token works at the processor
    # Tokens are encrypted at rest.
    with connection.cursor() as cursor:
        cursor.execute("SELECT processor_token FROM vault_wallets_savedpaymentmethod")
        raw = b"".join(bytes(r[0]) for r in cursor.fetchall())
    assert all(row["token"].encode() not in raw for row in rows)
    # A re-run creates nothing new; changed display data is updated.
    rows[0]["label"] = "imported card"
    write_csv(path, rows)
    out, _ = run("vault_import", path, "--account", "default")
    assert "created 0, updated 1, skipped 2, failed 0" in out
    assert SavedPaymentMethod.objects.count() == 3
    assert SavedPaymentMethod.objects.get(customer__reference_id="legacy-0").label == "imported card"


def test_dry_run_writes_nothing_and_jsonl_works(tmp_path, sandbox):
    rows = existing_tokens(sandbox, 2)
    path = tmp_path / "cards.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n[1, 2]\n", encoding="utf-8")
    out, err = run("vault_import", str(path), "--account", "default", "--dry-run")
    assert out.startswith("DRY RUN") and "created 2" in out and "failed 2" in out
    assert "line 3: not JSON" in err and "line 4: a row must be an object" in err
    assert not Customer.objects.exists() and not SavedPaymentMethod.objects.exists()
    out, _ = run("vault_import", str(path), "--account", "default", "--format", "jsonl")
    assert "created 2" in out and SavedPaymentMethod.objects.count() == 2


def test_rows_for_an_unknown_processor_customer_need_one_and_bad_input_never_aborts(tmp_path, sandbox):
    path = tmp_path / "cards.csv"
    path.write_bytes(b"customer_reference,token,last4\nc1,tok_1,1234\nc2,tok_2,12345678\n\"unterminated,x\n")
    out, err = run("vault_import", str(path), "--account", "default")
    assert "failed 3" in out
    assert err.splitlines() == ["line 2: processor_customer_id is required: this processor has no bulk import",
                                "line 3: last4 is longer than 4 characters", "line 4: token is required"]
    assert not Customer.objects.exists()  # a row that could not be imported created no empty customer


def test_import_uses_the_processor_bulk_endpoint(tmp_path, settings, caselle_fake):  # noqa: F811
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "ACCOUNTS": {
        **settings.VAULT_WALLETS["ACCOUNTS"],
        "caselle": {"PROCESSOR": "vault_wallets.processors.caselle.CaselleProcessor",
                    "OPTIONS": options_for(caselle_fake)}}}
    rows = [{"customer_reference": "c-1", "token": "legacy-token-1", "brand": "visa", "last4": "4242",
             "exp_month": "12", "exp_year": "2031"},
            {"customer_reference": "c-1", "token": "legacy-token-2", "brand": "visa", "last4": "1881",
             "exp_month": "1", "exp_year": "2020"},                               # refused: expired
            {"customer_reference": "c-2", "token": "legacy-token-3", "brand": "mastercard", "last4": "4444",
             "exp_month": "3", "exp_year": "2032"}]
    path = write_csv(tmp_path / "c.csv", rows, ["customer_reference", "token", "brand", "last4", "exp_month",
                                                "exp_year"])
    out, err = run("vault_import", path, "--account", "caselle")
    assert "created 2" in out and "failed 1" in out and "line 3: the processor refused it" in err
    assert sum(1 for _, p, _ in caselle_fake.calls if p == "/api/saved-payment-methods/import") == 2
    stored = {m["token"]: uid for uid, m in caselle_fake.saved_methods.items()}
    method = SavedPaymentMethod.objects.get(customer__reference_id="c-2")
    assert method.processor_method_id == stored["legacy-token-3"] and method.processor_token == "legacy-token-3"
    out, _ = run("vault_import", path, "--account", "caselle")
    assert "created 0" in out and len(caselle_fake.saved_methods) == 2


def test_import_memory_stays_flat(tmp_path, sandbox):
    """Peak memory does not grow with the file: 4× the rows, about the same peak."""
    from vault_wallets.processors.base import CustomerRef

    processor = get_processor("default")
    pcus = processor.create_customer(CustomerData(reference_id="bulk"))
    del pcus, CustomerRef

    def peak(count):
        path = tmp_path / f"bulk{count}.csv"
        with open(path, "w", encoding="utf-8") as out:
            out.write("customer_reference,processor_customer_id,token,last4\n")
            for n in range(count):
                out.write(f"r{count}-{n},sbxcus_x,sbxpm_{count}_{n:08d},4242\n")
        tracemalloc.start()
        report = importing.import_file(str(path), "default", batch_size=500)
        peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert report.created == count and report.failed == 0
        return peak_bytes

    small, large = peak(1000), peak(4000)
    assert large < small * 1.5, (small, large)


def test_export_never_contains_tokens(tmp_path, sandbox):
    rows = existing_tokens(sandbox, 2)
    run("vault_import", write_csv(tmp_path / "in.csv", rows), "--account", "default")
    out, _ = run("vault_export", "--account", "default")
    exported = list(csv.DictReader(io.StringIO(out)))
    assert {r["customer_reference"] for r in exported} == {"legacy-0", "legacy-1"}
    assert exported[0]["id"].startswith("spm_") and exported[0]["processor_customer_id"].startswith("sbxcus")
    assert all(row["token"] not in out for row in rows)
    out, _ = run("vault_export", "--account", "default", "--format", "jsonl")
    assert len(out.splitlines()) == 2 and all(row["token"] not in out for row in rows)


def test_migrate_keeps_ids_defaults_labels_and_history_and_is_resumable(tmp_path, customer, card_token, sandbox):
    first = services.add_payment_method(customer, card_token(), label="travel card")[0]
    second = services.add_payment_method(customer, card_token("5555555555554444"))[0]
    other = services.get_or_create_customer(
        __import__("django.contrib.auth", fromlist=["get_user_model"]).get_user_model().objects.create(username="o"))
    lonely = services.add_payment_method(other, card_token())[0]
    # The new processor ("eu") already holds the cards: the processors' transfer file maps the tokens.
    eu = get_processor("eu")
    new_customer = eu.create_customer(CustomerData(reference_id=customer.reference_id))
    from vault_wallets.processors.base import CustomerRef

    new = {m.pk: eu.vault_payment_method(VaultRequest(customer=CustomerRef(id=new_customer.id),
                                                      temporary_token=eu.tokenize_card(number, 12, 2034)))
           for m, number in ((first, "4242424242424242"), (second, "5555555555554444"))}
    map_path = write_csv(tmp_path / "map.csv", [
        {"old_token": m.processor_token, "new_token": new[m.pk].token, "new_customer_id": new_customer.id}
        for m in (first, second)], ["old_token", "new_token", "new_customer_id"])
    out, _ = run("vault_migrate", "--from", "default", "--to", "eu", map_path, "--dry-run")
    assert out.startswith("DRY RUN") and Customer.objects.get(pk=customer.pk).account == "default"
    out, err = run("vault_migrate", "--from", "default", "--to", "eu", map_path)
    assert "moved 1 customer(s) and 2 saved method(s); 1 customer(s) left" in out
    assert f"customer {other.uid}: 1 saved method(s) not in the map: {lonely.uid}" in err
    moved = SavedPaymentMethod.objects.get(pk=first.pk)
    assert (moved.uid, moved.label, moved.is_default, moved.customer.account) == (first.uid, "travel card", True,
                                                                                   "eu")
    assert moved.processor_token == new[first.pk].token
    assert moved.changes.filter(source="processor migration").exists()
    charge = services.charge(Customer.objects.get(pk=customer.pk), 700, "USD", idempotency_key="after-move")
    assert charge.status == "captured"  # charged at the new processor with the new token
    out, _ = run("vault_migrate", "--from", "default", "--to", "eu", map_path)
    assert "moved 0 customer(s)" in out  # a re-run resumes: what moved stays moved


def test_staff_import_api_runs_a_celery_task_with_progress(tmp_path, sandbox, admin_client, api):
    rows = existing_tokens(sandbox, 3)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows + [{**rows[0], "customer_reference": "q", "exp_year": "1999"}])
    upload = SimpleUploadedFile("cards.csv", buffer.getvalue().encode(), content_type="text/csv")
    # Shoppers cannot use it.
    assert api.post("/wallet/api/staff/imports/", {"file": upload, "account": "default"}).status_code == 403
    upload.seek(0)
    response = admin_client.post("/wallet/api/staff/imports/", {"file": upload, "account": "default"})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["id"].startswith("imp_") and body["status_url"].endswith(f"/{body['id']}/")
    status = admin_client.get(body["status_url"]).json()
    assert status["status"] == "done" and status["progress"] == 1.0
    assert (status["report"]["created"], status["report"]["failed"]) == (3, 1)
    assert status["report"]["errors"] == [{"line": 5, "error": "exp_year must be between 2000 and 2099"}]
    assert not ImportChunk.objects.exists()  # the upload (tokens) is gone once processed
    assert ImportJob.objects.get().requested_by.username == "admin"
    bad = admin_client.post("/wallet/api/staff/imports/", {"account": "nope", "file": SimpleUploadedFile("a.csv",
                                                                                                        b"x")})
    assert bad.status_code == 400 and "account" in bad.json()["error"]["message"]


def test_a_dry_run_in_small_batches_counts_each_new_customer_once(sandbox):
    """Each dry-run batch is rolled back: a customer seen again in a later batch is not new again."""
    rows = existing_tokens(sandbox, 2)
    second = {**rows[0], "token": existing_tokens(sandbox, 1)[0]["token"], "last4": "4242"}
    lines = [",".join(COLUMNS) + "\n"] + [",".join(str(r[c]) for c in COLUMNS) + "\n"
                                          for r in (rows[0], rows[1], second, rows[1])]
    dry = importing.Importer("default", dry_run=True, batch_size=2).run(lines, "csv")
    real = importing.Importer("default", batch_size=2).run(lines, "csv")
    assert dry.customers_created == real.customers_created == 2
    assert (dry.created, real.created) == (3, 3)


def test_an_unreadable_csv_row_is_reported_at_its_own_line():
    lines = ["customer_reference,token\n", "a,t1\n", "b,t2\n", "c," + "x" * 200_000 + "\n", "d,t4\n"]
    found = list(importing.read_rows(lines, "csv"))
    assert [line for line, _ in found] == [2, 3, 4, 5]
    assert isinstance(found[2][1], importing.RowError) and "field larger" in str(found[2][1])


def test_a_batch_looks_up_only_the_methods_of_customers_it_did_not_create(sandbox):
    """Customers a batch creates have no methods yet: the batch loads (and clears the default of)
    only the methods of customers that existed before it, with the outcome of looking all up."""
    known = Customer.objects.create(account="default", reference_id="known", processor_customer_id="cus_known")
    old = SavedPaymentMethod.objects.create(customer=known, processor_token="tok_old", last4="1111",
                                            processor_lookup=SavedPaymentMethod.lookup_for("default", "tok_old"),
                                            is_default=True)
    lines = ["customer_reference,processor_customer_id,token,last4,is_default,customer_name,customer_email,"
             "customer_phone\n",
             "known,cus_known,tok_old,1111,,,,\n",      # already there: skipped
             "known,cus_known,tok_new,2222,true,,,\n",  # the new default: the old one's flag is cleared
             "fresh,cus_fresh,tok_a,3333,,Fresh Shopper,fresh@example.com,+1 555 0100\n",  # first: the default
             "fresh,cus_fresh,tok_b,4444,,,,\n"]
    with CaptureQueriesContext(connection) as queries:
        report = importing.Importer("default").run(lines, "csv")
    assert (report.created, report.skipped, report.failed, report.customers_created) == (3, 1, 0, 1)
    fresh = Customer.objects.get(account="default", reference_id="fresh")
    assert (fresh.name, fresh.email, fresh.phone, fresh.processor_customer_id) == (
        "Fresh Shopper", "fresh@example.com", "+1 555 0100", "cus_fresh")
    created = SavedPaymentMethod.objects.filter(customer__in=[known, fresh]).exclude(pk=old.pk)
    assert ids.is_public_id(fresh.uid) and fresh.uid.startswith("cus_")
    assert all(ids.is_public_id(uid) and uid.startswith("spm_") for uid in created.values_list("uid", flat=True))
    assert sorted(SavedPaymentMethod.objects.filter(customer__in=[known, fresh], is_default=True)
                  .values_list("last4", flat=True)) == ["2222", "3333"]
    assert SavedPaymentMethod.objects.get(pk=old.pk).is_default is False
    method_queries = [q["sql"] for q in queries.captured_queries
                      if '"vault_wallets_savedpaymentmethod"."customer_id" IN' in q["sql"]]
    assert len(method_queries) == 2  # the methods of `known` loaded, then its default cleared
    assert all(f"IN ({known.pk})" in sql for sql in method_queries)
    again = importing.Importer("default").run(lines, "csv")  # a re-run: both customers known now
    assert (again.created, again.skipped, again.failed, again.customers_created) == (0, 4, 0, 0)
    assert SavedPaymentMethod.objects.filter(customer__in=[known, fresh]).count() == 4
