"""Stored shopper text is printable (issue #9, finding 7): no control characters, bidi
overrides or zero-width characters in card labels or any address field; ISO 3166-1 countries."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from vault_wallets import services
from vault_wallets.models import Address, SavedPaymentMethod
from vault_wallets.validators import ISO_3166_ALPHA2, clean_country, clean_text

pytestmark = pytest.mark.django_db

ADDRESS = {"label": "Home", "name": "Alex Morales", "line1": "1 Main St", "line2": "Apt 2", "city": "Springfield",
           "state": "IL", "postal_code": "62701", "country": "US"}
TEXT_FIELDS = ["label", "name", "line1", "line2", "city", "state", "postal_code"]
HOSTILE = {
    "bidi override": "Home\u202egnp.exe",
    "bidi isolate": "a\u2066b",
    "zero-width space": "Ho\u200bme",
    "zero-width joiner": "Ho\u200dme",
    "word joiner": "Ho\u2060me",
    "byte order mark": "\ufeffHome",
    "escape": "Home\x1b[31m",
    "newline": "Home\nInjected: yes",
    "tab": "Ho\tme",
    "delete": "Home\x7f",
    "C1 control": "Ho\x85me",
    "line separator": "Ho\u2028me",
    "private use": "Home\ue000",
}
FINE = {"label": "Zoë's Ångström card ✈", "line1": "Straße 5", "city": "東京都千代田区", "name": "شارع",
        "line2": "Flat 3 · Rear", "state": "Île-de-France", "postal_code": "SW1A 1AA"}


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_address_fields_refuse_invisible_and_control_characters(api, field, kind):
    response = api.post("/wallet/api/addresses/", {**ADDRESS, field: HOSTILE[kind]}, format="json")
    assert response.status_code == 400, (field, kind, response.content)
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"], error
    assert "character" in error["fields"][field][0]
    assert HOSTILE[kind] not in response.content.decode("unicode_escape", "replace")  # never echoed
    assert Address.objects.count() == 0


@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_address_updates_are_checked_too(api, field):
    uid = api.post("/wallet/api/addresses/", ADDRESS, format="json").json()["id"]
    response = api.patch(f"/wallet/api/addresses/{uid}/", {field: HOSTILE["bidi override"]}, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["fields"]
    assert getattr(Address.objects.get(), field) == ADDRESS[field]


@pytest.mark.parametrize("country", ["ÄÖ", "ZZ", "XX", "U", "USA", "U\u200bS", "１２", "", "ＵＳ"])
def test_country_must_be_iso_3166_alpha2(api, country):
    response = api.post("/wallet/api/addresses/", {**ADDRESS, "country": country}, format="json")
    assert response.status_code == 400, (country, response.content)
    assert "country" in response.json()["error"]["fields"]
    assert Address.objects.count() == 0


def test_real_addresses_are_accepted_and_normalized(api):
    response = api.post("/wallet/api/addresses/", {**ADDRESS, **FINE, "country": "de",
                                                   "name": "Jose\u0301"}, format="json")
    assert response.status_code == 201, response.content
    stored = Address.objects.get()
    assert stored.country == "DE" and stored.city == FINE["city"] and stored.name == "Jos\u00e9"  # NFC


def test_card_labels(api, card_token, settings):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "THROTTLE_RATES": {"add_payment_method_customer": None,
                                                                          "add_payment_method_ip": None}}
    for kind, value in HOSTILE.items():
        response = api.post("/wallet/api/payment-methods/", {"token": card_token(), "label": value}, format="json")
        assert response.status_code == 400, (kind, response.content)
        assert "label" in response.json()["error"]["fields"]
    assert SavedPaymentMethod.objects.count() == 0
    created = api.post("/wallet/api/payment-methods/", {"token": card_token(), "label": FINE["label"]},
                       format="json")
    assert created.status_code == 201
    uid = created.json()["id"]
    for kind, value in HOSTILE.items():
        response = api.patch(f"/wallet/api/payment-methods/{uid}/", {"label": value}, format="json")
        assert response.status_code == 400, (kind, response.content)
    assert SavedPaymentMethod.objects.get().label == FINE["label"]


def test_services_refuse_it_too(customer, card_token):
    """The shop's own code calling the services gets the same rules."""
    with pytest.raises(ValidationError) as caught:
        services.create_address(customer, **{**ADDRESS, "city": "Spring\u202efield"})
    assert "city" in caught.value.message_dict
    with pytest.raises(ValidationError):
        services.create_address(customer, **{**ADDRESS, "country": "ÄÖ"})
    with pytest.raises(ValidationError):
        services.add_payment_method(customer, card_token(), label="a\u200bb")
    method, _ = services.add_payment_method(customer, card_token(), label="Work")
    with pytest.raises(ValidationError):
        services.update_payment_method(customer, method.uid, label="a\x00b")
    assert Address.objects.count() == 0 and SavedPaymentMethod.objects.get().label == "Work"


def test_the_validators():
    assert len(ISO_3166_ALPHA2) == 249 and {"US", "GB", "DE", "AX", "SS"} <= ISO_3166_ALPHA2
    assert clean_country(" gb ") == "GB"
    assert clean_text("Cafe\u0301") == "Caf\u00e9"
    with pytest.raises(ValidationError):
        clean_text("\ud800")
