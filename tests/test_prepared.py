"""Prepared queries (``vault_wallets.prepared``) answer exactly what the ORM answers, on every backend."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from vault_wallets import services
from vault_wallets.models import Customer, SavedPaymentMethod
from vault_wallets.prepared import INT_STAND_IN, STR_STAND_IN, PreparedInstances, PreparedQuery
from vault_wallets.services.customers import _CUSTOMER_OF_USER
from vault_wallets.services.payment_methods import LIST_COLUMNS, visible_method_rows

pytestmark = pytest.mark.django_db


def _methods(customer, count=3):
    made = [SavedPaymentMethod.objects.create(
        customer=customer, processor_token=f"sbxpm_p{i}", processor_lookup=f"p{i}", fingerprint=f"fp{i}",
        brand="visa", last4=f"{4240 + i}", exp_month=1 + i, exp_year=2031, label=f"card {i}",
        is_default=(i == 1), status="removed" if i == 2 else "active") for i in range(count)]
    SavedPaymentMethod.objects.create(customer=customer, method_type="ach", processor_token="sbxpm_bank",
                                      processor_lookup="bank", bank_name="First Test Bank", last4="6789")
    return made


def test_list_rows_equal_the_orm_rows_with_types_and_order(user, make_user):
    customer = services.get_or_create_customer(user)
    _methods(customer)
    other = services.get_or_create_customer(make_user("other"))
    _methods(other, 1)
    orm = list(SavedPaymentMethod.objects.visible().filter(customer__user=user, customer__account="default")
               .values_list(*LIST_COLUMNS))
    for _ in range(2):  # compiled on the first call, reused on the second
        by_user = visible_method_rows(user=user, account="default")
        by_customer = visible_method_rows(customer=customer)
        assert by_user == by_customer == orm and len(orm) == 3  # the removed one is not listed
        for prepared, expected in zip(by_user, orm, strict=True):
            assert [type(v) for v in prepared] == [type(v) for v in expected]
    created = by_user[0][-1]
    assert created.utcoffset() is not None  # aware, as the ORM gives it (SQLite: through its converters)
    assert visible_method_rows(user=user, account="eu") == []
    assert {row[0] for row in visible_method_rows(customer=other)}.isdisjoint({row[0] for row in orm})


def test_each_call_is_one_query_with_the_callers_values(user, make_user):
    customer = services.get_or_create_customer(user)
    _methods(customer)
    visible_method_rows(user=user, account="default")
    second = make_user("second")
    with CaptureQueriesContext(connection) as ctx:
        assert visible_method_rows(user=second, account="default") == []
    assert len(ctx.captured_queries) == 1
    sql = ctx.captured_queries[0]["sql"]
    assert str(second.pk) in sql and STR_STAND_IN not in sql and str(INT_STAND_IN) not in sql


def test_customer_lookup_loads_the_same_instance_as_the_orm(user):
    customer = services.get_or_create_customer(user)
    Customer.objects.filter(pk=customer.pk).update(processor_customer_secret="s3cret", metadata={"a": 1})
    expected = Customer.objects.get(pk=customer.pk)
    found = _CUSTOMER_OF_USER.instances(account="default", user_id=user.pk)
    assert len(found) == 1
    loaded = found[0]
    assert loaded.pk == expected.pk and not loaded._state.adding and loaded._state.db == "default"
    for field in Customer._meta.concrete_fields:
        assert getattr(loaded, field.attname) == getattr(expected, field.attname), field.name
    assert loaded.processor_customer_secret == "s3cret" and loaded.metadata == {"a": 1}  # decrypted, decoded
    assert _CUSTOMER_OF_USER.instances(account="other", user_id=user.pk) == []
    assert services.get_or_create_customer(user) == expected


def test_a_stand_in_that_does_not_survive_compilation_falls_back_to_the_orm(user):
    customer = services.get_or_create_customer(user)
    # The stand-in is never a parameter here (the lookup turns it into "%…%"): the ORM every time.
    prepared = PreparedQuery(Customer, lambda account: Customer.objects.filter(account__contains=account)
                             .values_list("uid"), {"account": STR_STAND_IN})
    assert prepared.rows(account="defa") == [(customer.uid,)]
    assert prepared._for("default") is None
    assert prepared.rows(account="nope") == []


def test_instances_fall_back_to_the_orm_too(user):
    customer = services.get_or_create_customer(user)
    prepared = PreparedInstances(Customer, lambda account: Customer.objects.filter(account__startswith=account),
                                 {"account": STR_STAND_IN})
    assert [c.pk for c in prepared.instances(account="def")] == [customer.pk]
    assert prepared._for("default") is None


def test_customer_for_token_loads_only_what_the_token_carries(user, make_user):
    from vault_wallets.services.customers import TOKEN_FIELDS, customer_for_token

    customer = services.get_or_create_customer(user)
    Customer.objects.filter(pk=customer.pk).update(token_version=7)
    with CaptureQueriesContext(connection) as ctx:
        light = customer_for_token(user)
    assert len(ctx.captured_queries) == 1
    assert (light.pk, light.uid, light.account, light.token_version) == (customer.pk, customer.uid, "default", 7)
    assert light.get_deferred_fields() == {f.attname for f in Customer._meta.concrete_fields} - set(TOKEN_FIELDS)
    newcomer = make_user("newcomer")
    created = customer_for_token(newcomer)  # a first visit creates the customer
    assert Customer.objects.get(user=newcomer).pk == created.pk


def test_customer_token_endpoint_is_three_queries(api, user):
    from vault_wallets import tokens

    api.post("/wallet/customer-token/", {}, format="json")  # creates the customer
    with CaptureQueriesContext(connection) as ctx:
        response = api.post("/wallet/customer-token/", {}, format="json")
    assert response.status_code == 201
    assert len(ctx.captured_queries) == 3  # session, user (Django's own), the customer's token fields
    claims = tokens.decode(response.json()["token"])
    customer = Customer.objects.get(user=user)
    assert (claims.customer_uid, claims.version) == (customer.uid, customer.token_version)
    assert response.json()["customer"] == customer.uid
