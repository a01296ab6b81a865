"""Saved payment methods pinned where mutation testing found them loose (issue 13).

Two customers present whenever a query scopes by customer; the promotion order (newest by
``created_at``, then by id) checked where the two disagree and where ``created_at`` ties.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models.signals import pre_save
from django.utils import timezone

from tests.processors.test_caselle import options_for
from tests.processors.test_cybersource import CyberSourceHarness
from vault_wallets import services, signals
from vault_wallets.models import SavedPaymentMethod
from vault_wallets.processors import base as p
from vault_wallets.processors import get_processor
from vault_wallets.services.customers import ensure_processor_customer
from vault_wallets.services.payment_methods import promote_next_default
from vault_wallets.testing.fakes.caselle import caselle_fake  # noqa: F401  (fixture)
from vault_wallets.testing.fakes.cybersource import cybersource_fake  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

VISA, MASTERCARD, AMEX = "4242424242424242", "5555555555554444", "378282246310005"


@pytest.fixture
def other(make_user, card_token):
    other = services.get_or_create_customer(make_user("other"))
    services.add_payment_method(other, card_token(VISA))
    return other


def _defaults(customer):
    return list(SavedPaymentMethod.objects.filter(customer=customer, is_default=True).values_list("pk", flat=True))


def _add(customer, card_token, number):
    method, created = services.add_payment_method(customer, card_token(number))
    assert created
    return method


def test_promote_leaves_exactly_one_default(customer, card_token, other):
    """Called with the old default still flagged, the newest chargeable method becomes the ONLY default."""
    first = _add(customer, card_token, VISA)
    second = _add(customer, card_token, MASTERCARD)
    assert _defaults(customer) == [first.pk]
    their_defaults = _defaults(other)
    with transaction.atomic():
        promoted = promote_next_default(customer)
    assert promoted.pk == second.pk
    assert _defaults(customer) == [second.pk]
    assert _defaults(other) == their_defaults


def test_promotion_follows_created_at_not_the_row_id(customer, card_token, other):
    default = _add(customer, card_token, VISA)
    newer_row = _add(customer, card_token, MASTERCARD)  # higher id ...
    older_row = _add(customer, card_token, AMEX)
    now = timezone.now()
    SavedPaymentMethod.objects.filter(pk=newer_row.pk).update(created_at=now + timedelta(days=1))  # ... newest
    SavedPaymentMethod.objects.filter(pk=older_row.pk).update(created_at=now - timedelta(days=1))
    services.remove_payment_method(customer, default)
    assert _defaults(customer) == [newer_row.pk]


def test_promotion_breaks_a_created_at_tie_by_the_newest_row(customer, card_token, other):
    default = _add(customer, card_token, VISA)
    first = _add(customer, card_token, MASTERCARD)
    last = _add(customer, card_token, AMEX)
    same = timezone.now() - timedelta(hours=1)
    SavedPaymentMethod.objects.filter(pk__in=[first.pk, last.pk]).update(created_at=same)
    services.remove_payment_method(customer, default)
    assert last.pk > first.pk
    assert _defaults(customer) == [last.pk]


def _at_processor(customer):
    """The customer's methods as the processor of the customer's account sees them: {id: is_default}."""
    processor = get_processor(customer.account)
    return {m.token: m.is_default for m in processor.list_payment_methods(customer.processor_ref)}


def test_removing_a_non_default_method_leaves_the_default_alone(customer, card_token, other):
    default = _add(customer, card_token, VISA)
    middle = _add(customer, card_token, MASTERCARD)
    newest = _add(customer, card_token, AMEX)
    services.remove_payment_method(customer, middle)
    middle.refresh_from_db()
    assert middle.status == p.METHOD_REMOVED and not middle.is_default
    assert _defaults(customer) == [default.pk]
    assert _at_processor(customer) == {default.processor_token: True, newest.processor_token: False}


def test_removing_the_only_method_leaves_no_default_anywhere(customer, card_token, other):
    only = _add(customer, card_token, VISA)
    services.remove_payment_method(customer, only)
    only.refresh_from_db()
    assert only.status == p.METHOD_REMOVED and not only.is_default
    assert _defaults(customer) == []
    assert _at_processor(customer) == {}


def test_a_removed_method_keeps_no_processor_identifiers(customer, card_token, other):
    method = _add(customer, card_token, VISA)
    # as saved from a processor whose method id differs from its token (the id the sandbox knows too)
    SavedPaymentMethod.objects.filter(pk=method.pk).update(processor_method_id=method.processor_token)
    services.remove_payment_method(customer, method.uid)
    method.refresh_from_db()
    assert (method.processor_token, method.processor_method_id) == ("", "")


def test_removing_the_default_tells_the_processor_which_method_was_promoted(customer, card_token, other):
    default = _add(customer, card_token, VISA)
    remaining = _add(customer, card_token, MASTERCARD)
    services.remove_payment_method(customer, default)
    assert _defaults(customer) == [remaining.pk]
    assert _at_processor(customer) == {remaining.processor_token: True}


def test_a_customer_of_another_account_is_served_by_that_accounts_processor(user, customer, card_token):
    """The default account's customer and the "eu" customer of the same user both exist."""
    _add(customer, card_token, VISA)
    eu = get_processor("eu")
    eu_customer = services.get_or_create_customer(user, "eu")
    first, _ = services.add_payment_method(eu_customer, eu.tokenize_card(VISA, 12, 2034, "123"))
    second, _ = services.add_payment_method(eu_customer, eu.tokenize_card(MASTERCARD, 12, 2034, "123"))
    services.set_default_payment_method(eu_customer, second.uid)
    assert _at_processor(eu_customer) == {first.processor_token: False, second.processor_token: True}
    services.remove_payment_method(eu_customer, second.uid)  # the default: "first" is promoted
    assert _at_processor(eu_customer) == {first.processor_token: True}
    assert _defaults(eu_customer) == [first.pk]


