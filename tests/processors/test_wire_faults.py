"""The wire faults of issue #7 (items 2–8), through the corrected fakes and, for CyberSource's
billing data, through the services a shop calls.

Each fake now plays the official fact the backend got wrong (see the recorded pairs in
``tests/processors/recorded/`` for the sources):

2. ProcessOut objects and events carry ``project_id`` ``proj_X``; the sandbox credential is ``test-proj_X``.
3. ProcessOut answers a void with ``{"success": true, "transaction": {}}``.
4. Exact's approved payment has ``exactResponse.code`` ``"0000"``.
5. Exact refuses ``referenceNo``/``customerRef`` over 20 and ``correlationId`` over 60 characters.
6. CyberSource accounts without relaxed address requirements refuse a vaulting authorization
   without ``orderInformation.billTo`` (``fake.relaxed_address = False``).
7. CyberSource's Transaction Details answer only ``Accept: application/hal+json``.
8. Caselle may answer a conflicting customer create with a body naming the conflict, not a 409.
"""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from vault_wallets import services
from vault_wallets.processors import base
from vault_wallets.processors.base import ChargeRequest, CustomerData, CustomerRef, InvalidRequestError, VaultRequest
from vault_wallets.processors.caselle import CaselleProcessor
from vault_wallets.processors.cybersource import CyberSourceProcessor
from vault_wallets.processors.exact import ExactProcessor
from vault_wallets.processors.processout import ProcessOutProcessor
from vault_wallets.testing.fakes import caselle as caselle_fakes
from vault_wallets.testing.fakes import cybersource as cybersource_fakes
from vault_wallets.testing.fakes import exact as exact_fakes
from vault_wallets.testing.fakes import processout as processout_fakes

# The fakes' pytest fixtures.
caselle_fake = caselle_fakes.caselle_fake
cybersource_fake = cybersource_fakes.cybersource_fake
exact_fake = exact_fakes.exact_fake
processout_fake = processout_fakes.processout_fake


def _ref(customer) -> CustomerRef:
    return CustomerRef(id=customer.id, secret=customer.secret)


# -- ProcessOut (2, 3) ----------------------------------------------------------------------------


def test_processout_sandbox_event_of_our_project_is_accepted(processout_fake):
    assert processout_fake.PROJECT_ID.startswith("test-proj_")
    processor = ProcessOutProcessor("po", processout_fake.account_options(TIMEOUT=(2, 2), RETRIES=0))
    customer = processor.create_customer(CustomerData(reference_id="r-2", name="Alex Morales", currency="USD"))
    assert customer.raw["project_id"] == processout_fake.PROJECT_ID.removeprefix("test-")
    event = processout_fake.fire("customer.updated", {"customer": {"id": customer.id}})
    [normalized] = processor.parse_webhook(processout_fake.delivery(event))
    assert normalized.event_id == event["id"]


def _processout_authorization(processout_fake) -> tuple[ProcessOutProcessor, base.ChargeResult]:
    """A ProcessOut processor on the fake and a 12.34 USD authorization of a vaulted card."""
    processor = ProcessOutProcessor("po", processout_fake.account_options(TIMEOUT=(2, 2), RETRIES=0))
    customer = processor.create_customer(CustomerData(reference_id="r-3", name="Alex Morales", currency="USD"))
    token = processout_fake.tokenize_card("4242424242424242", 12, date.today().year + 2, "123", "Alex")
    method = processor.vault_payment_method(VaultRequest(customer=_ref(customer), temporary_token=token))
    auth = processor.charge(ChargeRequest(customer=_ref(customer), amount=1234, currency="USD",
                                          method=method.ref, capture=False))
    assert auth.status == base.CHARGE_AUTHORIZED
    return processor, auth


def test_processout_void_with_the_documented_empty_transaction(processout_fake):
    processor, auth = _processout_authorization(processout_fake)
    voided = processor.void(auth.reference)
    assert voided.status == base.CHARGE_VOIDED and not voided.failure_code
    assert (voided.amount, voided.currency) == (1234, "USD")  # read back from the invoice's transaction


# -- Exact (4, 5) ---------------------------------------------------------------------------------


def _exact(exact_fake) -> tuple[ExactProcessor, CustomerRef, base.VaultedMethod]:
    processor = ExactProcessor("exact", exact_fake.account_options(TIMEOUT=(2, 2), RETRIES=0))
    customer = processor.create_customer(CustomerData(reference_id="customer-reference-000000000042",
                                                      name="Alex Morales"))
    ref = CustomerRef(id=customer.id, secret=customer.secret, reference_id="customer-reference-000000000042")
    token = exact_fake.tokenize_card("4111111111111111", 12, date.today().year + 2, "123", "Alex Morales")
    return processor, ref, processor.vault_payment_method(VaultRequest(customer=ref, temporary_token=token))


def test_exact_0000_is_approved_and_capturable(exact_fake):
    processor, customer, method = _exact(exact_fake)
    auth = processor.charge(ChargeRequest(customer=customer, amount=2500, currency="USD", method=method.ref,
                                          capture=False))
    assert exact_fake.payments[auth.reference]["exactResponse"]["code"] == "0000"
    assert auth.status == base.CHARGE_AUTHORIZED and not auth.failure_code
    captured = processor.capture(auth.reference)
    assert captured.status == base.CHARGE_CAPTURED and captured.amount_captured == 2500


