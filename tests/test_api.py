"""The shopper API: every endpoint with its status codes, isolation between customers, no secrets."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from vault_wallets import services
from vault_wallets.models import Customer, SavedPaymentMethod

pytestmark = pytest.mark.django_db

PM_FIELDS = {"id", "type", "brand", "last4", "exp_month", "exp_year", "label", "is_default",
             "verification_status", "status", "created_at"}


def add_card(api, token, **extra):
    return api.post("/wallet/api/payment-methods/", {"token": token, **extra}, format="json")


def assert_error(response, status, code=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body


# -- customer token -----------------------------------------------------------------------


def test_customer_token_issued_for_the_logged_in_user(api, user):
    response = api.post("/wallet/customer-token/", {}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"token", "expires_at", "expires_in", "customer", "processor_client_token"}
    assert body["expires_in"] == 900 and body["processor_client_token"] is None
    customer = Customer.objects.get(user=user)
    assert body["customer"] == customer.uid and customer.uid.startswith("cus_")
    assert response["Cache-Control"] == "no-store"


def test_customer_token_ignores_customer_ids_in_body_and_query(api, user, make_user):
    other = services.get_or_create_customer(make_user("mallory"))
    response = api.post(f"/wallet/customer-token/?customer={other.uid}&customer_id={other.uid}",
                        {"customer": other.uid, "customer_id": other.uid, "reference_id": "mallory"}, format="json")
    assert response.status_code == 201
    assert response.json()["customer"] == Customer.objects.get(user=user).uid != other.uid


def test_customer_token_get_is_405(api):
    assert_error(api.get("/wallet/customer-token/"), 405)


def test_customer_token_anonymous_is_refused(make_api):
    response = make_api(None).post("/wallet/customer-token/", {}, format="json")
    assert response.status_code in (401, 403)
    assert Customer.objects.count() == 0


def test_customer_token_requires_csrf(user):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert_error(client.post("/wallet/customer-token/", {}, format="json"), 403)


def test_customer_token_refuses_bearer_auth(api):
    token = api.post("/wallet/customer-token/", {}, format="json").json()["token"]
    from rest_framework.test import APIClient

    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert bearer.post("/wallet/customer-token/", {}, format="json").status_code in (401, 403)


def test_bearer_token_authenticates_the_api(api):
    token = api.post("/wallet/customer-token/", {}, format="json").json()["token"]
    from rest_framework.test import APIClient

    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    me = bearer.get("/wallet/api/me/")
    assert me.status_code == 200
    assert me.json()["id"] == api.get("/wallet/api/me/").json()["id"]


# -- me -----------------------------------------------------------------------------------


def test_me(api, card_token):
    body = api.get("/wallet/api/me/").json()
    assert set(body) == {"id", "name", "email", "currency", "default_payment_method"}
    assert body["id"].startswith("cus_") and body["name"] == "Alex Morales"
    assert body["default_payment_method"] is None
    method = add_card(api, card_token()).json()
    assert api.get("/wallet/api/me/").json()["default_payment_method"] == method["id"]


def test_anonymous_api_is_refused(make_api):
    anonymous = make_api(None)
    for path in ("/wallet/api/me/", "/wallet/api/payment-methods/", "/wallet/api/addresses/"):
        assert anonymous.get(path).status_code in (401, 403)


def test_session_write_without_csrf_is_refused(user, card_token):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert_error(add_card(client, card_token()), 403)
    assert SavedPaymentMethod.objects.count() == 0


# -- payment methods ------------------------------------------------------------------------


def test_add_first_method_becomes_default(api, card_token):
    response = add_card(api, card_token(), label="Everyday")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == PM_FIELDS
    assert body["id"].startswith("spm_") and body["brand"] == "visa" and body["last4"] == "4242"
    assert body["is_default"] is True and body["label"] == "Everyday"
    assert body["verification_status"] == "success" and body["status"] == "active"
    second = add_card(api, card_token("5555555555554444")).json()
    assert second["is_default"] is False


def test_add_with_make_default(api, card_token):
    first = add_card(api, card_token()).json()
    second = add_card(api, card_token("5555555555554444"), make_default=True).json()
    assert second["is_default"] is True
    assert api.get(f"/wallet/api/payment-methods/{first['id']}/").json()["is_default"] is False


def test_same_card_again_returns_the_existing_method(api, card_token, sandbox):
    first = add_card(api, card_token())
    again = add_card(api, card_token())
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert SavedPaymentMethod.objects.count() == 1
    customer = Customer.objects.get()
    # The processor's duplicate was deleted again: one method there too.
    assert len(sandbox.list_payment_methods(customer.processor_ref)) == 1


@pytest.mark.parametrize("problem", ["unknown", "used", "expired", "blank"])
def test_bad_temporary_token_is_400_and_writes_nothing(api, card_token, problem):
    token = card_token()
    if problem == "unknown":
        token = "tok_sbx_doesnotexist"
    elif problem == "used":
        assert add_card(api, token).status_code == 201
        SavedPaymentMethod.objects.all().delete()
    elif problem == "expired":
        from django.utils import timezone

        from vault_wallets.sandbox.models import SandboxTemporaryToken

        SandboxTemporaryToken.objects.filter(token=token).update(expires_at=timezone.now())
    elif problem == "blank":
        token = ""
    response = add_card(api, token)
    assert_error(response, 400)
    assert SavedPaymentMethod.objects.count() == 0


def test_verification_refused_is_422_and_not_saved(api, card_token):
    response = add_card(api, card_token("4000000000000127"))
    assert_error(response, 422, "verification_failed")
    assert SavedPaymentMethod.objects.count() == 0


def test_pending_verification_is_saved_as_pending(api, card_token):
    body = add_card(api, card_token("4000000000000101")).json()
    assert body["verification_status"] == "pending"


def test_ach_account(api, sandbox, user):
    token = sandbox.tokenize_bank_account("110000000", "000123456789", "checking", "Alex Morales")
    body = add_card(api, token).json()
    assert body["type"] == "ach" and body["last4"] == "6789" and body["brand"] == "Sandbox Bank"


def test_processor_unavailable_is_503_and_writes_nothing(api, card_token, sandbox):
    token = card_token()
    api.get("/wallet/api/me/")  # the customer exists
    services.ensure_processor_customer(Customer.objects.get())
    sandbox.faults.fail_next(1)
    assert_error(add_card(api, token), 503, "processor_unavailable")
    assert SavedPaymentMethod.objects.count() == 0


def test_list_shows_only_the_documented_fields(api, card_token):
    add_card(api, card_token())
    add_card(api, card_token("5555555555554444"))
    body = api.get("/wallet/api/payment-methods/").json()
    assert set(body) == {"results"} and len(body["results"]) == 2
    assert all(set(m) == PM_FIELDS for m in body["results"])
    assert body["results"][0]["is_default"] is True


def test_no_token_or_fingerprint_in_any_response(api, card_token):
    responses = [add_card(api, card_token()), add_card(api, card_token("5555555555554444"))]
    method = SavedPaymentMethod.objects.first()
    responses += [
        api.get("/wallet/api/payment-methods/"), api.get(f"/wallet/api/payment-methods/{method.uid}/"),
        api.get("/wallet/api/me/"), api.patch(f"/wallet/api/payment-methods/{method.uid}/", {"label": "x"},
                                              format="json"),
        api.put("/wallet/api/default-payment-method/", {"saved_payment_method_id": method.uid}, format="json"),
        api.post("/wallet/customer-token/", {}, format="json"),
    ]
    secrets = []
    for m in SavedPaymentMethod.objects.all():
        secrets += [m.processor_token, m.fingerprint, str(m.pk)]
    customer = Customer.objects.get()
    secrets += [customer.processor_customer_id]
    for response in responses:
        text = response.content.decode()
        for secret in secrets:
            assert f'"{secret}"' not in text and (len(secret) < 8 or secret not in text)
        assert "fingerprint" not in text and "processor" not in text.replace("processor_client_token", "")


def test_list_query_count_is_constant(api, card_token):
    numbers = ["4242424242424242", "5555555555554444", "378282246310005", "6011111111111117"]
    add_card(api, card_token())

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert api.get("/wallet/api/payment-methods/").status_code == 200
        return len(ctx.captured_queries)

    one = count()
    customer = Customer.objects.get()
    method = SavedPaymentMethod.objects.get()
    for i in range(19):  # 20 in all: copies with distinct fingerprints
        SavedPaymentMethod.objects.create(
            customer=customer, processor_token=f"sbxpm_copy{i}", processor_lookup=f"l{i}",
            fingerprint=f"f{i}", brand="visa", last4=numbers[i % 4][-4:], exp_month=1, exp_year=2035,
            verification_status=method.verification_status)
    assert len(api.get("/wallet/api/payment-methods/").json()["results"]) == 20
    # Session + user (Django's own) + the methods joined to their customer: one query of ours.
    assert count() == one == 3


def test_list_with_a_customer_token_is_two_queries(make_api, user, card_token):
    from vault_wallets import tokens

    customer = services.get_or_create_customer(user)
    services.add_payment_method(customer, card_token())
    bearer = make_api(None)
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.issue(customer).token}")
    with CaptureQueriesContext(connection) as ctx:
        response = bearer.get("/wallet/api/payment-methods/")
    assert response.status_code == 200 and len(response.json()["results"]) == 1
    assert len(ctx.captured_queries) == 2  # the token's customer, then its methods


def test_list_creates_the_customer_on_a_first_visit(api, user):
    assert not Customer.objects.filter(user=user).exists()
    response = api.get("/wallet/api/payment-methods/")
    assert response.status_code == 200 and response.json() == {"results": []}
    assert Customer.objects.filter(user=user).count() == 1


def test_payment_method_representation_matches_drf_generic_path(customer, card_token):
    """The hand-built representation is exactly what DRF's field-by-field path produces."""
    from rest_framework import serializers as drf

    from vault_wallets.api.serializers import PaymentMethodSerializer

    card = services.add_payment_method(customer, card_token(), label="Work card")[0]
    bank = SavedPaymentMethod.objects.create(
        customer=customer, method_type="ach", processor_token="sbxpm_bank", processor_lookup="bank",
        bank_name="First Test Bank", last4="6789", status="closed", verification_status="failed")
    unsaved = SavedPaymentMethod(customer=customer, method_type="card", brand="visa", last4="4242", uid="spm_x")
    for method in (SavedPaymentMethod.objects.get(pk=card.pk), bank, unsaved):
        fast = PaymentMethodSerializer(method).data
        generic = drf.Serializer.to_representation(PaymentMethodSerializer(method), method)
        assert fast == generic and list(fast) == list(generic), (fast, generic)
    # The list endpoint's path: prepared rows (tuples) straight from the database.
    stored = [SavedPaymentMethod.objects.get(pk=card.pk), SavedPaymentMethod.objects.get(pk=bank.pk)]
    rows = SavedPaymentMethod.objects.filter(pk__in=[m.pk for m in stored]).order_by("pk").values_list(
        *PaymentMethodSerializer.SOURCE_FIELDS)
    listed = PaymentMethodSerializer.represent_rows(list(rows))
    for row, method in zip(listed, stored, strict=True):
        generic = drf.Serializer.to_representation(PaymentMethodSerializer(method), method)
        assert row == generic and list(row) == list(generic), (row, generic)


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_list_datetimes_match_drf_in_the_current_time_zone(customer, card_token, zone):
    """``represent_rows`` formats ``created_at`` exactly as DRF's DateTimeField, whatever the time zone."""
    from django.utils import timezone
    from rest_framework import serializers as drf

    from vault_wallets.api.serializers import PaymentMethodSerializer

    services.add_payment_method(customer, card_token())
    row = SavedPaymentMethod.objects.values_list(*PaymentMethodSerializer.SOURCE_FIELDS).get()
    with timezone.override(zone):
        listed = PaymentMethodSerializer.represent_rows([row])[0]["created_at"]
        assert listed == drf.DateTimeField().to_representation(row[-1])
    assert listed.endswith("Z") == (zone == "UTC")


