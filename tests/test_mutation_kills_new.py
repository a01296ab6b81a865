"""Tests that kill mutants of the modules added to the mutation run in issue #13: the checkout
endpoint and views, the throttles, erasure and import (see "Mutation testing" in docs/testing.md).

Each test checks behaviour a shopper, a shop or an operator relies on: two customers are present
wherever a query scopes by customer, and limits are tested on both sides.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


# -- checkout_views: the no-JavaScript manage view and the saved-methods fragment ---------------


@pytest.fixture
def browser(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def two_accounts(user, card_token):
    """The shopper has a saved card in the default account and one in "eu" (its own mount)."""
    from vault_wallets import services
    from vault_wallets.processors import get_processor

    home = services.get_or_create_customer(user)
    home_card, _ = services.add_payment_method(home, card_token("4242424242424242"))
    eu = services.get_or_create_customer(user, "eu")
    eu_processor = get_processor("eu")
    eu_visa, _ = services.add_payment_method(eu, eu_processor.tokenize_card("4242424242424242", 12, 2034, "123"))
    eu_mc, _ = services.add_payment_method(eu, eu_processor.tokenize_card("5555555555554444", 12, 2034, "123"))
    return home_card, eu_visa, eu_mc


def test_an_accounts_own_mount_manages_that_accounts_methods(browser, two_accounts):
    home_card, eu_visa, eu_mc = two_accounts
    fragment = browser.get("/wallet-eu/checkout/methods/")
    assert eu_visa.uid.encode() in fragment.content and eu_mc.uid.encode() in fragment.content
    assert home_card.uid.encode() not in fragment.content
    # The eu mount makes the eu card the default; the default account's card is not its business.
    response = browser.post("/wallet-eu/checkout/manage/", {"vault_make_default": eu_mc.uid})
    assert response.status_code == 302
    eu_mc.refresh_from_db()
    home_card.refresh_from_db()
    assert eu_mc.is_default and home_card.is_default
    assert browser.post("/wallet-eu/checkout/manage/", {"vault_make_default": home_card.uid}).status_code == 404
    assert browser.post("/wallet/checkout/manage/", {"vault_make_default": eu_visa.uid}).status_code == 404


def test_the_fragment_names_the_radio_group_as_asked_or_falls_back(browser, customer, card_token):
    from vault_wallets import services

    services.add_payment_method(customer, card_token())
    names = {}
    for field in (None, "pm", "my_field", "my-field", "_", "-", "a" * 64, "a" * 65, "pm field"):
        query = {} if field is None else {"field": field}
        html = browser.get("/wallet/checkout/methods/", query).content.decode()
        names[field] = html.split('class="vault-radio" name="')[1].split('"')[0]
    assert names == {None: "saved_payment_method", "pm": "pm", "my_field": "my_field", "my-field": "my-field",
                     "_": "saved_payment_method", "-": "saved_payment_method", "a" * 64: "a" * 64,
                     "a" * 65: "saved_payment_method", "pm field": "saved_payment_method"}


@pytest.mark.parametrize(("secure", "next_url", "expected"), [
    (False, "/checkout/", "/checkout/"),
    (False, "http://testserver/checkout/", "http://testserver/checkout/"),   # the shop's own host, absolute
    (False, "http://elsewhere.example/checkout/", "/"),
    (True, "https://testserver/checkout/", "https://testserver/checkout/"),
    (True, "http://testserver/checkout/", "/"),                               # an https page never goes back to http
])
def test_next_is_followed_only_to_the_shops_own_pages(browser, customer, card_token, secure, next_url, expected):
    from vault_wallets import services

    visa, _ = services.add_payment_method(customer, card_token())
    response = browser.post("/wallet/checkout/manage/", {"vault_make_default": visa.uid, "vault_next": next_url},
                            secure=secure)
    assert response.status_code == 302 and response["Location"] == expected
