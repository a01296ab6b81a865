"""System checks for the mistakes behind issue #9, finding 6: a customer-token key derived from a
published or weak SECRET_KEY, DEBUG reachable from other hosts, the sandbox with DEBUG off
(``check --deploy``), and FERNET_KEYS given as a string."""

from __future__ import annotations

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from vault_wallets.checks import check_deploy, check_secrets

STRONG = "k7#Vq2!xZp9@Lm4$Rt8^Wn1&Hs6*Jd3(Fg5)Bc0-Ny7_Qe2+Ua9=Xo4Ti8Ke"


def ids(messages):
    return {m.id for m in messages}


@pytest.mark.parametrize("key", [
    "example-shop-secret-key-change-me-in-production",  # what the example used to commit
    "django-insecure-4r$x9vz7q2m!p0b@l6c#h8k3w5n1j-e&y+t^u*s(d)f_g=a",  # startproject's marker
    "test-secret-key-not-for-production",
    "short-but-random-Q7x",
    "a" * 64,
])
def test_weak_secret_key_is_flagged(settings, key):
    settings.SECRET_KEY = key
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "SIGNING_KEY": ""}
    assert "vault_wallets.W002" in ids(check_secrets())


def test_strong_or_separate_keys_pass(settings):
    settings.SECRET_KEY = STRONG
    assert "vault_wallets.W002" not in ids(check_secrets())
    settings.SECRET_KEY = "django-insecure-dev"
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "SIGNING_KEY": STRONG}  # not derived from SECRET_KEY
    assert "vault_wallets.W002" not in ids(check_secrets())


@pytest.mark.parametrize("hosts, flagged", [
    (["*"], True), ([".example.com"], True), (["shop.example.com", "localhost"], True), (["0.0.0.0"], True),
    (["localhost", "127.0.0.1", "[::1]"], False), ([], False),
])
def test_debug_with_a_public_host(settings, hosts, flagged):
    settings.DEBUG = True
    settings.ALLOWED_HOSTS = hosts
    assert ("vault_wallets.W003" in ids(check_secrets())) is flagged
    settings.DEBUG = False
    assert "vault_wallets.W003" not in ids(check_secrets())


@pytest.mark.parametrize("value, flagged", [
    ("a-single-string-key", True), (b"bytes-key", True), (["", "x"], True), ({"k": 1}, True),
    (["newest", "older"], False), (("newest",), False),
])
def test_fernet_keys_must_be_a_list(settings, value, flagged):
    settings.FERNET_KEYS = value
    assert ("vault_wallets.E016" in ids(check_secrets())) is flagged


@pytest.mark.django_db  # Django 6.1's model checks ask the database (JSONField support)
def test_fernet_keys_string_is_an_error_the_check_command_stops_on(settings):
    settings.FERNET_KEYS = "one-key-as-a-string"
    with pytest.raises(SystemCheckError, match="E016"):
        call_command("check")


@pytest.mark.django_db  # Django 6.1's model checks ask the database (JSONField support)
def test_sandbox_with_debug_off_is_a_deploy_warning(settings):
    settings.DEBUG = False
    assert "vault_wallets.W004" in ids(check_deploy())
    assert "vault_wallets.W004" in ids(checks.run_checks(include_deployment_checks=True))
    assert "vault_wallets.W004" not in ids(checks.run_checks())  # tests and demos run it on purpose
    settings.DEBUG = True
    assert check_deploy() == []
    settings.DEBUG = False
    settings.VAULT_WALLETS = {"ACCOUNTS": {"default": {"PROCESSOR": "tests.processors_fixture.NotSandbox",
                                                       "OPTIONS": {"API_KEY": "k"}}}}
    assert check_deploy() == []


@pytest.mark.parametrize("value, expected", [
    ({"THROTTLE_RATES": {"add_payment_method_customer": "5/hour", "sandbox_tokenize_ip": None}}, set()),
    ({"THROTTLE_RATES": {"add_payment_method_customr": "5/hour"}}, {"vault_wallets.E017"}),
    ({"THROTTLE_RATES": {"customer_token_ip": "lots"}}, {"vault_wallets.E017"}),
    ({"THROTTLE_RATES": {"customer_token_ip": "0/minute"}}, {"vault_wallets.E017"}),
    ({"THROTTLE_RATES": ["5/hour"]}, {"vault_wallets.E017"}),
    ({"THROTTLE_CACHE": "nowhere"}, {"vault_wallets.E018"}),
])
def test_throttle_settings(settings, value, expected):
    from vault_wallets.checks import check_throttles

    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, **value}
    assert ids(check_throttles()) == expected
