"""Webhook deliveries at rest (issue #9, findings 1 and 8).

* Bodies and headers are Fernet-encrypted: no processor token in the database columns, in the
  ``django.db.backends`` debug log of the INSERT, or in the admin — which shows the processor
  module's redacted view.  Reprocessing works from the encrypted body.  For every processor.
* De-duplication is on a digest of the whole event id, never on a prefix.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from tests.test_processor_services import add, vault  # noqa: F401  (the per-processor fixture)
from vault_wallets import services
from vault_wallets.models import SavedPaymentMethod, WebhookEvent
from vault_wallets.processors import get_processor
from vault_wallets.processors.base import REDACTED, VaultedMethod, redact_keys
from vault_wallets.services import events
from vault_wallets.testing.conformance import NetworkUpdate
from vault_wallets.testing.fakes.caselle import caselle_fake  # noqa: F401  (fixtures)
from vault_wallets.testing.fakes.cybersource import cybersource_fake  # noqa: F401
from vault_wallets.testing.fakes.exact import exact_fake  # noqa: F401
from vault_wallets.testing.fakes.paysimple import paysimple_fake  # noqa: F401
from vault_wallets.testing.fakes.processout import processout_fake  # noqa: F401

pytestmark = pytest.mark.django_db
URL = "/wallet/webhooks/default/"
#: Processors whose NOC delivery itself names the method's token or id (ProcessOut sends only an
#: event id; CyberSource names network-token and instrument-identifier ids, checked below too).
NAMES_THE_METHOD = ("sandbox", "exact", "caselle")


def _post(delivery, capture):
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in delivery.headers.items()
             if k.lower() not in ("content-type", "content-length")}
    with capture(execute=True):
        return APIClient().generic("POST", URL, delivery.body, content_type="application/json", **extra)


def _raw_webhook_rows() -> str:
    """Every column of every stored event, as the database holds it (bytes as latin-1 text)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {WebhookEvent._meta.db_table}")  # noqa: S608 - our own table name
        rows = cursor.fetchall()
    cells = []
    for row in rows:
        for value in row:
            if isinstance(value, (memoryview, bytes, bytearray)):
                value = bytes(value).decode("latin-1")
            cells.append(str(value))
    return "\n".join(cells)


def _secrets_in_delivery(body: bytes) -> list[str]:
    """The id-like strings of a delivery's JSON that sit under the processor's token keys
    (collected independently of the redaction code: every leaf string under such a key)."""
    found: list[str] = []

    def walk(item, hidden=False):
        if isinstance(item, dict):
            for key, inner in item.items():
                if key != "state":  # a network token's state (ACTIVE…) is not a secret
                    walk(inner, hidden or key in KNOWN_TOKEN_KEYS)
        elif isinstance(item, list):
            for inner in item:
                walk(inner, hidden)
        elif hidden and isinstance(item, str) and len(item) >= 6:
            found.append(item.rsplit("/", 1)[-1])

    walk(json.loads(body))
    return found


#: Written out here (not imported) so a processor module that forgets a field fails the test.
KNOWN_TOKEN_KEYS = {"payment_method_ids", "payment_method_id", "paymentMethod", "saved_payment_method_ids",
                    "account_id", "tokenized-cards", "instrumentIdentifiers", "paymentInstruments"}


