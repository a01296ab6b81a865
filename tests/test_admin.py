"""Admin screens: staff see what they need, never a token, a secret or a fingerprint."""

from __future__ import annotations

import pytest

from vault_wallets import services
from vault_wallets.models import Charge, Customer, SavedPaymentMethod

pytestmark = pytest.mark.django_db


@pytest.fixture
def method(customer, card_token):
    return services.add_payment_method(customer, card_token())[0]


def test_admin_pages_never_show_secrets(admin_client, customer, method):
    charge = services.charge(customer, 1500, "USD", idempotency_key="admin-1")
    customer.refresh_from_db()
    secrets = [method.processor_token, method.fingerprint, method.processor_lookup]
    pages = [
        "/admin/vault_wallets/customer/", f"/admin/vault_wallets/customer/{customer.pk}/change/",
        "/admin/vault_wallets/savedpaymentmethod/", f"/admin/vault_wallets/savedpaymentmethod/{method.pk}/change/",
        "/admin/vault_wallets/charge/", f"/admin/vault_wallets/charge/{charge.pk}/change/",
        "/admin/vault_wallets_sandbox/sandboxmethod/",
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for secret in secrets:
            assert secret not in html, (url, secret)
    assert "4242" in admin_client.get("/admin/vault_wallets/savedpaymentmethod/").content.decode()


def test_saved_methods_cannot_be_typed_in(admin_client):
    assert admin_client.get("/admin/vault_wallets/savedpaymentmethod/add/").status_code == 403


def test_refund_and_void_actions(admin_client, customer, method):
    captured = services.charge(customer, 1500, "USD", idempotency_key="a-1")
    authorized = services.charge(customer, 900, "USD", capture=False, idempotency_key="a-2")
    admin_client.post("/admin/vault_wallets/charge/", {"action": "refund_charges", "_selected_action": [captured.pk]})
    admin_client.post("/admin/vault_wallets/charge/", {"action": "void_charges", "_selected_action": [authorized.pk]})
    assert Charge.objects.get(pk=captured.pk).status == "refunded"
    assert Charge.objects.get(pk=authorized.pk).status == "voided"
    # An action that does not fit the state reports an error and changes nothing.
    response = admin_client.post("/admin/vault_wallets/charge/",
                                 {"action": "capture_charges", "_selected_action": [captured.pk]}, follow=True)
    assert b"cannot be changed this way" in response.content
    assert Charge.objects.get(pk=captured.pk).status == "refunded"


def test_revoke_tokens_action(admin_client, customer):
    before = customer.token_version
    admin_client.post("/admin/vault_wallets/customer/", {"action": "revoke_tokens", "_selected_action": [customer.pk]})
    assert Customer.objects.get(pk=customer.pk).token_version == before + 1


def test_refresh_action(admin_client, method, sandbox):
    sandbox.network_update(method.processor_ref.method_id, exp_month=5, exp_year=2033)
    admin_client.post("/admin/vault_wallets/savedpaymentmethod/",
                      {"action": "refresh_from_processor", "_selected_action": [method.pk]})
    refreshed = SavedPaymentMethod.objects.get(pk=method.pk)
    assert (refreshed.exp_month, refreshed.exp_year) == (5, 2033)
    assert refreshed.changes.get().source == "admin refresh"
