"""System checks: each configuration mistake has its own id."""

from __future__ import annotations

import pytest

from vault_wallets.checks import check_settings

SANDBOX = "vault_wallets.processors.sandbox.SandboxProcessor"


def ids(settings_value, settings):
    settings.VAULT_WALLETS = settings_value
    return {m.id for m in check_settings()}


def test_test_settings_are_clean(settings):
    assert [m for m in check_settings() if m.level >= 30] == []


@pytest.mark.parametrize("value, expected", [
    ([], "vault_wallets.E002"),
    ({"ACCOUNTS": {}}, "vault_wallets.E004"),
    ({"ACCOUNTS": {"a": {"PROCESSOR": SANDBOX}}, "TYPO": 1}, "vault_wallets.E003"),
    ({"ACCOUNTS": {"a": {"PROCESSOR": SANDBOX}}}, "vault_wallets.E005"),  # DEFAULT_ACCOUNT "default" missing
    ({"ACCOUNTS": {"default": {"PROCESSOR": SANDBOX}}, "CUSTOMER_TOKEN_TTL": 5}, "vault_wallets.E006"),
    ({"ACCOUNTS": {"default": {}}}, "vault_wallets.E010"),
    ({"ACCOUNTS": {"default": {"PROCESSOR": "nowhere.Processor"}}}, "vault_wallets.E011"),
    ({"ACCOUNTS": {"default": {"PROCESSOR": "vault_wallets.conf.get_setting"}}}, "vault_wallets.E012"),
    ({"ACCOUNTS": {"default": {"PROCESSOR": SANDBOX, "OPTIONS": []}}}, "vault_wallets.E013"),
    ({"ACCOUNTS": {"default": {"PROCESSOR": "tests.processors_fixture.NotSandbox"}}}, "vault_wallets.E014"),
    ({"ACCOUNTS": {"default": {"PROCESSOR": SANDBOX, "OPTIONS": {"WEBHOOK_SECRETS": ["whsec_!!"]}}}},
     "vault_wallets.E014"),
])
def test_mistakes_have_ids(value, expected, settings):
    assert expected in ids(value, settings)


def test_missing_settings(settings):
    del settings.VAULT_WALLETS
    assert {m.id for m in check_settings()} == {"vault_wallets.E001"}


def test_sandbox_needs_its_app(settings):
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "vault_wallets.sandbox"]
    assert "vault_wallets.E015" in ids({"ACCOUNTS": {"default": {"PROCESSOR": SANDBOX}}}, settings)


def test_missing_fernet_keys_warns(settings):
    del settings.FERNET_KEYS
    assert "vault_wallets.W001" in {m.id for m in check_settings()}


def test_settings_are_read_lazily(settings):
    """Changing the settings changes the processor in use: nothing was captured at import."""
    from vault_wallets.processors import get_processor
    from vault_wallets.processors.sandbox import SandboxProcessor

    assert isinstance(get_processor("default"), SandboxProcessor)
    settings.VAULT_WALLETS = {"ACCOUNTS": {"default": {"PROCESSOR": "tests.processors_fixture.NotSandbox",
                                                       "OPTIONS": {"API_KEY": "k"}}}}
    assert type(get_processor("default")).__name__ == "NotSandbox"
    assert "k" not in repr(get_processor("default"))
