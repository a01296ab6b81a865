"""The admin staff can trust: deletes reach the processor, adding a customer goes through it,
charges are read-only records with amounts in their currency's exponent, filters and search."""

from __future__ import annotations

from datetime import date

import pytest

from vault_wallets import services
from vault_wallets.models import Address, Charge, Customer, ErasureRequest, SavedPaymentMethod
from vault_wallets.processors.money import format_amount
from vault_wallets.sandbox.models import SandboxCustomer, SandboxMethod

pytestmark = pytest.mark.django_db

PM = "/admin/vault_wallets/savedpaymentmethod/"
CUS = "/admin/vault_wallets/customer/"


@pytest.fixture
def method(customer, card_token):
    return services.add_payment_method(customer, card_token())[0]


def sandbox_state(method):
    return SandboxMethod.objects.get(sid=method.processor_ref.method_id).state


def test_format_amount_uses_the_currency_exponent():
    assert format_amount(2250, "USD") == "22.50 USD"
    assert format_amount(500, "JPY") == "500 JPY"
    assert format_amount(1234, "KWD") == "1.234 KWD"


def test_add_customer_asks_for_an_account_and_creates_it_at_the_processor(admin_client):
    page = admin_client.get(CUS + "add/").content.decode()
    assert 'name="account"' in page and "<option value=\"eu\"" in page
    response = admin_client.post(CUS + "add/", {"account": "eu", "reference_id": "shop-42", "name": "Kim",
                                               "email": "kim@example.com", "phone": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    customer = Customer.objects.get(reference_id="shop-42")
    assert customer.account == "eu" and customer.processor_customer_id
    assert SandboxCustomer.objects.get(sid=customer.processor_customer_id).account == "eu"
    # The same reference again: a form error, not a 500.
    again = admin_client.post(CUS + "add/", {"account": "eu", "reference_id": "shop-42", "name": "Kim"})
    assert again.status_code == 200 and "already exists" in again.content.decode()
    # An unconfigured account cannot be chosen.
    bad = admin_client.post(CUS + "add/", {"account": "", "reference_id": "shop-43"})
    assert bad.status_code == 200 and Customer.objects.filter(reference_id="shop-43").count() == 0


def test_deleting_a_method_deletes_it_at_the_processor(admin_client, method):
    confirm = admin_client.get(f"{PM}{method.pk}/delete/").content.decode()
    assert "deletes it at the processor" in confirm
    admin_client.post(f"{PM}{method.pk}/delete/", {"post": "yes"})
    assert SavedPaymentMethod.objects.get(pk=method.pk).status == "removed"
    assert sandbox_state(method) == "deleted"


def test_bulk_delete_goes_through_the_services(admin_client, customer, card_token):
    first = services.add_payment_method(customer, card_token())[0]
    second = services.add_payment_method(customer, card_token("5555555555554444"))[0]
    confirm = admin_client.post(PM, {"action": "delete_selected", "_selected_action": [first.pk, second.pk]})
    assert "deletes it at the processor" in confirm.content.decode()
    admin_client.post(PM, {"action": "delete_selected", "_selected_action": [first.pk, second.pk], "post": "yes"})
    assert {sandbox_state(first), sandbox_state(second)} == {"deleted"}
    assert set(SavedPaymentMethod.objects.values_list("status", flat=True)) == {"removed"}


def test_a_processor_outage_stops_the_delete_and_says_so(admin_client, method, sandbox):
    sandbox.faults.fail_next(1)
    response = admin_client.post(f"{PM}{method.pk}/delete/", {"post": "yes"}, follow=True)
    assert "Nothing was deleted" in response.content.decode()
    assert SavedPaymentMethod.objects.get(pk=method.pk).status == "active"
    assert sandbox_state(method) == "active"


def test_deleting_an_address_deletes_it_through_the_services(admin_client, customer):
    address = services.create_address(customer, line1="1 Main St", city="Springfield", country="US")
    second = services.create_address(customer, line1="2 Side St", city="Springfield", country="US")
    admin_client.post(f"/admin/vault_wallets/address/{address.pk}/delete/", {"post": "yes"})
    assert list(Address.objects.values_list("pk", flat=True)) == [second.pk]
    assert Address.objects.get(pk=second.pk).is_default  # the services moved the default


def test_deleting_a_customer_erases_and_keeps_charges(admin_client, customer, method):
    charge = services.charge(customer, 2250, "USD", idempotency_key="k1")
    confirm = admin_client.get(f"{CUS}{customer.pk}/delete/").content.decode()
    assert "permission" not in confirm and "Charges are financial records and are kept" in confirm
    assert "1 charge(s) kept as anonymized financial records" in confirm
    admin_client.post(f"{CUS}{customer.pk}/delete/", {"post": "yes"})
    erased = Customer.objects.get(pk=customer.pk)
    assert erased.erased_at is not None and erased.email == "" and erased.user is None
    assert Charge.objects.get(pk=charge.pk).customer_id == customer.pk
    assert ErasureRequest.objects.get().requested_by_name == "admin"
    assert sandbox_state(method) == "deleted"
    # The anonymous holder of the charges cannot be given personal data again, nor erased twice.
    page = admin_client.get(f"{CUS}{customer.pk}/change/").content.decode()
    assert 'name="email"' not in page and f"{CUS}{customer.pk}/delete/" not in page


def test_charge_detail_is_read_only_and_amounts_use_the_exponent(admin_client, customer, method):
    charge = services.charge(customer, 2250, "USD", idempotency_key="k1")
    Charge.objects.filter(pk=charge.pk).update(currency="JPY", amount=500, amount_captured=500)
    page = admin_client.get(f"/admin/vault_wallets/charge/{charge.pk}/change/").content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert "500 JPY" in page
    listing = admin_client.get("/admin/vault_wallets/charge/").content.decode()
    assert "500 JPY" in listing and "5.00" not in listing


def test_refunding_a_fully_refunded_charge_says_so(admin_client, customer, method):
    charge = services.charge(customer, 1500, "USD", idempotency_key="k1")
    services.refund(charge)
    response = admin_client.post("/admin/vault_wallets/charge/", {"action": "refund_charges",
                                                                  "_selected_action": [charge.pk]}, follow=True)
    html = response.content.decode()
    assert "already refunded in full (15.00 USD)" in html and "between 1 and 0" not in html
    assert f"Charge {charge.uid}" in html  # the public id keeps its lower case


def test_charge_page_lists_its_refunds_read_only(admin_client, customer, method):
    charge = services.charge(customer, 1500, "USD", idempotency_key="k1")
    services.refund(charge, 400)
    services.refund(charge, 100)
    other = services.charge(customer, 900, "USD", idempotency_key="k2")
    services.refund(other, 900)
    page = admin_client.get(f"/admin/vault_wallets/charge/{charge.pk}/change/").content.decode()
    mine = list(charge.refunds.order_by("sequence"))
    assert len(mine) == 2 and all(r.uid in page for r in mine)
    assert "4.00 USD" in page and "1.00 USD" in page and "succeeded" in page
    assert other.refunds.get().uid not in page  # only this charge's refunds
    assert "refunds-0-amount" not in page and 'name="refunds-0-DELETE"' not in page  # nothing editable


def test_filters_and_search(admin_client, customer, card_token, method):
    today = date.today()
    soon = services.add_payment_method(customer, card_token("5555555555554444", today.month, today.year))[0]
    in_30 = admin_client.get(PM + "?expires_within=30").content.decode()
    assert soon.uid in in_30 and method.uid not in in_30
    for query in (customer.reference_id, customer.email, "4444", soon.uid):
        assert soon.uid in admin_client.get(PM, {"q": query}).content.decode(), query
    for params in ({"account": "default"}, {"brand": "mastercard"}, {"status__exact": "active"},
                   {"verification_status__exact": soon.verification_status}):
        response = admin_client.get(PM, params)
        assert response.status_code == 200 and soon.uid in response.content.decode(), params
    assert soon.uid not in admin_client.get(PM, {"account": "eu"}).content.decode()


def test_a_processor_outage_leaves_the_erasure_pending_and_says_so(admin_client, customer, method, sandbox):
    sandbox.faults.fail_next(1)
    response = admin_client.post(f"{CUS}{customer.pk}/delete/", {"post": "yes"}, follow=True)
    html = response.content.decode()
    assert f"Erasure of customer {customer.uid} is pending" in html and "retried automatically" in html
    assert "was deleted successfully" not in html
    assert ErasureRequest.objects.get().status == "pending"
    assert sandbox_state(method) == "active"  # nothing pretended: the card is still at the processor
    retry = admin_client.post("/admin/vault_wallets/erasurerequest/", {
        "action": "retry_now", "_selected_action": [ErasureRequest.objects.get().pk]}, follow=True)
    assert "completed" in retry.content.decode()
    assert sandbox_state(method) == "deleted"
