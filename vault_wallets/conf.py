"""The one place vault_wallets reads its settings, always lazily (never at import time).

::

    VAULT_WALLETS = {
        "DEFAULT_ACCOUNT": "default",
        "ACCOUNTS": {
            "default": {
                "PROCESSOR": "vault_wallets.processors.sandbox.SandboxProcessor",
                "OPTIONS": {...},
            },
        },
        "CUSTOMER_TOKEN_TTL": 900,
    }
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SETTINGS_NAME = "VAULT_WALLETS"

DEFAULTS: dict[str, Any] = {
    "DEFAULT_ACCOUNT": "default",
    "ACCOUNTS": {},
    # Lifetime of the customer tokens issued by POST /customer-token/, in seconds.
    "CUSTOMER_TOKEN_TTL": 900,
    # Key for customer tokens and fingerprints; derived from SECRET_KEY when empty.
    "SIGNING_KEY": "",
    # Webhooks (see the webhooks docs).
    # 1 MiB: an account updater's notification of change can name tens of thousands of methods
    # (a Caselle provider.noc with 10,900 ids is already over 256 KiB).
    "WEBHOOK_MAX_BODY_BYTES": 1024 * 1024,
    "WEBHOOK_TOLERANCE_SECONDS": 300,
    "WEBHOOK_MAX_ATTEMPTS": 8,
    "WEBHOOK_RETRY_BACKOFF_SECONDS": 30,
    "WEBHOOK_RETRY_BACKOFF_MAX_SECONDS": 3600,
    # An event not processed this long after receipt (or after the sweeper re-enqueued it) is
    # enqueued again by the sweeper, unless a worker holds it (see docs/reliability.md).
    "WEBHOOK_STALE_SECONDS": 60,
    "WEBHOOK_RELAY_GRACE_SECONDS": 10,
    "NOC_CHUNK_SIZE": 100,
    # Abuse limits (card testing) on the shopper endpoints, "<count>/<second|minute|hour|day>";
    # None switches one off.  Merged key by key with THROTTLE_RATES_DEFAULTS (see the security docs).
    "THROTTLE_RATES": {},
    # The Django cache the throttles count in: shared by every web process in production.
    "THROTTLE_CACHE": "default",
    # Proxies in front of Django that append to X-Forwarded-For; 0 trusts REMOTE_ADDR only.
    "THROTTLE_NUM_PROXIES": 0,
    # After this many verification failures when saving a method, a cool-down refuses new ones.
    "VERIFICATION_FAILURE_LIMIT": 3,
    "VERIFICATION_FAILURE_WINDOW_SECONDS": 3600,
    "VERIFICATION_COOLDOWN_SECONDS": 3600,
    # Money whose answer was lost: first look-up after this many seconds, then backing off.
    "CHARGE_RESOLVE_DELAY_SECONDS": 15,
    # A charge still ``pending`` this long (the process calling the processor died) is looked up.
    "CHARGE_PENDING_STALE_SECONDS": 300,
    # Bounded hand-off from the request to the broker: events waiting in the in-process relay.
    "RELAY_QUEUE_SIZE": 1000,
    # The relay waits this long after an event to process is handed to it, and publishes every
    # event handed over meanwhile in one task message (see vault_wallets.relay).
    "RELAY_BATCH_SECONDS": 0.02,
    # Processor fetches in flight at once per chunk task (threads; see docs/benchmarks.md).
    "NOC_FETCH_CONCURRENCY": 16,
}

THROTTLE_RATES_DEFAULTS: dict[str, str | None] = {
    # POST /customer-token/: a checkout page asks for one per view.
    "customer_token_customer": "20/minute",
    "customer_token_ip": "60/minute",
    # POST /api/payment-methods/ (saving a card or bank account).
    "add_payment_method_customer": "10/hour",
    "add_payment_method_ip": "30/hour",
    # POST /sandbox/tokens/ (the sandbox's stand-in for a processor's tokenizer).
    "sandbox_tokenize_ip": "60/hour",
}


def _user_settings() -> dict[str, Any]:
    value = getattr(settings, SETTINGS_NAME, None) or {}
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{SETTINGS_NAME} must be a dict")
    return value


def get_setting(name: str) -> Any:
    """The value of ``VAULT_WALLETS[name]``, or its default."""
    if name not in DEFAULTS:
        raise KeyError(f"unknown vault_wallets setting {name!r}")
    return _user_settings().get(name, DEFAULTS[name])


def throttle_rate(scope: str) -> str | None:
    """The rate of one throttle scope: ``VAULT_WALLETS["THROTTLE_RATES"]`` over the defaults."""
    rates = get_setting("THROTTLE_RATES") or {}
    if not isinstance(rates, dict):
        raise ImproperlyConfigured(f"{SETTINGS_NAME}['THROTTLE_RATES'] must be a dict")
    return rates.get(scope, THROTTLE_RATES_DEFAULTS.get(scope))


def accounts() -> dict[str, dict[str, Any]]:
    return dict(get_setting("ACCOUNTS") or {})


def default_account() -> str:
    return get_setting("DEFAULT_ACCOUNT")


def account_config(name: str) -> dict[str, Any]:
    try:
        config = accounts()[name]
    except KeyError:
        raise ImproperlyConfigured(f"vault_wallets account {name!r} is not configured") from None
    if not isinstance(config, dict) or not config.get("PROCESSOR"):
        raise ImproperlyConfigured(f"vault_wallets account {name!r} needs a PROCESSOR dotted path")
    return config


def is_configured_account(name: str) -> bool:
    return name in accounts()


def derived_key(purpose: str) -> bytes:
    """A key for one purpose, derived from SIGNING_KEY (or SECRET_KEY); never the raw secret."""
    return _derive(get_setting("SIGNING_KEY") or settings.SECRET_KEY, purpose)


@functools.lru_cache(maxsize=64)
def _derive(base: str, purpose: str) -> bytes:
    # Keyed by the secret itself, so a changed setting derives anew (several per request otherwise).
    return hmac.new(base.encode("utf-8"), f"vault_wallets:{purpose}".encode(), hashlib.sha256).digest()