def test_deliveries_are_encrypted_logged_and_shown_without_tokens(api, vault, user, admin_client, caplog,  # noqa: F811
                                                                  django_capture_on_commit_callbacks):
    method = SavedPaymentMethod.objects.get(uid=add(api, vault).json()["id"])
    customer = services.get_or_create_customer(user)
    customer.refresh_from_db()
    vaulted = VaultedMethod(token=method.processor_token, method_id=method.processor_ref.method_id)
    vault.harness.network_update(customer.processor_ref, vaulted, NetworkUpdate(exp_month=3, exp_year=2036))
    delivery = vault.harness.signed_update_webhook(customer.processor_ref, vaulted)
    secrets = {method.processor_token, method.processor_ref.method_id, *_secrets_in_delivery(delivery.body)}
    secrets.discard("")
    named = [s for s in secrets if s in delivery.body.decode()]
    if vault.name in NAMES_THE_METHOD:
        assert {method.processor_token, method.processor_ref.method_id} & set(named), (vault.name, named)

    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True
    try:
        response = _post(delivery, django_capture_on_commit_callbacks)
    finally:
        connection.force_debug_cursor = False
    assert response.status_code == 200, response.content
    event = WebhookEvent.objects.get(uid=response.json()["id"])
    assert event.status == "processed", (event.last_error, event.notes)

    # The database and its debug log: the INSERT was logged, without a token.
    inserts = [r.getMessage() for r in caplog.records
               if r.name == "django.db.backends" and "INSERT" in r.getMessage() and "webhookevent" in r.getMessage()]
    assert inserts, "the INSERT of the event was not logged"
    # (The sandbox "processor" keeps its own tables in this database; only our event rows count.)
    logged = "\n".join(r.getMessage() for r in caplog.records if "vault_wallets_webhookevent" in r.getMessage())
    raw = _raw_webhook_rows()
    for secret in secrets:
        assert secret not in raw, (vault.name, "database", secret)
        assert secret not in logged, (vault.name, "db log", secret)
    # The model still gives workers the delivery as received.
    assert event.body.encode() == delivery.body
    assert all(event.headers[k.lower()] == v for k, v in delivery.headers.items()
               if k.lower() in event.headers)

    # Staff: list and change page show the redacted view, never a token.
    change = admin_client.get(f"/admin/vault_wallets/webhookevent/{event.pk}/change/")
    listing = admin_client.get("/admin/vault_wallets/webhookevent/")
    assert change.status_code == listing.status_code == 200
    for page in (change.content.decode(), listing.content.decode()):
        for secret in secrets:
            assert secret not in page, (vault.name, "admin", secret)
    html = change.content.decode()
    assert "body (tokens redacted)" in html.lower()
    if named:
        assert REDACTED in html, vault.name
    if vault.name != "processout":  # what staff need stays visible: the event type
        assert json.loads(delivery.body).get("event_type", "") in html or event.event_type in html

    # Reprocessing reads the encrypted body: undo the change, reprocess, the change is back.
    SavedPaymentMethod.objects.filter(pk=method.pk).update(exp_month=1, exp_year=2030)
    call_command("vault_process_events", "--ids", event.uid, stdout=open("/dev/null", "w"))  # noqa: SIM115
    method.refresh_from_db()
    event.refresh_from_db()
    assert (method.exp_month, method.exp_year) == (3, 2036) and event.attempts == 2
    # The admin's "Reprocess" action too.
    SavedPaymentMethod.objects.filter(pk=method.pk).update(exp_month=1, exp_year=2030)
    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post("/admin/vault_wallets/webhookevent/",
                                 {"action": "reprocess", "_selected_action": [event.pk]}, follow=True)
    assert done.status_code == 200
    method.refresh_from_db()
    event.refresh_from_db()
    assert (method.exp_month, method.exp_year) == (3, 2036) and event.attempts == 3, (event.status, event.last_error)


def test_each_processor_names_its_token_fields():
    """The redaction is the processor module's: the same payload is redacted per processor."""
    payload = {"data": {"payment_method_ids": ["sbxpm_abc"], "account_id": 123456, "card_token": "tk",
                        "nested": [{"number": "4111111111111111", "company": "Acme"}]}}
    sandbox = get_processor("default").redact_webhook_payload(payload)
    assert sandbox["data"]["payment_method_ids"] == REDACTED
    assert sandbox["data"]["account_id"] == 123456  # a PaySimple field, not the sandbox's
    assert sandbox["data"]["card_token"] == REDACTED  # any key naming a token
    assert sandbox["data"]["nested"] == [{"number": REDACTED, "company": "Acme"}]
    assert payload["data"]["payment_method_ids"] == ["sbxpm_abc"]  # a copy
    assert redact_keys(payload, ["account_id"])["data"]["account_id"] == REDACTED


def test_staff_view_of_a_body_that_is_not_json(customer):
    event = WebhookEvent.objects.create(account="default", processor="sandbox", event_id="e1",
                                        body="account=sbxpm_secret&x=1")
    event.refresh_from_db()
    assert event.body == "account=sbxpm_secret&x=1"
    shown = events.redacted_body(event)
    assert "sbxpm_secret" not in shown and "not JSON" in shown
    deep = WebhookEvent.objects.create(account="default", processor="sandbox", event_id="e2",
                                       body="[" * 5000 + "]" * 5000)
    assert "not shown" in events.redacted_body(deep)


# -- finding 8: de-duplication on the whole id -----------------------------------------------------


@pytest.fixture
def saved(customer, card_token):
    return services.add_payment_method(customer, card_token())[0]


