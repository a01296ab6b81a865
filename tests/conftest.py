"""Shared fixtures.  Django is imported lazily: tests/processors/ also runs without Django."""

from __future__ import annotations

import pytest


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    counter = {"n": 0}

    def make(username: str | None = None, **extra):
        counter["n"] += 1
        name = username or f"shopper{counter['n']}"
        return get_user_model().objects.create_user(username=name, email=f"{name}@example.com",
                                                    password="pw-for-tests", **extra)

    return make


@pytest.fixture
def user(make_user):
    return make_user("alex", first_name="Alex", last_name="Morales")


def _csrf_client(user=None):
    from django.utils.crypto import get_random_string
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    secret = get_random_string(32)
    client.cookies["csrftoken"] = secret
    client.credentials(HTTP_X_CSRFTOKEN=secret)
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def api(user):
    """An APIClient logged in as ``user`` by session, sending a valid CSRF token."""
    return _csrf_client(user)


@pytest.fixture
def make_api(db):
    return _csrf_client


@pytest.fixture
def sandbox():
    from vault_wallets.processors import get_processor

    processor = get_processor("default")
    processor.faults.reset()
    yield processor
    processor.faults.reset()


@pytest.fixture
def card_token(db, sandbox):
    """``card_token()`` → a fresh temporary token for a sandbox test card."""

    def make(number: str = "4242424242424242", exp_month: int = 12, exp_year: int = 2034) -> str:
        return sandbox.tokenize_card(number, exp_month, exp_year, "123", "Alex Morales")

    return make


@pytest.fixture
def customer(user):
    from vault_wallets import services

    return services.get_or_create_customer(user)


def pytest_configure(config):
    """``VAULT_DEPRECATIONS_AS_ERRORS=1`` (set by the nox matrix): every Django deprecation fails
    the test that triggers it, so the code keeps working on the next Django release."""
    import os

    if os.environ.get("VAULT_DEPRECATIONS_AS_ERRORS") != "1":
        return
    try:
        from django.utils import deprecation
    except ImportError:
        return
    for name in dir(deprecation):
        if name.startswith("RemovedIn"):
            config.addinivalue_line("filterwarnings", f"error::django.utils.deprecation.{name}")


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """Throttle counts live in the Django cache (per process): every test starts from zero."""
    try:
        from django.conf import settings

        if settings.configured:
            from django.core.cache import caches

            for alias in settings.CACHES:
                caches[alias].clear()
    except ImportError:
        pass
    yield
