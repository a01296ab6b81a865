"""``services.importing.fast_insert``: the import's bulk writer, on both of its paths.

PostgreSQL writes through ``COPY … FROM STDIN`` (text format: tabs, newlines and backslashes
escaped, ``\\N`` for NULL, bytea in hex, JSON as text); the other databases, and a value the
``COPY`` renderer does not know, through one multi-row ``INSERT`` per chunk.  Whatever the path,
what is stored must be exactly what the ORM reads back, tokens encrypted.  The tests that name
``COPY`` only mean something on PostgreSQL; ``tests/mutation/run.py`` runs this file there for
the mutants of the ``COPY`` path (``[tool.vault_wallets.mutation.postgres_only]``).
"""

from __future__ import annotations

import datetime
import time
import tracemalloc
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from fernet_fields.hkdf import derive_fernet_key

from vault_wallets import ids
from vault_wallets.models import Charge, Customer, SavedPaymentMethod, WebhookEvent
from vault_wallets.services import importing, keys

pytestmark = pytest.mark.django_db

on_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="the COPY path is PostgreSQL's")


def _inserts(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]


def _customer(reference="fi-owner") -> Customer:
    return Customer.objects.create(account="default", reference_id=reference, processor_customer_id="cus_owner")


@pytest.fixture(params=["vendor", "insert"])
def path(request, monkeypatch):
    """``vendor``: the database's own path (COPY on PostgreSQL); ``insert``: the INSERT path everywhere."""
    if request.param == "insert":
        monkeypatch.setattr(importing, "_copy_insert", lambda *args: False)
    return request.param


def _expected_inserts(path) -> int:
    return 0 if connection.vendor == "postgresql" and path == "vendor" else 1


def test_fast_insert_writes_what_the_orm_reads_on_both_paths(path):
    """PostgreSQL writes through COPY (text format: tabs, newlines and backslashes escaped, NULLs,
    bytea, JSON defaults); the multi-row INSERT is the other databases' path and the fallback.
    Both must store exactly what the ORM reads back, tokens encrypted."""
    tricky = "tab\there\nnew\\line \\N \\\\x00 \r é€😀"
    importing.fast_insert(Customer, [SimpleNamespace(account="default", reference_id=f"fi-{n}", name=tricky,
                                                     email="", phone="", processor_customer_id=f"cus_{n}")
                                     for n in range(2)])
    customers = list(Customer.objects.filter(reference_id__startswith="fi-").order_by("reference_id"))
    rows = [SimpleNamespace(customer_id=customers[0].pk, method_type="card", processor_token="tok\t\\x1",
                            processor_lookup="a" * 64, status="active", is_default=True, brand="visa",
                            last4="4242", exp_month=None, exp_year=None, holder_name=tricky, bank_name="",
                            account_type="", label="\\N"),
            SimpleNamespace(customer_id=customers[1].pk, method_type="ach", processor_token="plain-token",
                            processor_method_id="pm\n1", processor_lookup="b" * 64, status="expired",
                            is_default=False, brand="", last4="", exp_month=12, exp_year=2034, holder_name="",
                            bank_name="Bank", account_type="checking", label="")]
    with CaptureQueriesContext(connection) as queries:
        importing.fast_insert(SavedPaymentMethod, rows)
    assert len(_inserts(queries)) == _expected_inserts(path)
    first, second = SavedPaymentMethod.objects.filter(customer__in=customers).order_by("customer_id")
    assert (customers[0].name, customers[0].email, customers[0].metadata) == (tricky, "", {})
    assert customers[0].uid.startswith("cus_") and customers[0].uid != customers[1].uid
    assert (first.processor_token, first.processor_method_id, first.holder_name, first.label) == (
        "tok\t\\x1", "", tricky, "\\N")
    assert (first.exp_month, first.exp_year, first.is_default, first.processor_data) == (None, None, True, {})
    assert first.uid.startswith("spm_") and first.created_at is not None and first.fingerprint == ""
    assert (second.processor_token, second.processor_method_id, second.status, second.exp_month) == (
        "plain-token", "pm\n1", "expired", 12)
    with connection.cursor() as cursor:  # stored encrypted: no token in the clear
        cursor.execute("SELECT processor_token, processor_method_id FROM vault_wallets_savedpaymentmethod "
                       "WHERE id = %s", [second.pk])
        stored = b"".join(bytes(v) for v in cursor.fetchone())
    assert b"plain-token" not in stored and b"pm\n1" not in stored


