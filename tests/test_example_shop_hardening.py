"""The example shop as ``make demo`` runs it (issue #9, findings 6 and 9), over real HTTP.

* No working secret is committed: SECRET_KEY, the Fernet key and the webhook secret are
  generated on first run into an untracked file; a customer token forged with the key that used
  to be committed, and a webhook signed with the secret that used to be committed, are refused.
  DEBUG is off unless asked for.
* SQLite is configured for concurrent web use: 16 concurrent ``PUT /wallet/api/default-payment-method/``
  against the threaded server, several rounds, give 0 errors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import django
import jwt
import pytest
import requests

from tests.test_browser import ROOT, SHOP, Shop, manage, shop_env

pytestmark = [
    # Runs the shop on its own SQLite file whatever the suite's database: once per CI run is enough.
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="runs in a SQLite pass (CI: nox, 3.13 × 6.1)"),
    pytest.mark.timeout(240),
]

#: What example_project/shop/settings.py used to hold (published in this repository's history).
OLD_SECRET_KEY = "example-shop-secret-key-change-me-in-production"
OLD_WEBHOOK_SECRET = "whsec_ZXhhbXBsZS1zaG9wLXdlYmhvb2stc2VjcmV0"
CONCURRENCY = 16
ROUNDS = 3
#: ``transaction_mode`` and ``init_command`` arrived in Django 5.1 (4.2 LTS ended in April 2026).
needs_sqlite_options = pytest.mark.skipif(django.VERSION < (5, 1), reason="SQLite options need Django >= 5.1")


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hardened-shop")
    # Nothing from the environment: the shop runs on the generated file only, as make demo does.
    saved = {name: os.environ.pop(name) for name in ("SECRET_KEY", "FERNET_KEY", "VAULT_WEBHOOK_SECRET", "DEBUG")
             if name in os.environ}
    try:
        secrets_env = {"VAULT_EXAMPLE_SECRETS": str(tmp / "local_secrets.json")}
        seed = tmp_path_factory.mktemp("hardened-shop-db")  # migrated with this shop's own secrets
        manage(shop_env(seed, **secrets_env), "migrate", "--noinput")
        manage(shop_env(seed, **secrets_env), "create_demo_data")
        with Shop(tmp, seed / "db.sqlite3", **secrets_env) as running:
            path = tmp / "local_secrets.json"
            running.secrets = json.loads(path.read_text()) if path.exists() else {
                "SECRET_KEY": "", "FERNET_KEY": "", "WEBHOOK_SECRET": ""}
            yield running
    finally:
        os.environ.update(saved)


def logged_in(shop) -> requests.Session:
    session = requests.Session()
    session.get(f"{shop.url}/accounts/login/", timeout=10)
    response = session.post(f"{shop.url}/accounts/login/", timeout=10, data={
        "username": "shopper", "password": "shopper-demo-pass", "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    assert response.status_code == 200 and "sessionid" in session.cookies, response.text[:300]
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
    return session


def save_card(shop, session, number="4242424242424242") -> str:
    token = requests.post(f"{shop.url}/wallet/sandbox/tokens/", timeout=10, json={
        "number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}).json()["token"]
    response = session.post(f"{shop.url}/wallet/api/payment-methods/", json={"token": token}, timeout=10)
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


def forge(secret_key: str, customer_uid: str) -> str:
    """A customer token as vault_wallets.tokens issues it, keyed from ``secret_key``."""
    key = hmac.new(secret_key.encode(), b"vault_wallets:customer-token", hashlib.sha256).digest()
    now = int(time.time())
    claims = {"iss": "vault_wallets", "aud": "vault_wallets:customer", "sub": customer_uid, "acct": "default",
              "ver": 1, "jti": uuid.uuid4().hex, "iat": now, "exp": now + 600}
    return jwt.encode(claims, key, algorithm="HS256")


def test_secrets_are_generated_untracked_and_private(shop):
    path = Path(shop.env["VAULT_EXAMPLE_SECRETS"])
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    values = shop.secrets
    assert values["SECRET_KEY"] != OLD_SECRET_KEY and len(values["SECRET_KEY"]) >= 50
    assert values["WEBHOOK_SECRET"].startswith("whsec_") and values["WEBHOOK_SECRET"] != OLD_WEBHOOK_SECRET
    from cryptography.fernet import Fernet

    Fernet(values["FERNET_KEY"])  # a well-formed key
    # The default file is ignored by git, and no tracked file holds a generated value.
    default = SHOP / "local_secrets.json"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(default)], cwd=ROOT)
    assert ignored.returncode == 0, "example_project/local_secrets.json must be git-ignored"
    tracked = subprocess.run(["git", "grep", "-l", "-F", "-e", values["SECRET_KEY"], "-e", values["FERNET_KEY"]],
                             cwd=ROOT, capture_output=True, text=True)
    assert tracked.stdout == ""
    settings_source = (SHOP / "shop" / "settings.py").read_text()
    assert OLD_SECRET_KEY not in settings_source and OLD_WEBHOOK_SECRET not in settings_source
    assert "whsec_" not in settings_source.replace('"whsec_…"', "")


def test_a_token_forged_with_the_published_key_is_refused(shop):
    session = logged_in(shop)
    issued = session.post(f"{shop.url}/wallet/customer-token/", json={}, timeout=10)
    assert issued.status_code == 201, issued.text
    uid = issued.json()["customer"]
    me = f"{shop.url}/wallet/api/me/"
    bearer = {"Authorization": f"Bearer {issued.json()['token']}"}
    assert requests.get(me, headers=bearer, timeout=10).status_code == 200
    # The forging recipe is right: with the shop's real (generated) key it would work...
    real = forge(shop.secrets["SECRET_KEY"], uid)
    assert requests.get(me, headers={"Authorization": f"Bearer {real}"}, timeout=10).status_code == 200
    # ...and with the key that used to be committed it does not.
    forged = forge(OLD_SECRET_KEY, uid)
    refused = requests.get(me, headers={"Authorization": f"Bearer {forged}"}, timeout=10)
    assert refused.status_code == 401, refused.text


def test_a_webhook_signed_with_the_published_secret_is_refused(shop):
    from vault_wallets.processors.sandbox import SandboxProcessor

    url = f"{shop.url}/wallet/webhooks/default/"
    for secret, expected in ((OLD_WEBHOOK_SECRET, 400), (shop.secrets["WEBHOOK_SECRET"], 200)):
        signer = SandboxProcessor("default", {"WEBHOOK_SECRETS": [secret]})
        headers, body = signer.make_webhook("charge.refunded", {"charge_id": "pay_nothing"})
        response = requests.post(url, data=body, headers={**headers, "Content-Type": "application/json"}, timeout=10)
        assert response.status_code == expected, (secret[:8], response.text)


def test_debug_is_off_by_default(shop):
    response = requests.get(f"{shop.url}/no-such-page/", timeout=10)
    assert response.status_code == 404
    assert "URLconf" not in response.text and "Django tried these URL patterns" not in response.text
    # Static files are still served (the checkout needs wallet.js) without DEBUG.
    assert requests.get(f"{shop.url}/static/vault_wallets/wallet.js", timeout=10).status_code == 200


@needs_sqlite_options
def test_concurrent_default_changes_on_sqlite(shop):
    """The finding: 12 concurrent PUTs gave "database is locked" 500s on the demo's SQLite."""
    session = logged_in(shop)
    methods = [save_card(shop, session, number) for number in ("4242424242424242", "5555555555554444")]
    cookies = session.cookies.get_dict()
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def put(index: int, barrier: threading.Barrier) -> None:
        client = requests.Session()
        client.cookies.update(cookies)
        client.headers["X-CSRFToken"] = cookies["csrftoken"]
        barrier.wait()
        try:
            response = client.put(f"{shop.url}/wallet/api/default-payment-method/", timeout=60,
                                  json={"saved_payment_method_id": methods[index % 2]})
            outcome = (response.status_code, response.text[:200])
        except requests.RequestException as exc:
            outcome = (0, repr(exc))
        with lock:
            results.append(outcome)

    for _ in range(ROUNDS):
        barrier = threading.Barrier(CONCURRENCY)
        threads = [threading.Thread(target=put, args=(i, barrier)) for i in range(CONCURRENCY)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    errors = [r for r in results if r[0] != 200]
    assert len(results) == CONCURRENCY * ROUNDS
    assert errors == [], errors[:3]
    listed = session.get(f"{shop.url}/wallet/api/payment-methods/", timeout=10).json()["results"]
    assert sum(m["is_default"] for m in listed) == 1  # still exactly one default


@needs_sqlite_options
def test_the_demo_database_uses_wal(shop):
    import sqlite3

    with sqlite3.connect(shop.env["SQLITE_PATH"]) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