def test_exact_long_references_are_shortened_not_refused(exact_fake):
    processor, customer, method = _exact(exact_fake)
    key = str(uuid.uuid4())
    request = ChargeRequest(customer=customer, amount=2500, currency="USD", method=method.ref,
                            idempotency_key=key, reference="ORDER-2026-12-01-0000123456")
    result = processor.charge(request)
    assert result.status == base.CHARGE_CAPTURED
    sent = exact_fake.payments[result.reference]["reference"]
    assert len(sent["referenceNo"]) <= 20 and len(sent["customerRef"]) <= 20 and sent["correlationId"] == key
    again = processor.charge(request)  # same key and order: the same references (deterministic)
    assert exact_fake.payments[again.reference]["reference"] == sent


# -- CyberSource (6, 7) ---------------------------------------------------------------------------


@pytest.fixture
def cybersource_account(cybersource_fake, settings):
    options = cybersource_fake.account_options(TIMEOUT=(2, 2), RETRIES=0)
    settings.VAULT_WALLETS = {**settings.VAULT_WALLETS, "ACCOUNTS": {
        **settings.VAULT_WALLETS["ACCOUNTS"],
        "default": {"PROCESSOR": "vault_wallets.processors.cybersource.CyberSourceProcessor", "OPTIONS": options},
    }}
    cybersource_fake.relaxed_address = False  # an account without relaxed address requirements
    return cybersource_fake


@pytest.mark.django_db
def test_cybersource_vaulting_sends_name_email_and_default_address(cybersource_account, customer):
    assert customer.name == "Alex Morales" and customer.email
    services.create_address(customer, line1="1 Market St", city="San Francisco", state="CA", postal_code="94105",
                            country="US")
    token = cybersource_account.tokenize_card("4111111111111111", 12, 2031, "123", "")
    method, created = services.add_payment_method(customer, token)
    assert created and method.last4 == "1111"
    [instrument] = cybersource_account.instruments.values()
    assert instrument["bill_to"] == {"firstName": "Alex", "lastName": "Morales", "address1": "1 Market St",
                                     "locality": "San Francisco", "administrativeArea": "CA",
                                     "postalCode": "94105", "country": "US", "email": customer.email}


@pytest.mark.django_db
def test_cybersource_vaulting_without_an_address_says_what_the_account_needs(cybersource_account, customer):
    token = cybersource_account.tokenize_card("4111111111111111", 12, 2031, "123", "")
    with pytest.raises(InvalidRequestError) as info:
        services.add_payment_method(customer, token)
    assert info.value.code == "MISSING_FIELD"
    assert "relaxed requirements for address data" in info.value.message
    assert not customer.payment_methods.exists()


def test_cybersource_transaction_details_with_the_hal_accept(cybersource_fake):
    options = cybersource_fake.account_options(TIMEOUT=(2, 2), RETRIES=0)
    first = CyberSourceProcessor("cs", options)
    customer = first.create_customer(CustomerData(reference_id="r-7", email="a@example.com"))
    token = cybersource_fake.tokenize_card("4111111111111111", 12, 2031, "123", "Alex Morales")
    method = first.vault_payment_method(VaultRequest(customer=_ref(customer), temporary_token=token))
    auth = first.charge(ChargeRequest(customer=_ref(customer), amount=1500, currency="USD", method=method.ref,
                                      capture=False))
    # Another process (a fresh instance, an empty memo) captures: it must read Transaction Details.
    captured = CyberSourceProcessor("cs", options).capture(auth.reference)
    assert captured.status == base.CHARGE_CAPTURED and captured.amount_captured == 1500
    assert ("GET", f"/tss/v2/transactions/{auth.reference}", 200) in cybersource_fake.calls


# -- Caselle (8) ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [409, 400])
def test_caselle_create_conflict_fetches_instead(caselle_fake, status):
    caselle_fake.create_conflict_status = status
    processor = CaselleProcessor("caselle", caselle_fake.account_options(TIMEOUT=(2, 2), RETRIES=0))
    data = CustomerData(reference_id="user-8", name="Alex Morales", email="alex@example.com")
    first = processor.create_customer(data)
    again = processor.create_customer(data)  # the create conflicts: the existing customer is fetched
    assert again.id == first.id
    assert ("POST", "/api/customers", status) in caselle_fake.calls
    assert ("GET", "/api/customers", 200) in caselle_fake.calls


def test_processout_void_stays_voided_when_the_read_back_fails(processout_fake):
    processor, auth = _processout_authorization(processout_fake)
    real = processout_fake.handle  # the void answers normally …

    def fail_read_back(request):
        if request.method == "GET" and request.path.endswith("/transactions"):
            return processout_fake.error(503, "unavailable", "internal")
        return real(request)

    processout_fake.handle = fail_read_back  # … and the read-back of the transaction fails
    try:
        voided = processor.void(auth.reference)
    finally:
        del processout_fake.handle
    assert voided.status == base.CHARGE_VOIDED
    assert processout_fake.transactions[processout_fake.invoices[auth.reference]["transaction_id"]]["voided"]


def test_processout_live_event_for_a_sandbox_credential_is_refused(processout_fake):
    processor = ProcessOutProcessor("po", processout_fake.account_options(TIMEOUT=(2, 2), RETRIES=0))
    event = processout_fake.fire("customer.updated", {"customer": {"id": "cust_1"}})
    processout_fake.events[event["id"]]["sandbox"] = False  # what a live project's event would say
    with pytest.raises(base.WebhookVerificationError) as info:
        processor.parse_webhook(processout_fake.delivery(event))
    assert info.value.reason == "the event's sandbox flag does not match the configured project"