def test_removal_sends_the_signal_after_commit(customer, card_token, other, django_capture_on_commit_callbacks):
    method = _add(customer, card_token, VISA)
    received = []

    def listener(sender, payment_method, **kwargs):
        received.append((sender, payment_method.pk))

    signals.payment_method_removed.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            services.remove_payment_method(customer, method.uid)
    finally:
        signals.payment_method_removed.disconnect(listener)
    assert received == [(SavedPaymentMethod, method.pk)]


def test_a_label_is_cleared_and_cut_at_100_characters(customer, card_token, other):
    method = _add(customer, card_token, VISA)
    assert services.update_payment_method(customer, method, label="x" * 101).label == "x" * 100
    assert services.update_payment_method(customer, method.uid, label="").label == ""
    method.refresh_from_db()
    assert method.label == ""


def test_a_label_change_does_not_undo_a_concurrent_change(customer, card_token, other):
    """A webhook closing the card between the read and the write of a label change keeps its close."""
    method = _add(customer, card_token, VISA)

    def close_meanwhile(sender, instance, **kwargs):
        SavedPaymentMethod.objects.filter(pk=instance.pk).update(status=p.METHOD_CLOSED, is_default=False)

    pre_save.connect(close_meanwhile, sender=SavedPaymentMethod)
    try:
        services.update_payment_method(customer, method.uid, label="Work")
    finally:
        pre_save.disconnect(close_meanwhile, sender=SavedPaymentMethod)
    method.refresh_from_db()
    assert (method.label, method.status, method.is_default) == ("Work", p.METHOD_CLOSED, False)


def test_a_duplicate_the_processor_cannot_delete_is_logged(customer, card_token, other, sandbox, caplog):
    kept = _add(customer, card_token, VISA)
    sandbox.faults.drop_next(only="delete_method")  # deleted, but the answer is lost
    with caplog.at_level(logging.WARNING, logger="vault_wallets.services"):
        again, created = services.add_payment_method(customer, card_token(VISA))
    assert not created and again.pk == kept.pk
    assert [r.getMessage() for r in caplog.records if r.name == "vault_wallets.services"] == [
        f"could not delete a duplicate vaulted method for {customer.uid} at sandbox: "
        "the sandbox closed the connection without answering"]


def test_a_promoted_default_the_processor_did_not_take_is_logged(customer, card_token, other, sandbox, caplog):
    default = _add(customer, card_token, VISA)
    remaining = _add(customer, card_token, MASTERCARD)
    sandbox.faults.drop_next(only="set_default")
    with caplog.at_level(logging.WARNING, logger="vault_wallets.services"):
        services.remove_payment_method(customer, default)
    assert _defaults(customer) == [remaining.pk]
    assert [r.getMessage() for r in caplog.records if r.name == "vault_wallets.services"] == [
        f"could not set the promoted default for {customer.uid} at the processor: "
        "the sandbox closed the connection without answering"]