def test_defaults_dates_booleans_json_and_encrypted_json_round_trip(path):
    """Columns left out take the model's defaults (a constant, a callable per row, JSON ``dict``
    and ``list``, ``True``/``False``, numbers); dates, NULLs, encrypted JSON and JSON text that
    needs escaping are stored as given; ``auto_now`` columns get the time of the call."""
    owner = _customer()
    before = timezone.now()
    processed = datetime.datetime(2026, 11, 30, 23, 59, 58, 123456, tzinfo=datetime.timezone.utc)
    notes = ["line\nbreak", "back\\slash", "tab\tand \"quotes\"", {"nested": "\\N"}]
    with CaptureQueriesContext(connection) as event_queries:  # encrypted JSON is bytea too: still COPY
        importing.fast_insert(WebhookEvent, [
            SimpleNamespace(account="default", processor="sandbox", event_id="evt_1", event_id_hash="1" * 64,
                            remote_addr="203.0.113.9", headers={"content-type": "application/json", "x": [1, "\\"]},
                            body="{\"id\": \"evt_1\"}\n", attempts=3, notes=notes, processed_at=processed,
                            next_attempt_at=None, status="processed"),
            SimpleNamespace(account="default", processor="sandbox", event_id="evt_2", event_id_hash="2" * 64,
                            body="", last_error="", last_traceback=""),
        ])
    assert len(_inserts(event_queries)) == _expected_inserts(path)
    with CaptureQueriesContext(connection) as queries:
        importing.fast_insert(Charge, [
            SimpleNamespace(customer_id=owner.pk, amount=1250, currency="USD", idempotency_key="k1"),
            SimpleNamespace(customer_id=owner.pk, amount=99, currency="EUR", idempotency_key="k2",
                            capture_requested=False, amount_captured=99, status="succeeded"),
        ])
    assert len(_inserts(queries)) == _expected_inserts(path)
    first, second = WebhookEvent.objects.filter(account="default").order_by("event_id")
    assert (first.remote_addr, first.headers, first.body, first.attempts) == (
        "203.0.113.9", {"content-type": "application/json", "x": [1, "\\"]}, "{\"id\": \"evt_1\"}\n", 3)
    assert (first.notes, first.processed_at, first.next_attempt_at, first.status) == (
        notes, processed, None, "processed")
    assert (second.remote_addr, second.headers, second.body, second.attempts, second.notes) == (None, {}, "", 0, [])
    assert (second.status, second.processed_at, second.event_type) == ("received", None, "")
    assert first.uid.startswith("evt_") and second.uid.startswith("evt_") and first.uid != second.uid
    assert first.received_at >= before and second.received_at == first.received_at
    one, two = Charge.objects.filter(customer=owner).order_by("idempotency_key")
    assert (one.amount, one.currency, one.capture_requested, one.amount_captured, one.status) == (
        1250, "USD", True, 0, "pending")
    assert (two.amount, two.currency, two.capture_requested, two.amount_captured, two.status) == (
        99, "EUR", False, 99, "succeeded")
    assert one.created_at == one.updated_at == two.updated_at and one.created_at >= before
    assert one.uid != two.uid


def test_a_single_row_and_one_row_per_customer_are_written(path):
    """The smallest batch (one row) and rows whose first row differs from the rest."""
    importing.fast_insert(Customer, [SimpleNamespace(account="default", reference_id="solo",
                                                     processor_customer_id="cus_solo")])
    importing.fast_insert(Customer, [SimpleNamespace(account="default", reference_id=f"many-{n}", name=f"N{n}",
                                                     processor_customer_id=f"cus_{n}") for n in range(3)])
    assert list(Customer.objects.filter(reference_id="solo").values_list("processor_customer_id", "name")) == [
        ("cus_solo", "")]
    assert list(Customer.objects.filter(reference_id__startswith="many-").order_by("reference_id")
                .values_list("reference_id", "name")) == [("many-0", "N0"), ("many-1", "N1"), ("many-2", "N2")]


