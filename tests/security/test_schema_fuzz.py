"""schemathesis against the shopper API's own OpenAPI schema, as a logged-in shopper.

Every operation in ``/wallet/api/schema/`` gets generated requests (valid and invalid ones); each
answer must not be a 5xx and must conform to the schema (status code documented, content type,
body shape).  Bounded: ``SCHEMA_FUZZ_EXAMPLES`` examples per operation (25 by default).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi import checks as oas

from .conftest import record

EXAMPLES = int(os.environ.get("SCHEMA_FUZZ_EXAMPLES", "25"))
CHECKS = [oas.status_code_conformance, oas.content_type_conformance, oas.response_schema_conformance,
          oas.response_headers_conformance]


@pytest.fixture
def api_schema(db):
    from django.core import signals
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections

    # As Django's test client does: the real WSGI handler must not close the test's connection
    # (and with it the test transaction) when a request finishes.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/wallet/api/schema/?format=json", get_wsgi_application())
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def shopper_headers(db, make_user, card_token):
    from django.conf import settings as django_settings
    from django.test import Client

    from vault_wallets import services

    user = make_user("fuzzed")
    customer = services.get_or_create_customer(user)
    services.add_payment_method(customer, card_token())
    services.create_address(customer, name="Fuzz", line1="1 Main St", city="Springfield", postal_code="12345",
                            country="US")
    client = Client()
    client.force_login(user)
    session = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    csrf = "f" * 32
    return {"headers": {"X-CSRFToken": csrf},
            "cookies": {django_settings.SESSION_COOKIE_NAME: session, "csrftoken": csrf}}


def test_shopper_api_conforms_and_never_5xx(api_schema, shopper_headers):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 9, [op.label for op in operations]
    for operation in operations:
        modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]

        @given(case=st.one_of(*[operation.as_strategy(generation_mode=mode) for mode in modes]))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            # The shopper's session, not the random bearer values generated from the security scheme.
            (case.headers or {}).pop("Authorization", None)
            response = case.call(**shopper_headers)
            record("schemathesis (logged-in shopper)", response.status_code, refused=response.status_code >= 400)
            assert response.status_code < 500, (case.method, case.formatted_path, response.status_code,
                                                response.text[:300])
            case.validate_response(response, checks=CHECKS)

        run()
