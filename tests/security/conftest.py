"""The attack suite's shared parts: the figures it publishes, the six webhook schemes, the secrets
it hunts for.

Figures: every attack is recorded with ``record(category, status, leaked=False)``; at the end
of the session the counts (attempts / refused / leaks / 5xx per category) are written as JSON to
``$VAULT_SECURITY_FIGURES`` when that is set — ``python -m tests.security.figures`` runs this suite
that way and renders the table in docs/security.md.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest

from vault_wallets.testing.fakes.caselle import caselle_fake  # noqa: F401  (fixtures)
from vault_wallets.testing.fakes.cybersource import cybersource_fake  # noqa: F401
from vault_wallets.testing.fakes.exact import exact_fake  # noqa: F401
from vault_wallets.testing.fakes.paysimple import paysimple_fake  # noqa: F401
from vault_wallets.testing.fakes.processout import processout_fake  # noqa: F401

FIGURES: dict[str, dict[str, int]] = defaultdict(lambda: {"attempts": 0, "refused": 0, "leaks": 0, "5xx": 0})


def record(category: str, status: int, *, refused: bool | None = None, leaked: bool = False) -> None:
    """Count one attempt.  ``refused`` defaults to "answered 4xx"."""
    row = FIGURES[category]
    row["attempts"] += 1
    row["refused"] += int(400 <= status < 500 if refused is None else refused)
    row["leaks"] += int(leaked)
    row["5xx"] += int(status >= 500)


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("VAULT_SECURITY_FIGURES")
    if path and FIGURES:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"categories": dict(sorted(FIGURES.items())), "pytest_exit_status": int(exitstatus)}, fh,
                      indent=2)


# -- the six webhook schemes ------------------------------------------------------------------


@dataclass
class Scheme:
    """How to make a delivery the account accepts, for any body we build."""

    name: str
    account: str
    id_field: str
    type_field: str
    #: ``sign(body, unix_ts)`` → headers that authenticate ``body`` (ProcessOut: none, unsigned).
    sign: Callable[[bytes, int], dict[str, str]]
    #: Seconds of clock skew it tolerates, when the scheme is timestamped (None: no timestamp).
    tolerance: int | None = None
    signed: bool = True
    extra: dict = field(default_factory=dict)

    def body(self, event_id: str = "", event_type: str = "", ts: int | None = None, data: bytes = b"{}") -> bytes:
        """A JSON body; ``data`` is a raw JSON fragment (so deep nesting needs no recursion here)."""
        fields = {self.id_field: event_id or f"ev_{self.name}_{time.monotonic_ns()}",
                  self.type_field: event_type or "payment_method.updated", **self.extra}
        if self.name == "caselle":
            fields["timestamp"] = int(time.time()) if ts is None else ts
        head = json.dumps(fields)[:-1].encode()
        key = b'"payload": {"data": ' if self.name == "cybersource" else b'"data": '
        tail = b"}}" if self.name == "cybersource" else b"}"
        return head + b", " + key + data + tail

    def delivery(self, body: bytes, ts: int | None = None) -> dict[str, str]:
        return {"content-type": "application/json", **self.sign(body, int(time.time()) if ts is None else ts)}


def _caselle_ts(body: bytes) -> int:
    import re

    return int(re.search(rb'"timestamp": (-?\d+)', body).group(1))


@pytest.fixture
def schemes(settings, paysimple_fake, processout_fake, cybersource_fake, exact_fake, caselle_fake):  # noqa: F811
    """The sandbox (account ``default``) and the five processors, each an account on its fake."""
    from vault_wallets.processors import cybersource as cs
    from vault_wallets.processors import get_processor
    from vault_wallets.processors import paysimple as ps

    fakes = {"paysimple": paysimple_fake, "processout": processout_fake, "cybersource": cybersource_fake,
             "exact": exact_fake, "caselle": caselle_fake}
    accounts = dict(settings.VAULT_WALLETS["ACCOUNTS"])
    for name, fake in fakes.items():
        accounts[f"sec-{name}"] = {"PROCESSOR": fake.processor_path, "OPTIONS": fake.account_options()}
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "ACCOUNTS": accounts}
    sandbox = get_processor("default")

    def sandbox_sign(body, ts):
        return sandbox.sign_webhook(f"msg_{time.monotonic_ns()}", body, ts)

    def cybersource_sign(body, ts):
        stamp = str(ts * 1000)
        sig = cs.webhook_signature(cs.decode_key(cybersource_fake.WEBHOOK_KEY), stamp, body)
        return {"v-c-signature": f"t={stamp};keyId={cybersource_fake.WEBHOOK_KEY_ID};sig={sig}"}

    return [
        Scheme("sandbox", "default", "id", "type", sandbox_sign, tolerance=300,
               extra={"created_at": datetime.now(timezone.utc).isoformat(), "account": "default"}),
        Scheme("paysimple", "sec-paysimple", "event_id", "event_type",
               lambda body, ts: {"paysimple-hmac-sha256": ps.webhook_signature(paysimple_fake.WEBHOOK_SECRET, body)},
               extra={"merchant_id": paysimple_fake.MERCHANT_ID}),
        Scheme("processout", "sec-processout", "event_id", "event_type", lambda body, ts: {}, signed=False),
        Scheme("cybersource", "sec-cybersource", "transactionTraceId", "eventType", cybersource_sign,
               tolerance=300),
        Scheme("exact", "sec-exact", "id", "event",
               lambda body, ts: {exact_fake.WEBHOOK_HEADER.lower(): exact_fake.WEBHOOK_SECRET}),
        Scheme("caselle", "sec-caselle", "webhook_id", "event_type",
               lambda body, ts: {"x-webhook-signature": caselle_fake.sign(body, _caselle_ts(body))},
               tolerance=14400),
    ]


def post_webhook(client, scheme: Scheme, body: bytes, headers: dict[str, str], account: str | None = None):
    extra = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items() if k.lower() != "content-type"}
    return client.generic("POST", f"/wallet/webhooks/{account or scheme.account}/", body,
                          content_type="application/json", **extra)


def deep(levels: int = 5000) -> bytes:
    return b"[" * levels + b"]" * levels


# -- what must never leak ---------------------------------------------------------------------


def secret_values(settings) -> list[str]:
    """Every configured secret: the processor options named secret, webhook secrets, Fernet keys,
    SECRET_KEY and the derived signing key."""
    from vault_wallets import conf
    from vault_wallets.processors import get_processor

    found = {settings.SECRET_KEY, *settings.FERNET_KEYS, conf.derived_key("customer-token").hex()}
    for account, config in settings.VAULT_WALLETS["ACCOUNTS"].items():
        processor = get_processor(account)
        for key, value in (config.get("OPTIONS") or {}).items():
            if key in getattr(processor, "secret_options", ()) or "SECRET" in key or "KEY" in key or "TOKEN" in key:
                values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
                found.update(str(v) for v in values)
    return sorted(v for v in found if v and len(v) >= 8)
