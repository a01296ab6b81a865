"""The sandbox tokenizer endpoint and the sandbox's processor-like behaviour."""

from __future__ import annotations

from datetime import date

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from vault_wallets.sandbox import cards
from vault_wallets.sandbox.models import SandboxMethod, SandboxTemporaryToken

pytestmark = pytest.mark.django_db

CARD = {"number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": date.today().year + 3, "cvc": "123"}


def tokenize(data, path="/wallet/sandbox/tokens/"):
    return APIClient(enforce_csrf_checks=True).post(path, data, format="json")


def test_tokenize_card():
    response = tokenize(CARD)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"token", "expires_at"} and body["token"].startswith("tok_sbx_")
    record = SandboxTemporaryToken.objects.get(token=body["token"])
    assert (record.brand, record.last4, record.exp_month) == ("visa", "4242", 12)
    assert 14 * 60 < (record.expires_at - timezone.now()).total_seconds() <= 15 * 60
    # No card number is stored anywhere in the sandbox's record.
    for field in SandboxTemporaryToken._meta.fields:
        assert "4242424242424242" not in str(getattr(record, field.attname))


@pytest.mark.parametrize("change, field", [
    ({"number": "4242424242424241"}, "number"),  # Luhn
    ({"number": "4111111111111111"}, "number"),  # valid but not a sandbox test card
    ({"exp_year": 2020}, "exp_year"),  # past
    ({"exp_month": 13}, "exp_month"),
    ({"cvc": "12"}, "cvc"),
])
def test_tokenize_rejects_bad_cards(change, field):
    response = tokenize({**CARD, **change})
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert SandboxTemporaryToken.objects.count() == 0


@pytest.mark.parametrize("missing", ["number", "exp_month", "exp_year", "cvc"])
def test_tokenize_missing_field_is_400(missing):
    data = {k: v for k, v in CARD.items() if k != missing}
    response = tokenize(data)
    assert response.status_code == 400 and missing in response.json()["error"]["fields"]


def test_tokenize_bank_account():
    response = tokenize({"routing_number": "110000000", "account_number": "000123456789"})
    assert response.status_code == 201
    assert tokenize({"routing_number": "110000001", "account_number": "000123456789"}).status_code == 400


def test_tokenizer_is_404_for_a_non_sandbox_account(settings):
    settings.VAULT_WALLETS = {
        "DEFAULT_ACCOUNT": "default",
        "ACCOUNTS": {"default": {"PROCESSOR": "tests.processors_fixture.NotSandbox"}},
    }
    assert tokenize(CARD).status_code == 404


def test_temporary_token_is_single_use(customer, sandbox):
    from vault_wallets import services
    from vault_wallets.exceptions import TemporaryTokenError

    token = tokenize(CARD).json()["token"]
    services.add_payment_method(customer, token)
    with pytest.raises(TemporaryTokenError):
        services.add_payment_method(customer, token)


def test_verification_failure_consumes_the_token(customer, sandbox):
    from vault_wallets import services
    from vault_wallets.exceptions import TemporaryTokenError, VerificationFailedError

    token = tokenize({**CARD, "number": "4000000000000127"}).json()["token"]
    with pytest.raises(VerificationFailedError):
        services.add_payment_method(customer, token)
    with pytest.raises(TemporaryTokenError):
        services.add_payment_method(customer, token)
    assert SandboxMethod.objects.count() == 0


def test_idempotency_key_replays_the_same_charge(customer, card_token, sandbox):
    from vault_wallets import services
    from vault_wallets.processors.base import ChargeRequest

    services.add_payment_method(customer, card_token())
    customer.refresh_from_db()
    request = ChargeRequest(customer=customer.processor_ref, amount=100, currency="USD", idempotency_key="k1")
    first, again = sandbox.charge(request), sandbox.charge(request)
    assert first.reference == again.reference
    from vault_wallets.processors.base import InvalidRequestError

    with pytest.raises(InvalidRequestError):
        sandbox.charge(ChargeRequest(customer=customer.processor_ref, amount=101, currency="USD",
                                     idempotency_key="k1"))


def test_luhn_and_routing_helpers():
    assert all(cards.luhn_ok(n) for n in cards.TEST_CARDS)
    assert not cards.luhn_ok("1234") and not cards.luhn_ok("4242x42424242424")
    assert cards.aba_routing_ok("110000000") and not cards.aba_routing_ok("123456789")
