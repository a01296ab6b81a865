"""Token authentication resolves exactly the token's customer: two customers, two accounts, moved rows.

Kills the mutants of ``api/authentication.py`` and ``api/permissions.py`` where the customer lookup
loses its ``uid=`` or ``account=`` scope or the permission lets an anonymous caller through.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from vault_wallets import services, tokens
from vault_wallets.models import Customer

pytestmark = pytest.mark.django_db


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def two(make_user):
    first = services.get_or_create_customer(make_user("first"))
    second = services.get_or_create_customer(make_user("second"))
    return first, second


def test_each_token_signs_in_its_own_customer(two):
    for customer in two:
        response = bearer(tokens.issue(customer).token).get("/wallet/api/me/")
        assert response.status_code == 200
        assert response.json()["id"] == customer.uid


def test_each_token_lists_its_own_methods(two, card_token):
    first, second = two
    for customer in two:
        services.add_payment_method(customer, card_token())
    for customer in two:
        listed = bearer(tokens.issue(customer).token).get("/wallet/api/payment-methods/").json()["results"]
        ids = {m["id"] for m in listed}
        assert ids == set(customer.payment_methods.values_list("uid", flat=True))
    assert not set(first.payment_methods.values_list("uid", flat=True)) & set(
        second.payment_methods.values_list("uid", flat=True))


def test_a_customer_moved_to_another_account_loses_its_tokens(two):
    first, _ = two
    token = tokens.issue(first).token
    Customer.objects.filter(pk=first.pk).update(account="eu")
    assert bearer(token).get("/wallet/api/me/").status_code == 401
    assert bearer(token).get("/wallet-eu/api/me/").status_code == 401


def test_token_version_is_per_customer(two):
    first, second = two
    first_token, second_token = tokens.issue(first).token, tokens.issue(second).token
    services.revoke_customer_tokens(first)
    assert bearer(first_token).get("/wallet/api/me/").status_code == 401
    assert bearer(second_token).get("/wallet/api/me/").status_code == 200


def test_token_of_a_user_less_customer_still_authenticates(two):
    first, _ = two
    Customer.objects.filter(pk=first.pk).update(user=None)
    response = bearer(tokens.issue(Customer.objects.get(pk=first.pk)).token).get("/wallet/api/me/")
    assert response.status_code == 200 and response.json()["id"] == first.uid


def test_keyword_is_bearer_only(two):
    first, _ = two
    token = tokens.issue(first).token
    for scheme in ("Token", "JWT", "Basic", "Bearerx"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"{scheme} {token}")
        assert client.get("/wallet/api/me/").status_code in (401, 403)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"bearer {token}")  # the scheme is case-insensitive (RFC 7235)
    assert client.get("/wallet/api/me/").status_code == 200


def test_unauthenticated_answers_carry_the_bearer_challenge():
    response = APIClient().get("/wallet/api/me/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="vault_wallets"'


def test_inactive_session_user_is_refused(make_user):
    user = make_user("inactive")
    client = APIClient()
    client.force_login(user)
    assert client.get("/wallet/api/me/").status_code == 200
    user.is_active = False
    user.save()
    assert client.get("/wallet/api/me/").status_code in (401, 403)


def _error(response) -> dict:
    return response.json()["error"]


def test_every_token_failure_says_the_same_thing(two):
    """No oracle: expired, forged, revoked, another account's and a deleted customer's tokens read alike."""
    first, second = two
    revoked = tokens.issue(second).token
    services.revoke_customer_tokens(second)
    eu = tokens.issue(services.get_or_create_customer(first.user, "eu")).token
    deleted_customer = services.get_or_create_customer(first.user, "eu")
    deleted = tokens.issue(deleted_customer).token
    Customer.objects.filter(pk=deleted_customer.pk).delete()
    messages = set()
    for token, path in (("not.a.jwt", "/wallet/api/me/"), (revoked, "/wallet/api/me/"),
                        (eu, "/wallet/api/me/"), (deleted, "/wallet-eu/api/me/")):
        response = bearer(token).get(path)
        assert response.status_code == 401, path
        messages.add(_error(response)["message"])
    assert messages == {"Invalid or expired customer token."}


def test_malformed_header_message():
    response = APIClient().get("/wallet/api/me/", HTTP_AUTHORIZATION="Bearer one two")
    assert response.status_code == 401
    assert _error(response)["message"] == "Malformed Authorization header."


def test_token_request_loads_customer_and_user_in_one_query(two, django_assert_num_queries):
    first, _ = two
    client = bearer(tokens.issue(first).token)
    client.get("/wallet/api/me/")  # warm caches (content types, …)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert client.get("/wallet/api/me/").status_code == 200
    customer_queries = [q["sql"] for q in queries.captured_queries if '"vault_wallets_customer"' in q["sql"]]
    user_only = [q["sql"] for q in queries.captured_queries
                 if 'FROM "auth_user"' in q["sql"] and "vault_wallets_customer" not in q["sql"]]
    assert customer_queries and 'JOIN "auth_user"' in customer_queries[0]
    assert user_only == []


def test_a_view_without_get_account_authenticates_against_the_default_account(two):
    from rest_framework.response import Response
    from rest_framework.test import APIRequestFactory
    from rest_framework.views import APIView

    from vault_wallets.api.authentication import CustomerTokenAuth, CustomerTokenAuthentication
    from vault_wallets.api.permissions import IsShopper

    class Plain(APIView):  # a shop's own view reusing the authentication, with no get_account()
        authentication_classes = [CustomerTokenAuthentication]
        permission_classes = [IsShopper]

        def get(self, request):
            assert isinstance(request.auth, CustomerTokenAuth)
            return Response({"customer": request.auth.customer.uid, "jti": request.auth.claims.jti,
                             "user": request.user.pk})

    first, _ = two
    issued = tokens.issue(first)
    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {issued.token}")
    response = Plain.as_view()(request)
    assert response.status_code == 200
    assert response.data == {"customer": first.uid, "jti": issued.jti, "user": first.user_id}
    anonymous = Plain.as_view()(APIRequestFactory().get("/"))
    assert anonymous.status_code == 401
