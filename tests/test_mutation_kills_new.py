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


# -- throttling: the client address, the caller's identity, the verification cool-down ----------


@pytest.mark.parametrize(("proxies", "remote", "forwarded", "expected"), [
    (0, "192.0.2.1", "198.51.100.7", "192.0.2.1"),                          # no proxy: the header is ignored
    (None, "192.0.2.1", "198.51.100.7", "192.0.2.1"),
    (1, "192.0.2.1", None, "192.0.2.1"),                                     # no header: the peer
    (1, "192.0.2.1", "spoofed, 203.0.113.5", "203.0.113.5"),                 # one proxy appends the client
    (2, "192.0.2.1", "spoofed, 203.0.113.5, 10.0.0.2", "203.0.113.5"),      # two proxies: second from the end
    (3, "192.0.2.1", "203.0.113.5 , 10.0.0.2", "203.0.113.5"),              # fewer hops than proxies: the first
    (1, "192.0.2.1", " , ", "192.0.2.1"),                                    # only empty hops: the peer
    (1, "", None, ""),
])
def test_the_client_address_trusts_exactly_the_configured_proxies(rf, settings, proxies, remote, forwarded,
                                                                   expected):
    from vault_wallets.api.throttling import client_ip

    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "THROTTLE_NUM_PROXIES": proxies}
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    assert client_ip(rf.post("/", **meta)) == expected


def test_without_any_client_address_the_ip_throttle_does_not_count(settings):
    from rest_framework.test import APIClient

    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "THROTTLE_RATES": {"sandbox_tokenize_ip": "1/minute"}}
    client = APIClient()
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    codes = [client.post("/wallet/sandbox/tokens/", card, format="json", REMOTE_ADDR="").status_code
             for _ in range(3)]
    assert codes == [201, 201, 201]
    codes = [client.post("/wallet/sandbox/tokens/", card, format="json").status_code for _ in range(2)]
    assert codes == [201, 429]


def test_the_customer_identity_of_a_request(rf, make_user):
    from django.contrib.auth.models import AnonymousUser

    from vault_wallets import services
    from vault_wallets.api.authentication import CustomerTokenAuth
    from vault_wallets.api.throttling import customer_ident

    alice, bob = make_user("alice"), make_user("bob")
    customer = services.get_or_create_customer(bob)
    request = rf.post("/")
    request.user = AnonymousUser()
    assert customer_ident(request) is None
    request.user = alice
    assert customer_ident(request) == f"user:{alice.pk}"
    request.auth = CustomerTokenAuth(customer=customer, claims=None)  # a customer token wins over the session
    assert customer_ident(request) == f"customer:{customer.pk}"


def _cooldown(**values):
    return {"VERIFICATION_FAILURE_LIMIT": 2, "VERIFICATION_FAILURE_WINDOW_SECONDS": 60,
            "VERIFICATION_COOLDOWN_SECONDS": 120, **values}


def test_the_cool_down_is_per_customer_and_says_how_long(settings, make_user):
    from rest_framework.exceptions import Throttled

    from vault_wallets import services
    from vault_wallets.api.throttling import check_verification_cooldown, record_verification_failure

    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, **_cooldown()}
    alice = services.get_or_create_customer(make_user("alice"))
    bob = services.get_or_create_customer(make_user("bob"))
    record_verification_failure(alice)
    check_verification_cooldown(alice)  # one failure of two: not yet
    record_verification_failure(bob)
    check_verification_cooldown(alice)  # bob's failure is not alice's
    record_verification_failure(alice)  # the second within the window
    with pytest.raises(Throttled) as refused:
        check_verification_cooldown(alice)
    assert refused.value.wait == 120
    assert str(refused.value.detail).startswith("Too many payment methods failed verification; try again later. ")
    check_verification_cooldown(bob)  # bob is not cooling down


