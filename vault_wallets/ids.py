"""Random public ids (``cus_…``, ``spm_…``, ``adr_…``, ``pay_…``): database integers never leave the server."""

from __future__ import annotations

import base64
import hmac
import os
import re
import secrets

from . import conf


def new_uid(prefix: str) -> str:
    """``prefix_`` + 24 URL-safe characters (~143 bits of randomness)."""
    return f"{prefix}_{secrets.token_urlsafe(18)}"


def new_uids(prefix: str, count: int) -> list[str]:
    """``count`` ids as ``new_uid(prefix)`` makes them, from one read of the OS's random source:
    18 random bytes are exactly 24 base64 characters, so the encoding of ``count`` × 18 bytes is
    ``count`` ids side by side (the import makes one per row; ``token_urlsafe`` each cost 1.7 µs)."""
    text = base64.urlsafe_b64encode(os.urandom(18 * count)).decode("ascii")
    return [f"{prefix}_{text[start:start + 24]}" for start in range(0, 24 * count, 24)]


_PUBLIC_ID = re.compile(r"[a-z]{2,8}_[A-Za-z0-9_-]{8,64}")


def is_public_id(value) -> bool:
    """Whether ``value`` has the shape of one of our public ids (``spm_…``).  Lookups answer
    "not found" for anything else before touching the database: a NUL byte or a 10 kB string
    in a URL is a 404, never a database error."""
    return isinstance(value, str) and _PUBLIC_ID.fullmatch(value) is not None


# Named functions (not lambdas) so migrations can reference them as model field defaults.
def new_customer_uid() -> str:
    return new_uid("cus")


def new_payment_method_uid() -> str:
    return new_uid("spm")


def new_address_uid() -> str:
    return new_uid("adr")


def new_charge_uid() -> str:
    return new_uid("pay")


def new_refund_uid() -> str:
    return new_uid("rfd")


def new_event_uid() -> str:
    return new_uid("evt")


def new_erasure_uid() -> str:
    return new_uid("era")


def new_import_uid() -> str:
    return new_uid("imp")


# The sandbox processor's own ids (its "server side").
def new_sandbox_temporary_token() -> str:
    return new_uid("tok_sbx")


def new_sandbox_customer_id() -> str:
    return new_uid("sbxcus")


def new_sandbox_method_token() -> str:
    return new_uid("sbxpm")


def new_sandbox_charge_id() -> str:
    return new_uid("sbxch")


def keyed_hash(purpose: str, *parts: str) -> str:
    """HMAC-SHA256 of ``parts`` under a key derived for ``purpose``; hex.

    Used for card fingerprints (duplicate detection) and token lookups: the stored value
    cannot be turned back into a token or a card number without the server's key.
    """
    return keyed_hasher(purpose)(*parts)


def keyed_hasher(purpose: str):
    """``keyed_hash`` for one purpose with its key derived once: for loops over many values
    (the import), where deriving the key again for every value was a fifth of the work."""
    key = conf.derived_key(purpose)

    def digest(*parts: str) -> str:
        return hmac.digest(key, "\x1f".join(parts).encode("utf-8"), "sha256").hex()

    return digest
