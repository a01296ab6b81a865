"""``tokens._encode`` (issue #11: PyJWT's header and prepared key made once per key) writes the
very token ``jwt.encode`` writes, and ``issue`` the claims it always wrote."""

from __future__ import annotations

from datetime import datetime, timezone

import jwt
import pytest

from vault_wallets import tokens

pytestmark = pytest.mark.django_db


def test_the_token_is_byte_for_byte_pyjwts():
    claims = {"iss": tokens.ISSUER, "aud": tokens.AUDIENCE, "sub": "cus_x", "acct": "default", "ver": 3,
              "jti": "j-1", "iat": 1_800_000_000, "exp": 1_800_000_900}
    for key in (b"k" * 32, b"another key of 32 bytes........."):
        assert tokens._encode(claims, key) == jwt.encode(claims, key, algorithm="HS256")


def test_issue_writes_the_claims_pyjwt_wrote(customer):
    issued = tokens.issue(customer)
    claims = jwt.decode(issued.token, tokens._key(), algorithms=["HS256"], audience=tokens.AUDIENCE,
                        issuer=tokens.ISSUER)
    assert claims["exp"] == int(issued.expires_at.timestamp()) and claims["exp"] - claims["iat"] == issued.expires_in
    assert datetime.fromtimestamp(claims["iat"], tz=timezone.utc) <= datetime.now(timezone.utc)
    assert (claims["sub"], claims["acct"], claims["ver"], claims["jti"]) == (
        customer.uid, customer.account, customer.token_version, issued.jti)
    assert jwt.get_unverified_header(issued.token) == {"alg": "HS256", "typ": "JWT"}