def test_ids_that_differ_after_255_characters_are_two_events(saved, sandbox, django_capture_on_commit_callbacks):
    prefix = "evt_" + "x" * 300
    statuses = []
    for suffix, year in (("A", 2031), ("B", 2032)):
        sandbox.network_update(saved.processor_ref.method_id, exp_month=5, exp_year=year)
        headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [saved.processor_ref.method_id]},
                                             event_id=prefix + suffix)
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "content-type"}
        with django_capture_on_commit_callbacks(execute=True):
            response = APIClient().generic("POST", URL, body, content_type="application/json", **extra)
        assert response.status_code == 200, response.content
        statuses.append(response.json()["duplicate"])
        saved.refresh_from_db()
        assert saved.exp_year == year  # the second event was processed, not merged into the first
    assert statuses == [False, False]
    stored = sorted(WebhookEvent.objects.values_list("event_id", flat=True))
    assert stored == [prefix + "A", prefix + "B"]  # kept whole
    # A true re-delivery of either is still one event.
    with django_capture_on_commit_callbacks(execute=True):
        again = APIClient().generic("POST", URL, body, content_type="application/json", **extra)
    assert again.json()["duplicate"] is True and WebhookEvent.objects.count() == 2


def test_event_id_hash_is_unique_per_account(db):
    WebhookEvent.objects.create(account="default", processor="sandbox", event_id="same", body="{}")
    WebhookEvent.objects.create(account="eu", processor="sandbox", event_id="same", body="{}")
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookEvent.objects.create(account="default", processor="sandbox", event_id="same", body="{}")


# -- the migration: rows stored before it are encrypted and hashed in place -------------------------


@pytest.mark.django_db(transaction=True)
def test_migration_encrypts_existing_deliveries():
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    ours = next(key for key in executor.loader.graph.nodes
                if key[0] == "vault_wallets" and key[1].endswith("_security"))
    before = executor.loader.graph.node_map[ours].parents
    previous = sorted(parent.key for parent in before if parent.key[0] == "vault_wallets")
    executor.migrate(previous)
    old = MigrationExecutor(connection).loader.project_state(previous).apps.get_model("vault_wallets", "WebhookEvent")
    old.objects.create(uid="evt_migrated", account="default", processor="sandbox", event_id="evt_old",
                       headers={"webhook-id": "evt_old"}, body='{"data": {"payment_method_id": "sbxpm_before"}}')
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    event = WebhookEvent.objects.get(uid="evt_migrated")
    assert event.body == '{"data": {"payment_method_id": "sbxpm_before"}}'
    assert event.headers == {"webhook-id": "evt_old"}
    assert event.event_id_hash == WebhookEvent.hash_event_id("evt_old")
    assert "sbxpm_before" not in _raw_webhook_rows()
    assert "sbxpm_before" not in events.redacted_body(event)


# -- property: a token under any of a processor's token fields never reaches the staff view ----------

_PROCESSOR_CLASSES = [
    "vault_wallets.processors.sandbox.SandboxProcessor", "vault_wallets.processors.paysimple.PaySimpleProcessor",
    "vault_wallets.processors.processout.ProcessOutProcessor",
    "vault_wallets.processors.cybersource.CyberSourceProcessor", "vault_wallets.processors.exact.ExactProcessor",
    "vault_wallets.processors.caselle.CaselleProcessor",
]


def _redaction_property(path: str):
    from django.utils.module_loading import import_string
    from hypothesis import given, settings
    from hypothesis import strategies as st

    token = "tok_PROPERTY_secret_0123456789"
    klass = import_string(path)
    processor = klass.__new__(klass)  # no options needed: redaction never calls the processor
    fields = [*klass.webhook_token_fields, "card_token", "secret", "cardNumber"]
    leaves = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    trees = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)

    @settings(max_examples=60, deadline=None, database=None)
    @given(tree=trees, where=st.lists(st.integers(min_value=0, max_value=5), max_size=4),
           field=st.sampled_from(fields), as_list=st.booleans())
    def check(tree, where, field, as_list):
        planted = {field: [token] if as_list else token}
        payload = {"outer": tree}
        node = payload
        for step in where:  # walk down into the random tree, then plant the token there
            children = [v for v in (node.values() if isinstance(node, dict) else node) if isinstance(v, (dict, list))]
            if not children:
                break
            node = children[step % len(children)]
        if isinstance(node, dict):
            node.update(planted)
        else:
            node.append(planted)
        assert token not in json.dumps(processor.redact_webhook_payload(payload)), (path, field)

    return check


@pytest.mark.parametrize("path", _PROCESSOR_CLASSES)
def test_token_fields_are_redacted_at_any_depth(path):
    _redaction_property(path)()