def test_a_limit_of_zero_switches_the_cool_down_off(settings, customer):
    from vault_wallets.api.throttling import check_verification_cooldown, record_verification_failure

    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, **_cooldown(VERIFICATION_FAILURE_LIMIT=0)}
    for _ in range(5):
        record_verification_failure(customer)
    check_verification_cooldown(customer)


def test_failures_outside_the_window_are_forgotten_and_a_cool_down_starts_afresh(settings, customer):
    import time

    from rest_framework.exceptions import Throttled

    from vault_wallets.api.throttling import check_verification_cooldown, record_verification_failure

    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS,
                              **_cooldown(VERIFICATION_FAILURE_WINDOW_SECONDS=1, VERIFICATION_COOLDOWN_SECONDS=1)}
    record_verification_failure(customer)
    time.sleep(1.1)
    record_verification_failure(customer)  # the first one is out of the window: one of two
    check_verification_cooldown(customer)
    record_verification_failure(customer)  # two within the window
    with pytest.raises(Throttled) as refused:
        check_verification_cooldown(customer)
    assert refused.value.wait == 1
    time.sleep(1.1)
    check_verification_cooldown(customer)  # over
    record_verification_failure(customer)  # counting starts again from zero
    check_verification_cooldown(customer)


# -- erasure: only the erased customer, exact outcomes, retries with backoff -------------------


@pytest.fixture
def shopper_wallet(make_user, card_token):
    """``shopper_wallet(name)`` → (customer, [two saved cards], address) with personal data everywhere."""
    from vault_wallets import services
    from vault_wallets.models import Customer, PaymentMethodChange

    def make(name):
        customer = services.get_or_create_customer(make_user(name))
        Customer.objects.filter(pk=customer.pk).update(name=name.title(), email=f"{name}@example.com",
                                                       phone="+15555550100", metadata={"crm": name})
        customer.refresh_from_db()
        cards = [services.add_payment_method(customer, card_token(number), label=f"{name}'s card")[0]
                 for number in ("4242424242424242", "5555555555554444")]
        address = services.create_address(customer, line1="1 Main St", city="Springfield", country="US")
        for card in cards:  # the history of a card's display data (an updater's change, say)
            PaymentMethodChange.objects.create(payment_method=card, source="card updater",
                                               before={"exp_year": 2030}, after={"exp_year": 2034})
        customer.refresh_from_db()
        return customer, cards, address

    return make


def _snapshot(customer):
    """Everything erasure could touch of one customer, locally and at the sandbox processor."""
    from vault_wallets.models import Address, Customer, PaymentMethodChange, SavedPaymentMethod
    from vault_wallets.sandbox.models import SandboxCustomer, SandboxMethod

    row = Customer.objects.get(pk=customer.pk)
    return {
        "customer": (row.name, row.email, row.phone, row.metadata, row.token_version, row.reference_id,
                     row.user_id, row.processor_customer_id, row.erased_at),
        "addresses": list(Address.objects.filter(customer=row).values_list("uid", "line1")),
        "methods": list(SavedPaymentMethod.objects.filter(customer=row).order_by("pk").values_list(
            "uid", "status", "is_default", "holder_name", "label", "processor_data", "fingerprint", "exp_month")),
        "tokens": [m.processor_token for m in SavedPaymentMethod.objects.filter(customer=row).order_by("pk")],
        "history": PaymentMethodChange.objects.filter(payment_method__customer=row).count(),
        "at_processor": (SandboxCustomer.objects.get(sid=row.processor_customer_id).deleted,
                         sorted(SandboxMethod.objects.filter(customer__sid=row.processor_customer_id)
                                .values_list("state", flat=True))),
    }


def _outcomes(erasure):
    assert all(set(entry) == {"object", "id", "outcome", "at"} for entry in erasure.outcomes), erasure.outcomes
    return [(entry["object"], entry["id"], entry["outcome"]) for entry in erasure.outcomes]