@pytest.fixture
def cybersource(settings, cybersource_fake):  # noqa: F811  (the imported fixture)
    """The default account on CyberSource (its fake over loopback HTTP): it bills the card to what
    the vault request carries — holder, customer name and email, the default address."""
    harness = CyberSourceHarness(cybersource_fake)
    klass = type(harness.processor)
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "ACCOUNTS": {
        **settings.VAULT_WALLETS["ACCOUNTS"],
        "default": {"PROCESSOR": f"{klass.__module__}.{klass.__qualname__}", "OPTIONS": harness.processor.options}}}
    return harness


def _bill_to(fake, method):
    return fake.instruments[method.processor_token]["bill_to"]


HOME = {"line1": "7272 Indian School Rd", "city": "Scottsdale", "state": "AZ", "postal_code": "85251",
        "country": "US", "name": "Home Person"}
WORK = {"line1": "1 Office Park", "city": "Tempe", "state": "AZ", "postal_code": "85281", "country": "US",
        "name": "Work Person"}


def test_the_vault_request_carries_the_holder_email_and_the_default_address(customer, cybersource):
    services.create_address(customer, **HOME)  # the first address: the default
    services.create_address(customer, **WORK)  # newer, not the default
    customer = ensure_processor_customer(customer)
    method, created = services.add_payment_method(
        customer, cybersource.browser_token(customer.processor_ref), holder_name="Sam Holder")
    assert created and method.holder_name == "Sam Holder"
    assert _bill_to(cybersource.fake, method) == {
        "firstName": "Sam", "lastName": "Holder", "address1": HOME["line1"], "locality": "Scottsdale",
        "administrativeArea": "AZ", "postalCode": "85251", "country": "US", "email": customer.email}


def test_without_holder_or_address_the_card_is_billed_to_the_customer(customer, cybersource):
    customer = ensure_processor_customer(customer)
    assert customer.name and customer.email
    method, _ = services.add_payment_method(customer, cybersource.browser_token(customer.processor_ref))
    first, last = customer.name.split(" ", 1)
    assert _bill_to(cybersource.fake, method) == {"firstName": first, "lastName": last, "email": customer.email}


def _labels_at_processor(customer):
    listed = get_processor(customer.account).list_payment_methods(customer.processor_ref)
    return {m.token: m.raw["label"] for m in listed}


def test_the_label_reaches_the_processor_and_none_stays_empty(customer, card_token, other):
    plain = _add(customer, card_token, VISA)
    labelled, _ = services.add_payment_method(customer, card_token(MASTERCARD), label="Work card")
    assert (plain.label, labelled.label) == ("", "Work card")
    assert _labels_at_processor(customer) == {plain.processor_token: "", labelled.processor_token: "Work card"}


def test_make_default_moves_the_default_at_the_processor_too(customer, card_token, other):
    first = _add(customer, card_token, VISA)
    second = _add(customer, card_token, MASTERCARD)
    assert _at_processor(customer) == {first.processor_token: True, second.processor_token: False}
    third, _ = services.add_payment_method(customer, card_token(AMEX), make_default=True)
    assert _defaults(customer) == [third.pk]
    assert _at_processor(customer) == {first.processor_token: False, second.processor_token: False,
                                       third.processor_token: True}


def test_saving_a_card_again_leaves_the_default_where_it_was(customer, card_token, other, sandbox):
    """The same card added again (not asked to become the default) changes nothing, here or at the processor."""
    default = _add(customer, card_token, VISA)
    second = _add(customer, card_token, MASTERCARD)
    again, created = services.add_payment_method(customer, card_token(MASTERCARD))
    assert not created and again.pk == second.pk
    assert _defaults(customer) == [default.pk]
    assert _at_processor(customer) == {default.processor_token: True, second.processor_token: False}


def test_methods_without_a_processor_fingerprint_are_never_taken_for_duplicates(customer, card_token, other,
                                                                                 monkeypatch):
    """A processor that reports no fingerprint for a method: each one saved is a new method
    (there is nothing to recognise a duplicate by), never "the same" as another without one."""
    import dataclasses

    klass = type(get_processor(customer.account))
    vault = klass.vault_payment_method
    monkeypatch.setattr(klass, "vault_payment_method",
                        lambda self, request: dataclasses.replace(vault(self, request), fingerprint=""))
    first = _add(customer, card_token, VISA)
    second = _add(customer, card_token, MASTERCARD)
    assert first.pk != second.pk
    assert set(SavedPaymentMethod.objects.visible().filter(customer=customer).values_list("pk", flat=True)) == {
        first.pk, second.pk}