def test_patch_label_only(api, card_token):
    method = add_card(api, card_token()).json()
    response = api.patch(f"/wallet/api/payment-methods/{method['id']}/", {"label": "Work card"}, format="json")
    assert response.status_code == 200 and response.json()["label"] == "Work card"
    refused = api.patch(f"/wallet/api/payment-methods/{method['id']}/", {"label": "x", "exp_month": 1,
                                                                         "is_default": False}, format="json")
    assert_error(refused, 400)
    assert set(refused.json()["error"]["fields"]) == {"exp_month", "is_default"}
    assert SavedPaymentMethod.objects.get().label == "Work card"


def test_delete_default_promotes_the_newest_remaining(api, card_token, sandbox):
    first = add_card(api, card_token()).json()
    add_card(api, card_token("5555555555554444"))
    newest = add_card(api, card_token("378282246310005")).json()
    assert api.delete(f"/wallet/api/payment-methods/{first['id']}/").status_code == 204
    assert api.get(f"/wallet/api/payment-methods/{first['id']}/").status_code == 404
    listed = api.get("/wallet/api/payment-methods/").json()["results"]
    assert [m["id"] for m in listed if m["is_default"]] == [newest["id"]]
    customer = Customer.objects.get()
    at_processor = sandbox.list_payment_methods(customer.processor_ref)
    assert len(at_processor) == 2
    removed = SavedPaymentMethod.objects.get(uid=first["id"])
    assert removed.status == "removed" and removed.processor_token == ""