def test_erasing_one_customer_leaves_another_untouched(shopper_wallet, django_capture_on_commit_callbacks):
    from vault_wallets import services
    from vault_wallets.models import Customer, ErasureRequest
    from vault_wallets.signals import customer_erased

    alice, (visa, mastercard), address = shopper_wallet("alice")
    bob, _, _ = shopper_wallet("bob")
    services.charge(bob, 500, "USD", idempotency_key="bob-1")  # bob's charge is not alice's
    assert _snapshot(bob)["history"] == 2 and _snapshot(alice)["history"] == 2
    before = _snapshot(bob)
    erased = []
    customer_erased.connect(lambda sender, erasure, **kw: erased.append(erasure.customer_uid), weak=False,
                            dispatch_uid="test-erased")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            result = services.erase_customer(alice, reason="asked by phone")
    finally:
        customer_erased.disconnect(dispatch_uid="test-erased")
    assert erased == [alice.uid]
    assert _snapshot(bob) == before
    assert not Customer.objects.filter(pk=alice.pk).exists()  # no charges of its own: the row goes
    result = ErasureRequest.objects.get(pk=result.pk)
    assert (result.status, result.charges_kept, result.customer_id, result.attempts) == ("completed", 0, None, 1)
    assert (result.customer_uid, result.account, result.reason, result.last_error) == (
        alice.uid, "default", "asked by phone", "")
    assert result.next_attempt_at is None and result.completed_at is not None
    assert _outcomes(result) == [
        ("address", address.uid, "deleted locally"),
        ("payment_method", visa.uid, "deleted at the processor"),
        ("payment_method", mastercard.uid, "deleted at the processor"),
        ("customer", alice.uid, "deleted at the processor"),
        ("customer", alice.uid, "deleted locally with 2 saved method(s)"),
    ]


def test_a_customer_with_charges_is_anonymized_next_to_another_with_charges(shopper_wallet):
    from vault_wallets import services
    from vault_wallets.models import Charge, Customer, PaymentMethodChange, SavedPaymentMethod

    alice, (visa, mastercard), _ = shopper_wallet("alice")
    bob, _, _ = shopper_wallet("bob")
    services.charge(alice, 700, "USD", idempotency_key="alice-1")
    services.charge(bob, 500, "USD", idempotency_key="bob-1")
    services.charge(bob, 600, "USD", idempotency_key="bob-2")
    before = _snapshot(bob)
    result = services.erase_customer(alice)
    assert _snapshot(bob) == before
    assert result.charges_kept == 1 and result.customer_id == alice.pk
    assert _outcomes(result)[-1] == ("customer", alice.uid, "anonymized locally; 1 charge(s) kept")
    row = Customer.objects.get(pk=alice.pk)
    assert (row.reference_id, row.user_id, row.name, row.email, row.phone, row.metadata) == (
        f"erased-{alice.uid}", None, "", "", "", {})
    assert (row.processor_customer_id, row.processor_customer_secret) == ("", "")
    assert row.erased_at is not None and row.token_version == alice.token_version + 1
    for method in SavedPaymentMethod.objects.filter(customer=row):
        assert (method.status, method.is_default, method.processor_token, method.processor_method_id,
                method.processor_lookup, method.fingerprint, method.holder_name, method.label, method.processor_data,
                method.exp_month, method.exp_year, method.bank_name) == (
            "removed", False, "", "", "", "", "", "", {}, None, None, "")
        assert method.last4 in ("4242", "4444")  # the financial record keeps brand and last four
    assert Charge.objects.filter(customer=row).count() == 1
    assert not PaymentMethodChange.objects.filter(payment_method__customer=row).exists()


def test_a_pending_erasure_of_another_customer_is_not_resumed_for_this_one(shopper_wallet, sandbox):
    from vault_wallets import services
    from vault_wallets.models import ErasureRequest

    alice, _, _ = shopper_wallet("alice")
    bob, _, _ = shopper_wallet("bob")
    sandbox.faults.fail_next(1)
    pending = services.erase_customer(bob)
    assert pending.status == "pending"
    done = services.erase_customer(alice)
    assert done.pk != pending.pk and (done.customer_uid, done.status) == (alice.uid, "completed")
    assert ErasureRequest.objects.get(pk=pending.pk).status == "pending"