def test_a_card_saved_by_an_earlier_release_is_still_recognised(customer, card_token, other):
    """Stored fingerprints are data kept across upgrades: the HMAC under the server's
    "fingerprint" key of the account, the method type and the processor's fingerprint.  A card
    saved before an upgrade (its row written with that value) is found again as a duplicate."""
    from vault_wallets import ids

    customer = ensure_processor_customer(customer)
    processor = get_processor(customer.account)
    vaulted = processor.vault_payment_method(p.VaultRequest(customer=customer.processor_ref,
                                                            temporary_token=card_token(VISA)))
    assert vaulted.fingerprint
    earlier = SavedPaymentMethod.objects.create(
        customer=customer, method_type=vaulted.method_type, processor_token=vaulted.token,
        processor_lookup=SavedPaymentMethod.lookup_for(customer.account, vaulted.method_id),
        fingerprint=ids.keyed_hash("fingerprint", customer.account, vaulted.method_type, vaulted.fingerprint),
        brand=vaulted.brand, last4=vaulted.last4, is_default=True)
    again, created = services.add_payment_method(customer, card_token(VISA))
    assert not created and again.pk == earlier.pk
    assert list(SavedPaymentMethod.objects.visible().filter(customer=customer).values_list("pk", flat=True)) == [
        earlier.pk]


def test_a_duplicate_the_processor_matched_to_the_saved_method_is_not_deleted(customer, card_token, other,
                                                                              monkeypatch):
    """A processor that matches a card to the method it already holds (the same method id) and
    answers with a new token for it: the method is the one kept, so nothing is deleted there."""
    import dataclasses

    kept = _add(customer, card_token, VISA)
    klass = type(get_processor(customer.account))
    vault, delete = klass.vault_payment_method, klass.delete_payment_method

    def match_or_create(self, request):
        new = vault(self, request)
        for held in self.list_payment_methods(request.customer):
            if held.fingerprint == new.fingerprint and held.method_id != new.method_id:
                delete(self, request.customer, new.ref)  # it created nothing: the card is the held method
                return dataclasses.replace(held, token=f"{held.token}-reissued")
        return new

    monkeypatch.setattr(klass, "vault_payment_method", match_or_create)
    again, created = services.add_payment_method(customer, card_token(VISA))
    assert not created and again.pk == kept.pk
    assert _at_processor(customer) == {kept.processor_token: True}
    second = _add(customer, card_token, MASTERCARD)  # a new card is still saved as a new method
    assert _at_processor(customer) == {kept.processor_token: True, second.processor_token: False}


# -- adding: what is stored, the default, the signal ---------------------------------------------


def _vault_answers(monkeypatch, customer, **changes):
    """The processor of ``customer``'s account answers every vault with ``changes`` applied."""
    import dataclasses

    klass = type(get_processor(customer.account))
    vault = klass.vault_payment_method
    monkeypatch.setattr(klass, "vault_payment_method",
                        lambda self, request: dataclasses.replace(vault(self, request), **changes))


def test_display_fields_from_the_processor_are_cut_to_what_the_wallet_keeps(customer, card_token, other,
                                                                            monkeypatch):
    """A processor answering longer values than the columns hold: the card is saved with the
    brand, holder, bank and account type cut to their columns, and never more than the last four
    digits of the number (on PostgreSQL a longer value would refuse the row after the vault)."""
    _vault_answers(monkeypatch, customer, brand="B" * 40, last4="4000056655665556", holder_name="H" * 250,
                   bank_name="K" * 250, account_type="T" * 20)
    method = _add(customer, card_token, VISA)
    for saved in (method, SavedPaymentMethod.objects.get(pk=method.pk)):
        assert (saved.brand, saved.last4, saved.holder_name, saved.bank_name, saved.account_type) == (
            "B" * 32, "5556", "H" * 200, "K" * 200, "T" * 16)


def test_a_label_given_when_adding_is_cut_at_100_characters(customer, card_token, other):
    method, _ = services.add_payment_method(customer, card_token(VISA), label="L" * 101)
    assert method.label == "L" * 100
    assert SavedPaymentMethod.objects.get(pk=method.pk).label == "L" * 100


def test_a_method_the_processor_reports_closed_is_saved_closed_and_not_the_default(customer, card_token, other,
                                                                                   monkeypatch):
    """The processor vaults the card but reports it closed (say, an expired card): it is stored
    with that status, is not chargeable, and never becomes the default."""
    _vault_answers(monkeypatch, customer, status=p.METHOD_CLOSED)
    method = _add(customer, card_token, VISA)
    saved = SavedPaymentMethod.objects.get(pk=method.pk)
    assert (saved.status, saved.is_default) == (p.METHOD_CLOSED, False)
    assert not SavedPaymentMethod.objects.chargeable().filter(customer=customer).exists()
    assert _defaults(customer) == []


