"""Management commands a newcomer runs while following the README: vault_keys, vault_sandbox."""

from __future__ import annotations

from io import StringIO

import pytest
from celery import Celery
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from vault_wallets import services
from vault_wallets.checks import check_celery
from vault_wallets.processors.sandbox import SandboxProcessor

SANDBOX = "vault_wallets.processors.sandbox.SandboxProcessor"


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# -- vault_keys ----------------------------------------------------------------------------------
def test_vault_keys_prints_a_working_fernet_key_and_webhook_secret():
    lines = dict(line.split("=", 1) for line in run("vault_keys").splitlines())
    assert set(lines) == {"FERNET_KEY", "VAULT_WEBHOOK_SECRET"}
    fernet = Fernet(lines["FERNET_KEY"].encode())
    assert fernet.decrypt(fernet.encrypt(b"tok")) == b"tok"
    secret = lines["VAULT_WEBHOOK_SECRET"]
    assert secret.startswith("whsec_")
    # The secret passes the sandbox's own option check (the README's "whsec_…" placeholder did not).
    assert SandboxProcessor("x", {"WEBHOOK_SECRETS": [secret]}).check_options() == []
    assert SandboxProcessor("x", {"WEBHOOK_SECRETS": ["whsec_…"]}).check_options() != []


def test_vault_keys_bare_values_are_new_each_time():
    fernet = {run("vault_keys", "fernet").strip() for _ in range(3)}
    webhook = {run("vault_keys", "webhook").strip() for _ in range(3)}
    assert len(fernet) == len(webhook) == 3
    assert all(s.startswith("whsec_") for s in webhook) and not any("=" in k[:-1] for k in fernet)


def test_vault_keys_runs_before_vault_wallets_is_configured(settings):
    del settings.VAULT_WALLETS  # the system checks would fail with E001: the command does not run them
    assert run("vault_keys", "webhook").startswith("whsec_")


# -- vault_sandbox noc ----------------------------------------------------------------------------
@pytest.fixture
def method(customer, card_token):
    saved, _ = services.add_payment_method(customer, card_token())
    return saved


def test_noc_derives_the_webhook_url_from_the_site_and_the_urlconf(method, live_server):
    out = run("vault_sandbox", "noc", method.uid, "--exp-month", "9", "--exp-year", "2030",
              "--site", live_server.url + "/")
    assert f"to {live_server.url}/wallet/webhooks/default/" in out
    method.refresh_from_db()
    assert (method.exp_month, method.exp_year) == (9, 2030)


def test_noc_reads_the_site_from_the_environment(method, live_server, monkeypatch):
    monkeypatch.setenv("VAULT_SITE_URL", live_server.url)
    assert "delivered provider.noc" in run("vault_sandbox", "noc", method.uid, "--exp-month", "3",
                                            "--exp-year", "2033")
    method.refresh_from_db()
    assert method.exp_year == 2033


def test_noc_without_a_site_says_how_to_give_one(method, monkeypatch):
    monkeypatch.delenv("VAULT_SITE_URL", raising=False)
    with pytest.raises(CommandError, match="--site"):
        run("vault_sandbox", "noc", method.uid, "--exp-month", "9", "--exp-year", "2030")
    with pytest.raises(CommandError, match="http"):
        run("vault_sandbox", "noc", method.uid, "--closed", "--site", "127.0.0.1:8000")


def test_noc_closed_needs_no_expiry(method, live_server):
    run("vault_sandbox", "noc", method.uid, "--closed", "--site", live_server.url)
    method.refresh_from_db()
    assert method.status == "closed"


def test_noc_change_without_expiry_is_refused(method, live_server):
    with pytest.raises(CommandError, match="--exp-month and --exp-year"):
        run("vault_sandbox", "noc", method.uid, "--last4", "1881", "--site", live_server.url)


# -- W020: webhooks with no way to process them ---------------------------------------------------
def celery_app(**conf) -> Celery:
    app = Celery("w020", set_as_current=False)
    app.conf.update(**conf)
    return app


@pytest.mark.parametrize("conf, warned", [
    ({}, True),                                                   # Celery's default: AMQP on localhost
    ({"broker_url": "memory://"}, True),                          # nothing consumes it
    ({"broker_url": "redis://127.0.0.1:6379/0"}, False),
    ({"task_always_eager": True}, False),
])
def test_w020_celery_without_broker_or_eager_mode(conf, warned, monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    ids = [m.id for m in check_celery(celery_app=celery_app(**conf))]
    assert ids == (["vault_wallets.W020"] if warned else [])


def test_w020_only_when_an_account_receives_webhooks(settings):
    settings.VAULT_WALLETS = {"ACCOUNTS": {"default": {"PROCESSOR": "vault_wallets.conf.get_setting"}}}
    assert check_celery(celery_app=celery_app()) == []
    settings.VAULT_WALLETS = {"ACCOUNTS": {"default": {"PROCESSOR": SANDBOX}}}
    assert [m.id for m in check_celery(celery_app=celery_app())] == ["vault_wallets.W020"]


def test_w020_not_raised_by_the_test_settings():
    assert check_celery() == []  # tests.celery_app: eager


# -- the documented multi-account URLconf ---------------------------------------------------------
def _documented_url_lines(text: str) -> list[str]:
    """The several-accounts example: the line mounting another account and the line before it."""
    lines = [line.split("#")[0].strip().rstrip(",") for line in text.splitlines()
             if line.strip().startswith('path("wallet')]
    other = next(i for i, line in enumerate(lines) if "vault_account" in line)
    return lines[other - 1:other + 1]


@pytest.mark.parametrize("source", ["vault_wallets/urls.py", "README.md", "docs/settings.md"])
def test_documented_multi_account_urls_pass_django_url_checks(source, settings, monkeypatch):
    """The several-accounts example, as written, gives no urls.W005 (namespace isn't unique)."""
    import sys
    import types
    from pathlib import Path

    from django.core.checks.urls import check_url_config, check_url_namespaces_unique
    from django.urls import clear_url_caches, include, path, reverse

    lines = _documented_url_lines((Path(__file__).parent.parent / source).read_text(encoding="utf-8"))
    assert len(lines) == 2, lines
    module = types.ModuleType("documented_urls")
    module.urlpatterns = [eval(line, {"path": path, "include": include}) for line in lines]
    monkeypatch.setitem(sys.modules, "documented_urls", module)
    settings.ROOT_URLCONF = "documented_urls"
    clear_url_caches()
    try:
        assert check_url_namespaces_unique(None) == [] and check_url_config(None) == []
        assert reverse("vault_wallets:webhook", kwargs={"account": "default"}) == "/wallet/webhooks/default/"
    finally:
        clear_url_caches()