def test_erasing_an_erased_customer_again_records_a_new_request(shopper_wallet):
    from vault_wallets import services
    from vault_wallets.models import Customer, ErasureRequest

    alice, _, _ = shopper_wallet("alice")
    services.charge(alice, 700, "USD", idempotency_key="alice-1")
    first = services.erase_customer(alice)
    second = services.erase_customer(Customer.objects.get(pk=alice.pk))
    assert second.pk != first.pk and second.status == "completed"
    assert ErasureRequest.objects.filter(customer_uid=alice.uid).count() == 2
    assert _outcomes(second) == [("customer", alice.uid, "anonymized locally; 1 charge(s) kept")]


def test_who_asked_and_why_are_kept_within_their_lengths(shopper_wallet, admin_user):
    from django.contrib.auth.models import AnonymousUser

    from vault_wallets import services

    alice, _, _ = shopper_wallet("alice")
    anonymous = services.erase_customer(alice, requested_by=AnonymousUser(), reason=None)
    assert (anonymous.requested_by_id, anonymous.requested_by_name, anonymous.reason) == (None, "", "")
    bob, _, _ = shopper_wallet("bob")
    staff = services.erase_customer(bob, requested_by=admin_user, reason="r" * 201)
    assert (staff.requested_by_id, staff.requested_by_name, staff.reason) == (admin_user.pk, "admin", "r" * 200)
    carol, _, _ = shopper_wallet("carol")
    assert services.erase_customer(carol, reason="r" * 200).reason == "r" * 200


def test_a_failed_erasure_waits_longer_each_time_up_to_an_hour(shopper_wallet, sandbox, caplog):
    from datetime import timedelta

    from django.utils import timezone

    from vault_wallets import services
    from vault_wallets.models import ErasureRequest
    from vault_wallets.services.erasure import run_erasure

    alice, (visa, _), _ = shopper_wallet("alice")
    waits = {}
    for attempts_before in (0, 1, 5, 6):
        if attempts_before:
            ErasureRequest.objects.filter(customer_uid=alice.uid).update(attempts=attempts_before)
        sandbox.faults.fail_next(1)
        start = timezone.now()
        erasure = (services.erase_customer(alice) if not attempts_before
                   else run_erasure(ErasureRequest.objects.get(customer_uid=alice.uid)))
        assert erasure.status == "pending" and erasure.attempts == attempts_before + 1
        assert erasure.last_error == f"payment method {visa.uid}: the sandbox answered HTTP 503"
        waits[attempts_before + 1] = erasure.next_attempt_at - start
    assert abs(waits[1] - timedelta(seconds=60)) < timedelta(seconds=2)
    assert abs(waits[2] - timedelta(seconds=120)) < timedelta(seconds=2)
    assert abs(waits[6] - timedelta(seconds=1920)) < timedelta(seconds=2)
    assert abs(waits[7] - timedelta(seconds=3600)) < timedelta(seconds=2)
    failed = ErasureRequest.objects.get(customer_uid=alice.uid).outcomes[-1]
    assert (failed["object"], failed["id"], failed["outcome"], failed["detail"]) == (
        "payment_method", visa.uid, "processor error", "the sandbox answered HTTP 503")
    assert (f"erasure {erasure.uid} of {alice.uid} is pending (attempt 7): payment method {visa.uid}: "
            "the sandbox answered HTTP 503; retrying in 3600s") in caplog.text


def test_a_failure_deleting_the_customer_is_reported_for_the_customer(customer, sandbox):
    from vault_wallets import services

    customer = services.ensure_processor_customer(customer)  # at the processor, no saved methods
    sandbox.faults.fail_next(1)
    erasure = services.erase_customer(customer)
    assert erasure.last_error == f"customer {customer.uid}: the sandbox answered HTTP 503"
    assert [(e["object"], e["outcome"], e.get("detail")) for e in erasure.outcomes] == [
        ("customer", "processor error", "the sandbox answered HTTP 503")]


