"""Card-testing limits (issue #9, finding 5): throttles per customer and per IP on the
tokenizer, add-card and customer-token endpoints, and a cool-down after verification failures.
Every refusal is a 429 with ``Retry-After`` and the app's JSON error shape."""

from __future__ import annotations

import time

import pytest
from rest_framework.test import APIClient

from vault_wallets import conf
from vault_wallets.models import SavedPaymentMethod

pytestmark = pytest.mark.django_db

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
VERIFY_FAIL = "4000000000000127"


def assert_throttled(response):
    assert response.status_code == 429, response.content
    assert int(response["Retry-After"]) >= 1
    body = response.json()
    assert body["error"]["code"] == "throttled" and body["error"]["message"]
    # Shown to the shopper as is by the checkout: a sentence, not DRF's "Expected available in N seconds".
    assert "seconds" not in body["error"]["message"] and "try again" in body["error"]["message"]
    assert response["Content-Type"].startswith("application/json")


def statuses(responses):
    counts = {}
    for response in responses:
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
    return counts


def test_defaults_are_documented_and_read_lazily(settings):
    assert conf.throttle_rate("sandbox_tokenize_ip") == conf.THROTTLE_RATES_DEFAULTS["sandbox_tokenize_ip"]
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "THROTTLE_RATES": {"sandbox_tokenize_ip": "5/minute"}}
    assert conf.throttle_rate("sandbox_tokenize_ip") == "5/minute"
    assert conf.throttle_rate("customer_token_ip") == conf.THROTTLE_RATES_DEFAULTS["customer_token_ip"]
    with open("docs/hardening.md") as docs:
        text = docs.read()
    for scope, rate in conf.THROTTLE_RATES_DEFAULTS.items():
        assert f"`{scope}`" in text and f"`{rate}`" in text, scope


def test_tokenizer_is_limited_per_ip():
    client = APIClient()
    responses = [client.post("/wallet/sandbox/tokens/", CARD, format="json") for _ in range(100)]
    limit = int(conf.THROTTLE_RATES_DEFAULTS["sandbox_tokenize_ip"].split("/")[0])
    assert statuses(responses) == {201: limit, 429: 100 - limit}
    assert_throttled(responses[-1])
    # Another client address has its own allowance.
    assert client.post("/wallet/sandbox/tokens/", CARD, format="json", REMOTE_ADDR="10.0.0.9").status_code == 201


def test_a_forged_forwarded_for_does_not_buy_a_new_allowance(settings):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "THROTTLE_RATES": {"sandbox_tokenize_ip": "3/minute"}}
    client = APIClient()
    codes = [client.post("/wallet/sandbox/tokens/", CARD, format="json",
                         HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code for i in range(6)]
    assert codes == [201, 201, 201, 429, 429, 429]
    # Behind one proxy the shop says so, and the proxy-appended address is the client.
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "THROTTLE_NUM_PROXIES": 1,
                              "THROTTLE_RATES": {"sandbox_tokenize_ip": "3/minute"}}
    codes = [client.post("/wallet/sandbox/tokens/", CARD, format="json",
                         HTTP_X_FORWARDED_FOR=f"spoofed, 203.0.113.{i % 2}").status_code for i in range(8)]
    assert codes.count(201) == 6 and codes.count(429) == 2


def test_customer_tokens_are_limited_per_customer(api, make_user, make_api):
    responses = [api.post("/wallet/customer-token/", {}, format="json") for _ in range(100)]
    limit = int(conf.THROTTLE_RATES_DEFAULTS["customer_token_customer"].split("/")[0])
    assert statuses(responses) == {201: limit, 429: 100 - limit}
    assert_throttled(responses[-1])
    # Another shopper is not affected by this one's limit.
    other = make_api(make_user("other"))
    assert other.post("/wallet/customer-token/", {}, format="json", REMOTE_ADDR="10.0.0.7").status_code == 201


def test_customer_tokens_are_limited_per_ip(settings, make_user, make_api):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "THROTTLE_RATES": {"customer_token_ip": "4/minute"}}
    codes = [make_api(make_user(f"s{i}")).post("/wallet/customer-token/", {}, format="json").status_code
             for i in range(6)]
    assert codes == [201] * 4 + [429] * 2


def test_add_card_is_limited_per_customer(api, card_token):
    limit = int(conf.THROTTLE_RATES_DEFAULTS["add_payment_method_customer"].split("/")[0])
    responses = [api.post("/wallet/api/payment-methods/", {"token": card_token()}, format="json")
                 for _ in range(limit + 5)]
    assert statuses(responses) == {201: 1, 200: limit - 1, 429: 5}  # one card, re-saved: still counted
    assert_throttled(responses[-1])
    assert api.get("/wallet/api/payment-methods/").status_code == 200  # reading is not limited


def test_add_card_is_limited_per_ip(settings, make_user, make_api, card_token):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "THROTTLE_RATES": {"add_payment_method_ip": "3/hour"}}
    codes = [make_api(make_user(f"ip{i}")).post("/wallet/api/payment-methods/", {"token": card_token()},
                                                 format="json").status_code for i in range(5)]
    assert codes == [201] * 3 + [429] * 2


def test_verification_failures_start_a_cool_down(settings, api, card_token):
    """100 add-card attempts with a card that fails verification: 3 reach the processor."""
    responses = [api.post("/wallet/api/payment-methods/", {"token": card_token(VERIFY_FAIL)}, format="json")
                 for _ in range(100)]
    assert statuses(responses) == {422: 3, 429: 97}
    assert_throttled(responses[3])
    assert "verification" in responses[3].json()["error"]["message"]
    assert int(responses[3]["Retry-After"]) > 3000  # the hour-long default cool-down
    # A good card is refused too while cooling down (card testers switch cards).
    assert_throttled(api.post("/wallet/api/payment-methods/", {"token": card_token()}, format="json"))
    assert SavedPaymentMethod.objects.count() == 0


def test_the_cool_down_ends(settings, api, card_token):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "VERIFICATION_FAILURE_LIMIT": 2,
                              "VERIFICATION_COOLDOWN_SECONDS": 1}
    codes = [api.post("/wallet/api/payment-methods/", {"token": card_token(VERIFY_FAIL)}, format="json").status_code
             for _ in range(3)]
    assert codes == [422, 422, 429]
    time.sleep(1.2)
    assert api.post("/wallet/api/payment-methods/", {"token": card_token()}, format="json").status_code == 201


def test_a_rate_can_be_switched_off(settings, api):
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "THROTTLE_RATES": {
        "customer_token_customer": None, "customer_token_ip": None}}
    codes = {api.post("/wallet/customer-token/", {}, format="json").status_code for _ in range(40)}
    assert codes == {201}


def test_429_is_in_the_schema():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/wallet/api/payment-methods/"]["post"]
    assert "429" in operation["responses"]
