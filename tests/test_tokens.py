"""Customer tokens: expiry, tampering, alg none, revocation, another account, query string → 401."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from rest_framework.test import APIClient

from vault_wallets import conf, services, tokens

pytestmark = pytest.mark.django_db


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def issued(customer):
    return tokens.issue(customer)


def test_valid_token(issued, customer):
    response = bearer(issued.token).get("/wallet/api/me/")
    assert response.status_code == 200 and response.json()["id"] == customer.uid


def test_claims(issued, customer):
    claims = tokens.decode(issued.token)
    assert claims.customer_uid == customer.uid and claims.account == "default"
    assert claims.version == customer.token_version and claims.jti == issued.jti
    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == "HS256"


def test_key_is_not_the_secret_key(issued, settings):
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(issued.token, settings.SECRET_KEY, algorithms=["HS256"], audience=tokens.AUDIENCE)


def test_expired_token_is_401(customer, settings):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "CUSTOMER_TOKEN_TTL": 30}
    issued = tokens.issue(customer)
    payload = jwt.decode(issued.token, conf.derived_key("customer-token"), algorithms=["HS256"],
                         audience=tokens.AUDIENCE)
    payload["exp"] = int((datetime.now(timezone.utc) - timedelta(seconds=1)).timestamp())
    expired = jwt.encode(payload, conf.derived_key("customer-token"), algorithm="HS256")
    response = bearer(expired).get("/wallet/api/me/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert "Bearer" in response["WWW-Authenticate"]


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_token_is_401(issued, make_user):
    other = services.get_or_create_customer(make_user("mallory"))
    header, payload, signature = issued.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = other.uid
    forged = f"{header}.{_b64(claims)}.{signature}"
    assert bearer(forged).get("/wallet/api/me/").status_code == 401


def test_alg_none_is_401(issued):
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert bearer(unsigned).get("/wallet/api/me/").status_code == 401


def test_wrong_key_is_401(issued):
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    forged = jwt.encode(claims, "a-guessed-key-that-is-long-enough-32b", algorithm="HS256")
    assert bearer(forged).get("/wallet/api/me/").status_code == 401


def test_revoked_tokens_are_401(issued, customer):
    services.revoke_customer_tokens(customer)
    assert bearer(issued.token).get("/wallet/api/me/").status_code == 401
    fresh = tokens.issue(customer)
    assert bearer(fresh.token).get("/wallet/api/me/").status_code == 200


def test_another_accounts_token_is_401(user):
    eu_customer = services.get_or_create_customer(user, "eu")
    eu_token = tokens.issue(eu_customer).token
    assert bearer(eu_token).get("/wallet/api/me/").status_code == 401
    assert bearer(eu_token).get("/wallet-eu/api/me/").status_code == 200


def test_token_for_a_deleted_customer_is_401(issued, customer):
    from vault_wallets.models import Customer

    Customer.objects.filter(pk=customer.pk).delete()
    assert bearer(issued.token).get("/wallet/api/me/").status_code == 401


def test_token_in_query_string_is_not_accepted(issued):
    client = APIClient()
    for name in ("token", "access_token", "customer_token"):
        assert client.get(f"/wallet/api/me/?{name}={issued.token}").status_code in (401, 403)


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer \xff", "Bearer not.a.jwt"])
def test_malformed_authorization_is_401(header):
    response = APIClient().get("/wallet/api/me/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401


def test_bearer_request_needs_no_csrf(issued, card_token):
    response = bearer(issued.token).post("/wallet/api/payment-methods/", {"token": card_token()}, format="json")
    assert response.status_code == 201


def test_a_changed_signing_key_derives_a_new_key(settings, customer):
    """The derived keys are cached per secret: changing SIGNING_KEY (or SECRET_KEY) takes effect at once."""
    before = conf.derived_key("customer-token")
    issued = tokens.issue(customer)
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "SIGNING_KEY": "another-signing-key-for-this-test-only"}
    assert conf.derived_key("customer-token") != before
    with pytest.raises(tokens.InvalidCustomerToken):
        tokens.decode(issued.token)
    settings.VAULT_WALLETS = {k: v for k, v in settings.VAULT_WALLETS.items() if k != "SIGNING_KEY"}
    settings.SECRET_KEY = "tests-only-another-secret-key-" + "x" * 40
    assert conf.derived_key("customer-token") != before