def test_set_default(api, card_token):
    first = add_card(api, card_token()).json()
    second = add_card(api, card_token("5555555555554444")).json()
    response = api.put("/wallet/api/default-payment-method/", {"saved_payment_method_id": second["id"]},
                       format="json")
    assert response.status_code == 200 and response.json()["id"] == second["id"]
    assert response.json()["is_default"] is True
    defaults = SavedPaymentMethod.objects.filter(is_default=True)
    assert [m.uid for m in defaults] == [second["id"]]
    assert api.get(f"/wallet/api/payment-methods/{first['id']}/").json()["is_default"] is False


def test_set_default_bad_input(api):
    assert_error(api.put("/wallet/api/default-payment-method/", {}, format="json"), 400)
    assert_error(api.put("/wallet/api/default-payment-method/", {"saved_payment_method_id": "spm_nope"},
                         format="json"), 404)


def test_malformed_json_is_400(api):
    response = api.generic("POST", "/wallet/api/payment-methods/", "{not json", content_type="application/json")
    assert_error(response, 400)


def test_another_customers_method_is_404_everywhere(api, card_token, make_user, make_api):
    other_api = make_api(make_user("mallory"))
    theirs = add_card(other_api, card_token("5555555555554444")).json()
    mine = add_card(api, card_token()).json()
    url = f"/wallet/api/payment-methods/{theirs['id']}/"
    missing = "/wallet/api/payment-methods/spm_doesnotexist/"
    for path in (url, missing):
        for response in (api.get(path), api.patch(path, {"label": "x"}, format="json"), api.delete(path)):
            assert_error(response, 404)
    assert_error(api.put("/wallet/api/default-payment-method/", {"saved_payment_method_id": theirs["id"]},
                         format="json"), 404)
    assert api.get(url).json() == api.get(missing).json()
    assert SavedPaymentMethod.objects.get(uid=theirs["id"]).label == ""
    assert SavedPaymentMethod.objects.get(uid=theirs["id"]).status == "active"
    assert [m["id"] for m in api.get("/wallet/api/payment-methods/").json()["results"]] == [mine["id"]]


