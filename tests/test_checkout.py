"""The checkout's server side: POST /wallet/checkout-session/, the three template tags, and the
no-JavaScript make-default / remove (with confirmation) views.

Authorization like every other endpoint: session + CSRF only, the customer is ``request.user``'s
whatever the request says, another customer's method answers 404, and the answer carries only
what the processor's browser library needs (never an API key, secret or vaulted token).
"""

from __future__ import annotations

import base64
import json

import pytest
from django.template import Context, Template
from django.test import RequestFactory

from vault_wallets import services
from vault_wallets.models import Customer, SavedPaymentMethod
from vault_wallets.testing.fakes import caselle, cybersource, exact, paysimple, processout

# The fakes' fixtures (one server each, started on first use).
caselle_fake = caselle.caselle_fake
cybersource_fake = cybersource.cybersource_fake
exact_fake = exact.exact_fake
paysimple_fake = paysimple.paysimple_fake
processout_fake = processout.processout_fake

pytestmark = pytest.mark.django_db

SESSION = "/wallet/checkout-session/"


def use_fake(settings, fake, **extra):
    """Point the default account at ``fake`` as ``VAULT_FAKE`` does (stand-in JS_SDK_URL included)."""
    account = fake.account_settings(**extra)
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "ACCOUNTS": {
        **settings.VAULT_WALLETS["ACCOUNTS"], "default": account}}
    return account["OPTIONS"]


def claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# -- authorization ----------------------------------------------------------------------------


def test_anonymous_is_refused_and_creates_nothing(make_api):
    response = make_api(None).post(SESSION, {}, format="json")
    assert response.status_code in (401, 403)
    assert Customer.objects.count() == 0


def test_csrf_is_required(user):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(SESSION, {}, format="json")
    assert response.status_code == 403 and response.json()["error"]["message"]


def test_a_customer_token_is_not_enough(api):
    token = api.post("/wallet/customer-token/", {}, format="json").json()["token"]
    from rest_framework.test import APIClient

    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert bearer.post(SESSION, {}, format="json").status_code in (401, 403)


def test_get_is_405(api):
    assert api.get(SESSION).status_code == 405


def test_sandbox_session(api, user, django_assert_max_num_queries):
    api.post(SESSION, {}, format="json")  # the first call creates the customer (here and at the processor)
    with django_assert_max_num_queries(4):  # session + user, customer; nothing per method
        response = api.post(SESSION, {}, format="json")
    assert response.status_code == 201, response.content
    assert response.json() == {"processor": "sandbox", "sdk": {"url": "", "integrity": ""}, "client": {},
                               "expires_at": None}
    assert response["Cache-Control"] == "no-store"
    assert Customer.objects.get(user=user).processor_customer_id  # created at the processor on first need


def test_the_customer_is_the_logged_in_users_whatever_the_request_says(api, user, make_user, settings,
                                                                        paysimple_fake):
    use_fake(settings, paysimple_fake)
    other = services.ensure_processor_customer(services.get_or_create_customer(make_user("mallory")))
    response = api.post(f"{SESSION}?customer={other.uid}&customer_id={other.processor_customer_id}",
                        {"customer": other.uid, "customer_id": other.processor_customer_id,
                         "CustomerId": other.processor_customer_id}, format="json")
    assert response.status_code == 201, response.content
    mine = Customer.objects.get(user=user)
    assert claims(response.json()["client"]["auth"]["token"])["sub"] == mine.processor_customer_id
    assert mine.processor_customer_id != other.processor_customer_id