def test_what_is_already_gone_at_the_processor_counts_as_deleted(shopper_wallet):
    from vault_wallets import services
    from vault_wallets.sandbox import engine

    alice, (visa, mastercard), _ = shopper_wallet("alice")
    engine.delete_method("default", alice.processor_customer_id, visa.processor_token)
    result = services.erase_customer(alice)
    assert _outcomes(result)[1:4] == [("payment_method", visa.uid, "already gone at the processor"),
                                      ("payment_method", mastercard.uid, "deleted at the processor"),
                                      ("customer", alice.uid, "deleted at the processor")]
    bob, bobs_cards, _ = shopper_wallet("bob")
    engine.delete_customer("default", bob.processor_customer_id)
    result = services.erase_customer(bob)
    assert _outcomes(result)[1:4] == [("payment_method", m.uid, "already gone at the processor")
                                      for m in bobs_cards] + [("customer", bob.uid, "already gone at the processor")]


def test_methods_without_a_token_and_customers_never_at_the_processor_need_no_call(shopper_wallet, make_user):
    from vault_wallets import services
    from vault_wallets.models import SavedPaymentMethod

    alice, (visa, mastercard), _ = shopper_wallet("alice")
    SavedPaymentMethod.objects.filter(pk=visa.pk).update(processor_token="")
    result = services.erase_customer(alice)
    assert [o[1] for o in _outcomes(result) if o[0] == "payment_method"] == [mastercard.uid]
    never = services.get_or_create_customer(make_user("never"))  # no processor customer yet
    assert _outcomes(services.erase_customer(never)) == [("customer", never.uid, "deleted locally with 0 saved method(s)")]


def test_an_account_no_longer_configured_leaves_the_erasure_pending(make_user):
    from vault_wallets import services
    from vault_wallets.models import Customer

    gone = Customer.objects.create(account="closed", reference_id="r-closed", user=make_user("c"),
                                   processor_customer_id="cus_x")
    erasure = services.erase_customer(gone)
    assert (erasure.status, erasure.last_error) == ("pending", "account 'closed' is not configured")


def test_a_finished_erasure_is_not_run_again(shopper_wallet):
    from vault_wallets import services
    from vault_wallets.models import ErasureRequest
    from vault_wallets.services.erasure import run_erasure

    alice, _, _ = shopper_wallet("alice")
    done = services.erase_customer(alice)
    again = run_erasure(ErasureRequest(pk=done.pk))
    assert (again.status, again.attempts, again.outcomes) == ("completed", 1, done.outcomes)


def test_the_sweeper_takes_the_earliest_due_erasures_up_to_its_limit(shopper_wallet, sandbox):
    from datetime import timedelta

    from django.utils import timezone

    from vault_wallets import services
    from vault_wallets.models import ErasureRequest
    from vault_wallets.services.erasure import retry_due_erasures

    pending = {}
    for name in ("alice", "bob", "carol", "dave"):
        customer, _, _ = shopper_wallet(name)
        sandbox.faults.fail_next(1)
        pending[name] = services.erase_customer(customer)
    now = timezone.now()
    for name, offset in (("alice", -30), ("bob", -60), ("carol", -10), ("dave", +60)):
        ErasureRequest.objects.filter(pk=pending[name].pk).update(next_attempt_at=now + timedelta(seconds=offset))
    assert retry_due_erasures(limit=2) == [pending["bob"].pk, pending["alice"].pk]
    assert ErasureRequest.objects.get(pk=pending["carol"].pk).status == "pending"
    assert retry_due_erasures() == [pending["carol"].pk]
    assert ErasureRequest.objects.get(pk=pending["dave"].pk).status == "pending"
