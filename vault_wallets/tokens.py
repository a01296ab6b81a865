"""Short-lived customer tokens: HS256 JWTs (PyJWT) issued server-side for the logged-in shopper.

Claims: ``sub`` (customer uid), ``acct`` (account), ``ver`` (the customer's token version:
``revoke_customer_tokens`` bumps it, so every earlier token stops working), ``jti``, ``iat``,
``exp``, ``iss`` and ``aud``.  The key is derived from ``SIGNING_KEY`` (or SECRET_KEY) for
this one purpose, never SECRET_KEY itself.  Only HS256 is accepted (so ``alg: none`` and
algorithm confusion fail).
"""

from __future__ import annotations

import functools
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import jwt
from jwt.algorithms import get_default_algorithms
from jwt.utils import base64url_encode

from . import conf

ALGORITHM = "HS256"
ISSUER = "vault_wallets"
AUDIENCE = "vault_wallets:customer"


class InvalidCustomerToken(Exception):
    """The token is expired, tampered with, revoked, or not for this account."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime
    expires_in: int
    jti: str

    def __repr__(self) -> str:
        return f"IssuedToken(jti={self.jti!r}, expires_at={self.expires_at!r})"


@dataclass(frozen=True)
class TokenClaims:
    customer_uid: str
    account: str
    version: int
    jti: str
    expires_at: datetime


def _key() -> bytes:
    return conf.derived_key("customer-token")


@functools.lru_cache(maxsize=8)
def _signer(key: bytes) -> tuple[bytes, Any, Any]:
    """PyJWT's pieces for HS256 tokens under ``key``, made once per key: the encoded header with
    its dot (taken from a token PyJWT itself encoded, so byte for byte its own), PyJWT's HS256
    algorithm and the key as that algorithm prepared it (its checks run here, once)."""
    algorithm = get_default_algorithms()[ALGORITHM]
    header = jwt.encode({}, key, algorithm=ALGORITHM).split(".", 1)[0]
    return f"{header}.".encode("ascii"), algorithm, algorithm.prepare_key(key)


def _encode(claims: dict[str, Any], key: bytes) -> str:
    """``jwt.encode(claims, key, algorithm="HS256")`` for claims of plain JSON values (times as
    integers, as PyJWT writes them): the same token, without PyJWT re-making the header and
    re-checking the key on every call (``tests/test_tokens_fast_encode.py`` compares them)."""
    header, algorithm, prepared = _signer(key)
    signing_input = header + base64url_encode(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
    return (signing_input + b"." + base64url_encode(algorithm.sign(signing_input, prepared))).decode("ascii")


def issue(customer) -> IssuedToken:
    ttl = int(conf.get_setting("CUSTOMER_TOKEN_TTL"))
    now = datetime.now(timezone.utc).replace(microsecond=0)
    expires_at = now + timedelta(seconds=ttl)
    jti = secrets.token_urlsafe(16)
    issued_at = int(now.timestamp())
    claims = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": customer.uid, "acct": customer.account,
        "ver": customer.token_version, "jti": jti, "iat": issued_at, "exp": issued_at + ttl,
    }
    return IssuedToken(token=_encode(claims, _key()), expires_at=expires_at, expires_in=ttl, jti=jti)


def decode(token: str) -> TokenClaims:
    """Verify signature, algorithm, expiry, issuer and audience; return the claims.

    The version and account are checked against the database by the caller
    (``vault_wallets.api.authentication``).
    """
    try:
        claims = jwt.decode(
            token, _key(), algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "jti", "aud", "iss"]}, leeway=0,
        )
    except jwt.PyJWTError as exc:
        raise InvalidCustomerToken(_reason(exc)) from None
    try:
        return TokenClaims(customer_uid=str(claims["sub"]), account=str(claims["acct"]), version=int(claims["ver"]),
                           jti=str(claims["jti"]),
                           expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=timezone.utc))
    except (KeyError, TypeError, ValueError):
        raise InvalidCustomerToken("malformed token") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token expired"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad signature"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "algorithm not allowed"
    return "invalid token"