# -- accounts --------------------------------------------------------------------------------


def test_other_accounts_objects_are_404(api, card_token, user, sandbox):
    from vault_wallets.processors import get_processor

    eu = get_processor("eu")
    eu_customer = services.get_or_create_customer(user, "eu")
    eu_method, _ = services.add_payment_method(eu_customer, eu.tokenize_card("4242424242424242", 12, 2034, "123"))
    assert api.get(f"/wallet/api/payment-methods/{eu_method.uid}/").status_code == 404
    assert api.get(f"/wallet-eu/api/payment-methods/{eu_method.uid}/").status_code == 200


def test_a_token_for_another_account_is_401(api, user):
    from rest_framework.test import APIClient

    eu_token = api.post("/wallet-eu/customer-token/", {}, format="json").json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {eu_token}")
    assert client.get("/wallet-eu/api/me/").status_code == 200
    assert_error(client.get("/wallet/api/me/"), 401)


# -- addresses ---------------------------------------------------------------------------------

ADDRESS = {"label": "Home", "line1": "7272 Indian School Rd", "city": "Scottsdale", "state": "AZ",
           "postal_code": "85251", "country": "us"}


def test_address_crud_with_one_default(api):
    first = api.post("/wallet/api/addresses/", ADDRESS, format="json")
    assert first.status_code == 201
    first = first.json()
    assert first["id"].startswith("adr_") and first["is_default"] is True and first["country"] == "US"
    second = api.post("/wallet/api/addresses/", {**ADDRESS, "label": "Work", "make_default": True},
                      format="json").json()
    assert second["is_default"] is True
    assert api.get(f"/wallet/api/addresses/{first['id']}/").json()["is_default"] is False
    patched = api.patch(f"/wallet/api/addresses/{first['id']}/", {"city": "Phoenix"}, format="json")
    assert patched.status_code == 200 and patched.json()["city"] == "Phoenix"
    assert api.delete(f"/wallet/api/addresses/{second['id']}/").status_code == 204
    listed = api.get("/wallet/api/addresses/").json()["results"]
    assert [(a["id"], a["is_default"]) for a in listed] == [(first["id"], True)]


def test_address_bad_input(api):
    assert_error(api.post("/wallet/api/addresses/", {**ADDRESS, "country": "USA"}, format="json"), 400)
    assert_error(api.post("/wallet/api/addresses/", {"label": "x"}, format="json"), 400)
    created = api.post("/wallet/api/addresses/", ADDRESS, format="json").json()
    assert_error(api.patch(f"/wallet/api/addresses/{created['id']}/", {"customer": "cus_x"}, format="json"), 400)


def test_another_customers_address_is_404(api, make_user, make_api):
    theirs = make_api(make_user("mallory")).post("/wallet/api/addresses/", ADDRESS, format="json").json()
    path = f"/wallet/api/addresses/{theirs['id']}/"
    assert_error(api.get(path), 404)
    assert_error(api.patch(path, {"city": "X"}, format="json"), 404)
    assert_error(api.delete(path), 404)


# -- schema ------------------------------------------------------------------------------------


def test_openapi_schema(make_api):
    response = make_api(None).get("/wallet/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert "/wallet/api/payment-methods/" in schema["paths"]
    assert not any(path.startswith("/wallet-eu/") for path in schema["paths"])
    text = response.content.decode()
    assert "processor_token" not in text and "fingerprint" not in text