def test_processor_down_is_503(api, user, settings, paysimple_fake):
    use_fake(settings, paysimple_fake)
    services.ensure_processor_customer(services.get_or_create_customer(user))
    paysimple_fake.faults.fail_next(503, count=5)
    response = api.post(SESSION, {}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "processor_unavailable"


# What each processor's browser library gets — and nothing else (see docs/checkout.md).
EXPECTED_CLIENT_KEYS = {
    "paysimple": {"auth", "mode", "customer"},
    "processout": {"projectId"},
    "cybersource": {"captureContext"},
    "exact": {"accessToken", "orderId"},
    "caselle": {"processor", "config", "supportedMethods"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_CLIENT_KEYS))
def test_each_processor_hands_the_browser_only_what_its_library_needs(name, request, api, user, settings):
    fake = request.getfixturevalue(f"{name}_fake")
    options = use_fake(settings, fake)
    response = api.post(SESSION, {}, format="json", HTTP_HOST="localhost:8000")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["processor"] == name
    assert set(body["client"]) == EXPECTED_CLIENT_KEYS[name]
    assert body["sdk"]["url"] == fake.standin_url()  # JS_SDK_URL overrides the documented URL
    text = json.dumps(body)
    secrets = [str(v) for k, v in options.items()
               if any(word in k for word in ("SECRET", "KEY", "TOKEN", "PASSWORD")) and isinstance(v, str)]
    secrets += [str(v) for v in (options.get("WEBHOOK_KEYS") or {}).values()]
    assert secrets and not [s for s in secrets if s and s in text]
    customer = Customer.objects.get(user=user)
    assert customer.processor_customer_id not in text.replace(json.dumps(body["client"]), "") or name == "processout"
    if name != "processout":  # ProcessOut hands cust_… to makeCardToken only with VERIFY_TOKENS
        assert customer.processor_customer_id not in json.dumps(
            {k: v for k, v in body["client"].items() if k not in ("auth", "captureContext")})
    if name == "cybersource":
        assert body["sdk"]["integrity"] == fake.standin_integrity()  # clientLibraryIntegrity, for SRI
        context = claims(body["client"]["captureContext"])
        assert context["ctx"][0]["data"]["targetOrigins"] == ["http://localhost:8000"]  # the page's origin


def test_a_checkout_session_never_shows_its_values_in_repr(settings, paysimple_fake, user):
    from vault_wallets.services.checkout import start_checkout

    use_fake(settings, paysimple_fake)
    session = start_checkout(services.get_or_create_customer(user), "https://shop.example")
    assert session.client["auth"]["token"] not in repr(session) and "client='<redacted>'" in repr(session)


def test_processout_verify_tokens_hands_over_the_pending_customer_token(api, user, settings, processout_fake):
    use_fake(settings, processout_fake, VERIFY_TOKENS=True)
    body = api.post(SESSION, {}, format="json").json()
    customer = Customer.objects.get(user=user)
    assert body["client"]["customerId"] == customer.processor_customer_id
    token = processout_fake.tokens[body["client"]["customerTokenId"]]
    assert token["customer_id"] == customer.processor_customer_id and token["verification_status"] == "pending"
    assert processout_fake.PROJECT_SECRET not in json.dumps(body)


def test_caselle_needs_js_sdk_url(api, settings, caselle_fake):
    options = use_fake(settings, caselle_fake)
    options.pop("JS_SDK_URL")
    response = api.post(SESSION, {}, format="json")
    assert response.status_code == 400 and "JS_SDK_URL" in response.json()["error"]["message"]


# -- the template tags -------------------------------------------------------------------------


def render(request, text):
    return Template("{% load vault_wallets %}" + text).render(Context({"request": request}))


@pytest.fixture
def page_request(rf: RequestFactory):
    def make(user):
        request = rf.get("/checkout/")
        request.user = user
        return request

    return make


def test_tags_render_nothing_for_anonymous_visitors(page_request):
    from django.contrib.auth.models import AnonymousUser

    html = render(page_request(AnonymousUser()),
                  "[{% vault_saved_methods %}][{% vault_add_card %}][{% vault_wallet_script %}]")
    assert html == "[][][]"


def test_saved_methods_is_an_accessible_radio_group(page_request, user, customer, card_token, make_user,
                                                    django_assert_num_queries):
    visa, _ = services.add_payment_method(customer, card_token("4242424242424242"))
    mastercard, _ = services.add_payment_method(customer, card_token("5555555555554444"), label="Work")
    expired, _ = services.add_payment_method(customer, card_token("6011111111111117", 1, 2035))
    SavedPaymentMethod.objects.filter(pk=expired.pk).update(status="expired")
    someone_else = services.get_or_create_customer(make_user("other"))
    services.add_payment_method(someone_else, card_token("378282246310005"))

    with django_assert_num_queries(2):  # the customer, its methods
        html = render(page_request(user), "{% vault_saved_methods %}")
    assert "<legend class=\"vault-legend\">Saved payment methods</legend>" in html
    assert html.count('name="saved_payment_method"') == 3
    assert f'value="{visa.uid}" id="vault-pm-{visa.uid}"' in html
    default_radio = html.split(f'id="vault-pm-{visa.uid}"')[1].split(">")[0]
    assert "checked" in default_radio  # the default is pre-selected
    expired_radio = html.split(f'id="vault-pm-{expired.uid}"')[1].split(">")[0]
    assert "disabled" in expired_radio and "checked" not in expired_radio
    assert 'aria-label="Remove Visa ending 4242"' in html
    assert 'aria-label="Make Mastercard ending 4444 the default"' in html
    assert 'aria-label="Make Discover ending 1117 the default"' not in html  # not chargeable: no default button
    assert "(Work)" in html and "Expired 01/2035" in html
    assert "0005" not in html  # another customer's card
    for method in SavedPaymentMethod.objects.all():
        assert method.processor_token not in html


def test_wallet_script_configures_wallet_js_and_the_adapter(page_request, user):
    html = render(page_request(user), "{% vault_wallet_script %}")
    assert '<script src="/static/vault_wallets/wallet.js" defer></script>' in html
    assert '<script src="/static/vault_wallets/adapters/sandbox.js" defer></script>' in html
    config = json.loads(html.split('id="vault-wallet-config" type="application/json">')[1].split("</script>")[0])
    assert config["processor"] == "sandbox" and config["checkoutSessionUrl"] == SESSION
    assert config["paymentMethodsUrl"] == "/wallet/api/payment-methods/"
    assert "wallet.css" in html
    assert "wallet.css" not in render(page_request(user), "{% vault_wallet_script css=False %}")


def test_add_card_renders_the_processors_fields(page_request, user, settings, processout_fake):
    html = render(page_request(user), "{% vault_add_card %}")
    assert 'data-vault-input="number"' in html and "Adding a card needs JavaScript" in html
    use_fake(settings, processout_fake)
    html = render(page_request(user), "{% vault_add_card %}")
    assert 'data-processout-input="cc-number"' in html and 'data-vault-input="number"' not in html


# -- no JavaScript: make default, remove with a confirmation --------------------------------------


@pytest.fixture
def browser_client(client, user):
    client.force_login(user)
    return client


def test_make_default_without_javascript(browser_client, customer, card_token):
    visa, _ = services.add_payment_method(customer, card_token("4242424242424242"))
    mastercard, _ = services.add_payment_method(customer, card_token("5555555555554444"))
    response = browser_client.post("/wallet/checkout/manage/", {"vault_make_default": mastercard.uid,
                                                                "vault_next": "/checkout/"})
    assert response.status_code == 302 and response["Location"] == "/checkout/"
    mastercard.refresh_from_db()
    assert mastercard.is_default


def test_remove_asks_for_confirmation_first(browser_client, customer, card_token):
    visa, _ = services.add_payment_method(customer, card_token("4242424242424242"))
    page = browser_client.post("/wallet/checkout/manage/", {"vault_remove": visa.uid, "vault_next": "/checkout/"})
    assert page.status_code == 200
    assert b"Remove Visa ending 4242?" in page.content
    visa.refresh_from_db()
    assert visa.status == "active"  # nothing removed yet
    done = browser_client.post("/wallet/checkout/manage/", {"vault_remove": visa.uid, "vault_confirm": "yes",
                                                            "vault_next": "/checkout/"})
    assert done.status_code == 302
    visa.refresh_from_db()
    assert visa.status == "removed"


def test_another_customers_method_is_404_and_untouched(browser_client, card_token, make_user):
    other = services.get_or_create_customer(make_user("other"))
    theirs, _ = services.add_payment_method(other, card_token("4242424242424242"))
    for data in ({"vault_remove": theirs.uid, "vault_confirm": "yes"}, {"vault_make_default": theirs.uid},
                 {"vault_remove": "spm_doesnotexist"}):
        assert browser_client.post("/wallet/checkout/manage/", data).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "active"


def test_manage_needs_login_and_csrf(client, user, customer, card_token):
    visa, _ = services.add_payment_method(customer, card_token("4242424242424242"))
    anonymous = client.post("/wallet/checkout/manage/", {"vault_remove": visa.uid, "vault_confirm": "yes"})
    assert anonymous.status_code == 302 and "/login" in anonymous["Location"]
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post("/wallet/checkout/manage/", {"vault_remove": visa.uid, "vault_confirm": "yes"}
                       ).status_code == 403
    visa.refresh_from_db()
    assert visa.status == "active"


def test_next_is_never_an_open_redirect(browser_client, customer, card_token):
    visa, _ = services.add_payment_method(customer, card_token("4242424242424242"))
    response = browser_client.post("/wallet/checkout/manage/", {"vault_make_default": visa.uid,
                                                                "vault_next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_the_fragment_is_the_shoppers_list(browser_client, client, customer, card_token, django_assert_max_num_queries):
    services.add_payment_method(customer, card_token("4242424242424242"))
    with django_assert_max_num_queries(4):
        response = browser_client.get("/wallet/checkout/methods/?field=pm&next=/checkout/")
    assert response.status_code == 200
    assert b'name="pm"' in response.content and b"Visa ending 4242" in response.content
    assert response["Cache-Control"].startswith("max-age=0")
    client.logout()
    assert client.get("/wallet/checkout/methods/").status_code == 401


# -- ProcessOut with VERIFY_TOKENS: makeCardToken completes a server-created pending token -------


def _processout(fake, **options):
    from vault_wallets.processors.processout import ProcessOutProcessor

    return ProcessOutProcessor("po", {**fake.account_options(), **options})


def _make_card_token(fake, session, number):
    """What ProcessOut.js does in the browser (the stand-in's wire): POST /cards, then PUT the
    pending customer token with the card as source — with the public project id only."""
    import requests

    auth = (session.client["projectId"], "")
    card = requests.post(f"{fake.url}/_fake/standin/processout/cards", auth=auth, timeout=5,
                         json={"number": number, "exp_month": 12, "exp_year": 2034, "cvc2": "123"}).json()
    path = f"/_fake/standin/processout/customers/{session.client['customerId']}/tokens/" \
           f"{session.client['customerTokenId']}"
    return requests.put(fake.url + path, auth=auth, timeout=5, json={"source": card["card"]["id"], "verify": True})


def test_processout_verified_token_is_claimed_for_its_customer_only(processout_fake):
    from vault_wallets.processors.base import (
        CheckoutRequest,
        CustomerData,
        CustomerRef,
        TemporaryTokenError,
        VaultRequest,
        VerificationFailedError,
    )

    processor = _processout(processout_fake, VERIFY_TOKENS=True)
    alex = CustomerRef(id=processor.create_customer(CustomerData(reference_id="alex", name="Alex M")).id)
    mallory = CustomerRef(id=processor.create_customer(CustomerData(reference_id="mallory", name="M M")).id)

    session = processor.prepare_checkout(CheckoutRequest(customer=alex))
    assert _make_card_token(processout_fake, session, "4242424242424242").status_code == 200
    token_id = session.client["customerTokenId"]
    with pytest.raises(TemporaryTokenError):  # another shopper submitting alex's token: not found
        processor.vault_payment_method(VaultRequest(customer=mallory, temporary_token=token_id))
    method = processor.vault_payment_method(VaultRequest(customer=alex, temporary_token=token_id,
                                                         make_default=True))
    assert (method.token, method.last4, method.verification_status, method.is_default) == (
        token_id, "4242", "success", True)

    pending = processor.prepare_checkout(CheckoutRequest(customer=alex))
    with pytest.raises(TemporaryTokenError):  # makeCardToken never ran: no card on the token
        processor.vault_payment_method(VaultRequest(customer=alex, temporary_token=pending.client["customerTokenId"]))

    declined = processor.prepare_checkout(CheckoutRequest(customer=alex))
    _make_card_token(processout_fake, declined, "4000000000000002")
    with pytest.raises(VerificationFailedError):
        processor.vault_payment_method(VaultRequest(customer=alex, temporary_token=declined.client["customerTokenId"]))
    assert declined.client["customerTokenId"] not in processout_fake.tokens  # discarded at ProcessOut


def test_processout_stand_in_needs_the_project_id(processout_fake):
    import requests

    refused = requests.post(f"{processout_fake.url}/_fake/standin/processout/cards", auth=("test-proj_other", ""),
                            json={"number": "4242424242424242", "exp_month": 12, "exp_year": 2034}, timeout=5)
    assert refused.status_code == 401 and refused.json()["success"] is False


@pytest.mark.parametrize("value", ["spm_\x00abc", "x" * 5000, "spm_../../etc", "spm_%ED%A0%80", ""])
def test_hostile_manage_input_is_404_and_changes_nothing(browser_client, customer, card_token, value):
    visa, _ = services.add_payment_method(customer, card_token("4242424242424242"))
    for field in ("vault_remove", "vault_make_default"):
        response = browser_client.post("/wallet/checkout/manage/", {field: value, "vault_confirm": "yes",
                                                                    "vault_next": "/\x00checkout"})
        assert response.status_code == 404
    visa.refresh_from_db()
    assert visa.status == "active" and visa.is_default
    fragment = browser_client.get("/wallet/checkout/methods/", {"field": value, "next": "\x00//evil.example"})
    assert fragment.status_code == 200 and b'name="saved_payment_method"' in fragment.content


def test_an_undecodable_form_body_is_404(browser_client, customer, card_token):
    visa, _ = services.add_payment_method(customer, card_token("4242424242424242"))
    response = browser_client.post("/wallet/checkout/manage/", data="vault_remove=spm_%ED%A0%80&vault_confirm=yes",
                                   content_type="application/x-www-form-urlencoded")
    assert response.status_code == 404
    visa.refresh_from_db()
    assert visa.status == "active"
