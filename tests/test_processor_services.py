"""The service-level half of the conformance suite: each processor behind the real app.

Every test runs once per processor — the embedded sandbox and the five processors, each against
its fake over real loopback HTTP — through the shopper API, the services and the webhook
endpoint: what the shop actually uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.processors.test_caselle import CaselleHarness
from tests.processors.test_cybersource import CyberSourceHarness
from tests.processors.test_exact import ExactHarness
from tests.processors.test_paysimple import PaySimpleHarness
from tests.processors.test_processout import ProcessOutHarness
from tests.test_conformance_sandbox import SandboxHarness
from vault_wallets import services
from vault_wallets.exceptions import ProcessorUnavailable
from vault_wallets.models import Charge, SavedPaymentMethod, WebhookEvent
from vault_wallets.processors import get_processor
from vault_wallets.processors.base import VaultedMethod
from vault_wallets.testing.conformance import CARD_DECLINE, CARD_OK, NetworkUpdate
from vault_wallets.testing.fakes.caselle import caselle_fake  # noqa: F401  (fixtures)
from vault_wallets.testing.fakes.cybersource import cybersource_fake  # noqa: F401
from vault_wallets.testing.fakes.exact import exact_fake  # noqa: F401
from vault_wallets.testing.fakes.paysimple import paysimple_fake  # noqa: F401
from vault_wallets.testing.fakes.processout import processout_fake  # noqa: F401

pytestmark = pytest.mark.django_db

HARNESSES = {"paysimple": PaySimpleHarness, "processout": ProcessOutHarness, "cybersource": CyberSourceHarness,
             "exact": ExactHarness, "caselle": CaselleHarness}


@dataclass
class Vault:
    name: str
    harness: object

    @property
    def processor(self):
        return get_processor("default")


@pytest.fixture(params=["sandbox", *HARNESSES])
def vault(request, settings):
    name = request.param
    if name == "sandbox":
        harness = SandboxHarness()
    else:
        harness = HARNESSES[name](request.getfixturevalue(f"{name}_fake"))
        klass = type(harness.processor)
        settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "ACCOUNTS": {
            **settings.VAULT_WALLETS["ACCOUNTS"],
            "default": {"PROCESSOR": f"{klass.__module__}.{klass.__qualname__}",
                        # the checkout loads the fake's stand-in of the browser library
                        "OPTIONS": {**harness.processor.options, "JS_SDK_URL": harness.fake.standin_url()}},
        }}
    vault = Vault(name, harness)
    assert type(vault.processor) is type(harness.processor)
    yield vault
    if name == "sandbox":
        vault.processor.faults.reset()


def browser_token(api, vault, card=CARD_OK) -> str:
    """What the checkout page submits: the checkout-session endpoint first (as wallet.js does),
    then the processor's browser library (the harness plays it) for the shopper's customer."""
    session = api.post("/wallet/checkout-session/", {}, format="json")
    assert session.status_code == 201, session.content
    customer = services.get_or_create_customer(session.wsgi_request.user)
    customer.refresh_from_db()
    return vault.harness.browser_token(customer.processor_ref, card)


def add(api, vault, card=CARD_OK):
    return api.post("/wallet/api/payment-methods/", {"token": browser_token(api, vault, card)}, format="json")


def test_add_duplicate_list_default_remove(api, vault):
    first = add(api, vault)
    assert first.status_code == 201, first.content
    again = add(api, vault)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    listed = api.get("/wallet/api/payment-methods/").json()["results"]
    assert [m["id"] for m in listed] == [first.json()["id"]] and listed[0]["is_default"]
    second = add(api, vault, CARD_DECLINE).json()
    assert api.put("/wallet/api/default-payment-method/", {"saved_payment_method_id": second["id"]},
                   format="json").status_code == 200
    assert api.delete(f"/wallet/api/payment-methods/{second['id']}/").status_code == 204
    listed = api.get("/wallet/api/payment-methods/").json()["results"]
    assert [(m["id"], m["is_default"]) for m in listed] == [(first.json()["id"], True)]


def test_charge_default_decline_and_idempotency(api, vault, user):
    add(api, vault)
    customer = services.get_or_create_customer(user)
    charge = services.charge(customer, 2599, "USD", idempotency_key="order-1")
    assert charge.status == "captured" and charge.processor_reference
    assert services.charge(customer, 2599, "USD", idempotency_key="order-1").pk == charge.pk
    declining = add(api, vault, CARD_DECLINE).json()["id"]
    declined = services.charge(customer, 1000, "USD", declining, idempotency_key="order-2")
    assert declined.status == "declined"
    assert Charge.objects.count() == 2


def test_processor_down_is_503_and_charges_nothing(api, vault, user):
    assert add(api, vault).status_code == 201
    customer = services.get_or_create_customer(user)
    for kind, fail in (("5xx", lambda: vault.harness.fail_next(503)), ("timeout", lambda: vault.harness.hang_next())):
        token = browser_token(api, vault, CARD_DECLINE)
        fail()
        response = api.post("/wallet/api/payment-methods/", {"token": token}, format="json")
        _reset_faults(vault)
        assert response.status_code == 503, response.content
        assert response.json()["error"]["code"] == "processor_unavailable"
        assert SavedPaymentMethod.objects.count() == 1
        fail()
        with pytest.raises(ProcessorUnavailable):
            services.charge(customer, 500, "USD", idempotency_key=f"down-{kind}")
        _reset_faults(vault)
        # Recorded before the call, never charged: the answer was lost or the look-up said "no such charge".
        record = Charge.objects.get(idempotency_key=f"down-{kind}")
        assert record.status in ("unknown", "failed") and record.amount_captured == 0


def _reset_faults(vault):
    if vault.name == "sandbox":
        vault.processor.faults.reset()
    else:
        vault.harness.fake.faults.reset()


def test_noc_through_the_webhook_endpoint(api, vault, user, django_capture_on_commit_callbacks):
    from rest_framework.test import APIClient

    method = SavedPaymentMethod.objects.get(uid=add(api, vault).json()["id"])
    customer = services.get_or_create_customer(user)
    customer.refresh_from_db()
    vaulted = VaultedMethod(token=method.processor_token, method_id=method.processor_ref.method_id)
    vault.harness.network_update(customer.processor_ref, vaulted, NetworkUpdate(exp_month=3, exp_year=2036))
    delivery = vault.harness.signed_update_webhook(customer.processor_ref, vaulted)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in delivery.headers.items()
             if k.lower() not in ("content-type", "content-length")}
    url = "/wallet/webhooks/default/"

    tampered = vault.harness.tamper(delivery)
    bad_extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in tampered.headers.items()
                 if k.lower() not in ("content-type", "content-length")}
    with django_capture_on_commit_callbacks(execute=True):
        refused = APIClient().generic("POST", url, tampered.body, content_type="application/json", **bad_extra)
    if vault.name == "processout":  # unsigned: authenticated by re-fetching, which refuses it
        assert refused.status_code == 200 and WebhookEvent.objects.get().status == "ignored"
    else:
        assert refused.status_code == 400 and WebhookEvent.objects.count() == 0
    method.refresh_from_db()
    assert method.exp_year != 2036, [(e.status, e.notes, e.last_error) for e in WebhookEvent.objects.all()]

    with django_capture_on_commit_callbacks(execute=True):
        response = APIClient().generic("POST", url, delivery.body, content_type="application/json", **extra)
    assert response.status_code == 200, response.content
    event = WebhookEvent.objects.get(uid=response.json()["id"])
    assert event.status == "processed", (event.last_error, event.notes)
    method.refresh_from_db()
    assert (method.exp_month, method.exp_year) == (3, 2036)
    assert method.changes.count() == 1


def test_customer_token_carries_the_processor_client_token(api, vault):
    body = api.post("/wallet/customer-token/", {}, format="json").json()
    if vault.processor.supports_client_token:
        assert body["processor_client_token"]
    else:
        assert body["processor_client_token"] is None