class _Address(str):
    """An address as some callers hold it: a ``str`` subclass (PostgreSQL's driver adapts it as ``inet``)."""


@on_postgres
def test_a_value_copy_cannot_render_falls_back_to_insert():
    with CaptureQueriesContext(connection) as queries:
        importing.fast_insert(WebhookEvent, [SimpleNamespace(
            account="default", processor="sandbox", event_id="evt_ip", event_id_hash="3" * 64, body="b",
            remote_addr=_Address("198.51.100.7"))])
    assert len(_inserts(queries)) == 1
    assert WebhookEvent.objects.get(event_id="evt_ip").remote_addr == "198.51.100.7"


@on_postgres
def test_copy_streams_rows_as_postgresql_reads_them():
    """The batch is rendered while it is sent, 64 KiB at a time: its text (here ~6 MB of
    encrypted tokens) never sits in memory at once."""
    owner = _customer()
    token = "t" * 2000
    rows = [SimpleNamespace(customer_id=owner.pk, processor_token=token, processor_lookup=f"{n:064d}")
            for n in range(1000)]
    tracemalloc.start()
    try:
        importing.fast_insert(SavedPaymentMethod, rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert SavedPaymentMethod.objects.filter(customer=owner).count() == 1000
    assert SavedPaymentMethod.objects.filter(customer=owner).first().processor_token == token
    assert peak < 2_000_000, f"peak {peak} bytes"


def test_tokens_are_fernet_tokens_of_the_first_key_on_both_paths(path, settings):
    """During a key rotation (two keys) a written token is a Fernet token of the first key, as the
    field's own ``save()`` writes it: readable by ``cryptography.fernet`` with that key alone,
    stamped with the time of writing, a fresh IV for every token (equal tokens, unequal bytes)."""
    settings.FERNET_KEYS = ["import-new-key", "import-old-key"]
    keys.reset_field_key_caches()
    try:
        owner = _customer()
        plains = ["tok-same", "tok-same", "x" * 40, "é€😀"]
        before = int(time.time())
        importing.fast_insert(SavedPaymentMethod, [
            SimpleNamespace(customer_id=owner.pk, method_type="card", processor_token=plain,
                            processor_lookup=f"{n}" * 64, status="active", is_default=False)
            for n, plain in enumerate(plains)])
        after = int(time.time())
        with connection.cursor() as cursor:
            cursor.execute("SELECT processor_token, processor_method_id FROM vault_wallets_savedpaymentmethod "
                           "WHERE customer_id = %s ORDER BY processor_lookup", [owner.pk])
            stored = [(bytes(token), bytes(method_id)) for token, method_id in cursor.fetchall()]
        first, second = Fernet(derive_fernet_key("import-new-key")), Fernet(derive_fernet_key("import-old-key"))
        assert [first.decrypt(token).decode() for token, _ in stored] == plains
        assert {first.decrypt(method_id) for _, method_id in stored} == {b""}
        assert all(before <= first.extract_timestamp(token) <= after for token, _ in stored)
        assert stored[0][0] != stored[1][0]
        for token, _ in stored:
            with pytest.raises(InvalidToken):
                second.decrypt(token)
        assert [m.processor_token for m in SavedPaymentMethod.objects.filter(customer=owner)
                .order_by("processor_lookup")] == plains
    finally:
        keys.reset_field_key_caches()


def test_new_uids_look_like_new_uid_and_do_not_repeat():
    made = ids.new_uids("spm", 500)
    assert len(made) == len(set(made)) == 500
    assert all(ids.is_public_id(uid) and uid.startswith("spm_") and len(uid) == len(ids.new_uid("spm"))
               for uid in made)
    assert ids.new_uids("cus", 1)[0].startswith("cus_") and ids.new_uids("cus", 0) == []