def test_a_customer_without_a_default_gets_the_new_card_as_default(customer, card_token, other):
    """Active methods but none of them the default (rows imported without ``is_default``): the
    card added next becomes the default, here and at the processor."""
    first = _add(customer, card_token, VISA)
    SavedPaymentMethod.objects.filter(pk=first.pk).update(is_default=False)
    second = _add(customer, card_token, MASTERCARD)
    assert second.is_default
    assert _defaults(customer) == [second.pk]
    assert _at_processor(customer)[second.processor_token] is True


def test_the_first_card_is_returned_as_the_default(customer, card_token, other):
    """What the caller gets back (the API answers with it) says it is the default, as stored."""
    first = _add(customer, card_token, VISA)
    second = _add(customer, card_token, MASTERCARD)
    third, _ = services.add_payment_method(customer, card_token(AMEX), make_default=True)
    assert (first.is_default, second.is_default, third.is_default) == (True, False, True)


def test_saving_a_card_again_as_the_default_moves_the_default_to_it(customer, card_token, other):
    """The same card added again with ``make_default``: the saved method becomes the only default,
    here and at the processor (where the duplicate it made the default is deleted again)."""
    first = _add(customer, card_token, VISA)
    second = _add(customer, card_token, MASTERCARD)
    their_defaults = _defaults(other)
    again, created = services.add_payment_method(customer, card_token(MASTERCARD), make_default=True)
    assert not created and again.pk == second.pk and again.is_default
    assert _defaults(customer) == [second.pk]
    assert _defaults(other) == their_defaults
    assert _at_processor(customer) == {first.processor_token: False, second.processor_token: True}


def test_saving_the_default_card_again_as_the_default_keeps_it(customer, card_token, other):
    default = _add(customer, card_token, VISA)
    second = _add(customer, card_token, MASTERCARD)
    again, created = services.add_payment_method(customer, card_token(VISA), make_default=True)
    assert not created and again.pk == default.pk and again.is_default
    assert _defaults(customer) == [default.pk]
    assert _at_processor(customer) == {default.processor_token: True, second.processor_token: False}


def test_adding_sends_the_signal_after_commit_for_a_new_method_only(customer, card_token, other,
                                                                     django_capture_on_commit_callbacks):
    received = []

    def listener(sender, payment_method, **kwargs):
        received.append((sender, payment_method.pk))

    signals.payment_method_added.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            method = _add(customer, card_token, VISA)
            assert received == []  # not before the commit
        with django_capture_on_commit_callbacks(execute=True):
            again, created = services.add_payment_method(customer, card_token(VISA))
    finally:
        signals.payment_method_added.disconnect(listener)
    assert not created and again.pk == method.pk
    assert received == [(SavedPaymentMethod, method.pk)]


def test_an_export_never_holds_the_token_of_a_method_whose_id_is_its_token(customer, card_token, other):
    """The sandbox's method id is its token: stored apart it would be exported (the export names
    only method ids kept apart from the token, docs/import-export.md)."""
    from vault_wallets.services.exporting import write_export

    method = _add(customer, card_token, VISA)
    assert method.processor_ref.method_id == method.processor_token
    out = io.StringIO()
    assert write_export(out, customer.account, fmt="jsonl") == 2  # ours and the other customer's
    assert method.processor_token not in out.getvalue()
    assert {json.loads(line)["processor_method_id"] for line in out.getvalue().splitlines()} == {""}


@pytest.fixture
def caselle_account(settings, caselle_fake):  # noqa: F811  (the imported fixture)
    """An account on Caselle (its fake over loopback HTTP), which refuses a bank account's token
    vaulted as a card."""
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "ACCOUNTS": {
        **settings.VAULT_WALLETS["ACCOUNTS"],
        "caselle": {"PROCESSOR": "vault_wallets.processors.caselle.CaselleProcessor",
                    "OPTIONS": options_for(caselle_fake)}}}
    return caselle_fake


def test_a_bank_account_is_vaulted_as_one(user, caselle_account):
    customer = services.get_or_create_customer(user, "caselle")
    token = caselle_account.tokenize_bank_account("021000021", "000123456789", "savings", "Alex Morales")
    method, created = services.add_payment_method(customer, token, method_type=p.METHOD_ACH)
    assert created
    saved = SavedPaymentMethod.objects.get(pk=method.pk)
    assert (saved.method_type, saved.last4, saved.account_type, saved.is_default) == (
        p.METHOD_ACH, "6789", "savings", True)
