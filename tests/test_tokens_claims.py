"""Customer-token claims pinned one by one: each required claim, issuer, audience, leeway, reasons.

Written to kill the mutants of ``vault_wallets/tokens.py`` that survived the first mutation run
(see docs/testing.md): a token without ``exp`` accepted, a foreign issuer accepted, one second of
leeway, naive expiry datetimes, the malformed-token branch.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import jwt
import pytest

from vault_wallets import conf, tokens

pytestmark = pytest.mark.django_db


def _key() -> bytes:
    return conf.derived_key("customer-token")


def _claims(customer, **changes) -> dict:
    now = int(time.time())
    claims = {"iss": tokens.ISSUER, "aud": tokens.AUDIENCE, "sub": customer.uid, "acct": customer.account,
              "ver": customer.token_version, "jti": "jti-under-test", "iat": now, "exp": now + 300}
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _sign(claims: dict, key: bytes | None = None) -> str:
    return jwt.encode(claims, key or _key(), algorithm="HS256")


def test_issued_times_are_aware_utc_whole_seconds(customer, settings):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "CUSTOMER_TOKEN_TTL": 120}
    before = datetime.now(timezone.utc).replace(microsecond=0)
    issued = tokens.issue(customer)
    after = datetime.now(timezone.utc)
    assert issued.expires_at.tzinfo is not None and issued.expires_at.utcoffset() == timedelta(0)
    assert issued.expires_at.microsecond == 0
    assert before + timedelta(seconds=120) <= issued.expires_at <= after + timedelta(seconds=120)
    assert issued.expires_in == 120
    payload = jwt.decode(issued.token, _key(), algorithms=["HS256"], audience=tokens.AUDIENCE)
    assert payload["exp"] - payload["iat"] == 120
    assert payload["exp"] == int(issued.expires_at.timestamp())


def test_decoded_claims_match_what_was_issued(customer):
    issued = tokens.issue(customer)
    claims = tokens.decode(issued.token)
    assert claims.expires_at == issued.expires_at
    assert claims.expires_at.tzinfo is not None and claims.expires_at.utcoffset() == timedelta(0)
    assert claims.jti == issued.jti and len(issued.jti) >= 22  # at least 128 bits, url-safe


def test_jtis_are_unique(customer):
    assert len({tokens.issue(customer).jti for _ in range(20)}) == 20


def test_valid_handmade_token_decodes(customer):
    assert tokens.decode(_sign(_claims(customer))).customer_uid == customer.uid


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "jti", "aud", "iss"])
def test_every_required_claim_is_required(customer, missing):
    with pytest.raises(tokens.InvalidCustomerToken):
        tokens.decode(_sign(_claims(customer, **{missing: None})))


@pytest.mark.parametrize("missing", ["acct", "ver"])
def test_token_without_account_or_version_is_malformed(customer, missing):
    with pytest.raises(tokens.InvalidCustomerToken, match="^malformed token$"):
        tokens.decode(_sign(_claims(customer, **{missing: None})))


def test_non_integer_version_is_malformed(customer):
    with pytest.raises(tokens.InvalidCustomerToken, match="^malformed token$"):
        tokens.decode(_sign(_claims(customer, ver="two")))


def test_foreign_issuer_is_refused(customer):
    with pytest.raises(tokens.InvalidCustomerToken, match="^invalid token$"):
        tokens.decode(_sign(_claims(customer, iss="someone-else")))


def test_foreign_audience_is_refused(customer):
    with pytest.raises(tokens.InvalidCustomerToken, match="^invalid token$"):
        tokens.decode(_sign(_claims(customer, aud="another:audience")))


def test_no_leeway_at_the_expiry_second(customer):
    """A token whose ``exp`` is the current second is expired: zero leeway, not one."""
    now = int(time.time())
    with pytest.raises(tokens.InvalidCustomerToken, match="^token expired$"):
        tokens.decode(_sign(_claims(customer, iat=now - 60, exp=now)))


def test_reasons(customer):
    with pytest.raises(tokens.InvalidCustomerToken, match="^bad signature$"):
        tokens.decode(_sign(_claims(customer), key=b"another-key-that-is-32-bytes-long!"))
    header = {"alg": "HS512"}
    forged = jwt.encode(_claims(customer), _key(), algorithm="HS512", headers=header)
    with pytest.raises(tokens.InvalidCustomerToken, match="^algorithm not allowed$"):
        tokens.decode(forged)
    with pytest.raises(tokens.InvalidCustomerToken, match="^invalid token$"):
        tokens.decode("not-a-jwt")


def test_repr_hides_the_token(customer):
    issued = tokens.issue(customer)
    assert issued.token not in repr(issued) and issued.jti in repr(issued)
