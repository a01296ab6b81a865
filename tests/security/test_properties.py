"""hypothesis properties: the JSON guard, every webhook parser behind the endpoint, amount
conversion per processor, and shopper text validation."""

from __future__ import annotations

import json
import os
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault_wallets import safejson, validators
from vault_wallets.processors import exact, money, paysimple, processout

from .conftest import post_webhook, record

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "60"))
FAST = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

# Text including what attackers like: NUL, controls, lone surrogates, bidi and zero-width characters.
nasty_text = st.text(alphabet=st.one_of(
    st.characters(codec=None),
    st.sampled_from(["\x00", "\x1b", "\ud800", "\udfff", "\u202e", "\u200b", "\ufeff", "\n", "é", "Ω"]),
), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | nasty_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(nasty_text, children, max_size=4),
    max_leaves=30,
)


def _depth(value, level=0):
    if isinstance(value, dict):
        return max([_depth(v, level + 1) for v in value.values()], default=level + 1)
    if isinstance(value, list):
        return max([_depth(v, level + 1) for v in value], default=level + 1)
    return level


def _clean(value) -> bool:
    if isinstance(value, str):
        return not safejson.bad_text(value)
    if isinstance(value, dict):
        return all(_clean(k) and _clean(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_clean(v) for v in value)
    return True


# -- the JSON guard ----------------------------------------------------------------------------

REASONS = {"the body is not UTF-8", "the body is not valid JSON", "the JSON is nested too deeply",
           "a string holds a NUL byte or a lone surrogate", "a key holds a NUL byte or a lone surrogate",
           "NaN and Infinity are not JSON"}


@FAST
@given(json_values)
def test_safejson_accepts_exactly_the_clean_documents(value):
    text = json.dumps(value)
    if _clean(value) and _depth(value) <= safejson.MAX_DEPTH:
        assert safejson.loads(text) == json.loads(text)
    else:
        with pytest.raises(safejson.UnsafeJSON):
            safejson.loads(text)


@FAST
@given(st.binary(max_size=200) | st.builds(lambda n: b"[" * n + b"]" * n, st.integers(0, 3000)))
def test_safejson_on_any_bytes_returns_or_raises_unsafejson(raw):
    try:
        safejson.loads(raw)
    except safejson.UnsafeJSON as exc:  # one of a few fixed reasons: the input is never quoted back
        assert exc.reason in REASONS


# -- every webhook scheme, through the endpoint: any signed body is a 200 or a 4xx ------------------


@pytest.mark.django_db
def test_signed_webhooks_with_any_payload_never_5xx(schemes):
    for scheme in schemes:

        @FAST
        @given(event_id=nasty_text, event_type=nasty_text, data=json_values)
        def run(event_id, event_type, data):
            body = scheme.body(event_id=event_id or "x", event_type=event_type or "x",
                               data=json.dumps(data).encode())
            response = post_webhook(Client(), scheme, body, scheme.delivery(body))
            record("hypothesis: signed webhook payloads", response.status_code,
                   refused=response.status_code != 200)
            assert response.status_code in (200, 400), (scheme.name, response.status_code, response.content[:200])
            if response.status_code == 200:  # only clean ids and types are ever stored
                assert not safejson.bad_text(event_id) and "\x00" not in event_type

        run()


# -- amounts -----------------------------------------------------------------------------------------

CURRENCIES = ["USD", "EUR", "JPY", "KRW", "KWD", "BHD", "GBP", "CLP"]
minor_units = st.integers(min_value=0, max_value=10**12)


@FAST
@given(minor_units, st.sampled_from(CURRENCIES))
def test_money_round_trips_exactly(amount, currency):
    text = money.to_major_string(amount, currency)
    exponent = money.currency_exponent(currency)
    assert money.to_minor(text, currency) == amount
    assert ("." in text) == (exponent > 0) and (exponent == 0 or len(text.split(".")[1]) == exponent)
    assert Decimal(text) == Decimal(amount).scaleb(-exponent)


@FAST
@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=0, max_value=10**6),
       st.sampled_from(CURRENCIES))
def test_money_never_silently_drops_fractions(value, currency):
    exponent = money.currency_exponent(currency)
    if value == value.quantize(Decimal(1).scaleb(-exponent)):
        assert money.to_major(money.to_minor(str(value), currency), currency) == value
    else:
        with pytest.raises(ValueError):
            money.to_minor(str(value), currency)


@FAST
@given(minor_units)
def test_paysimple_dollars_and_cents(amount):
    assert paysimple.to_cents(paysimple.to_dollars(amount)) == amount
    assert paysimple.to_cents(str(paysimple.to_dollars(amount))) == amount


@FAST
@given(minor_units, st.sampled_from(CURRENCIES))
def test_processout_and_cybersource_decimal_strings(amount, currency):
    text = money.to_major_string(amount, currency)
    assert processout.to_minor_units(text, currency) == amount
    from vault_wallets.processors import cybersource

    assert cybersource.to_minor(cybersource.to_major_string(amount, currency), currency) == amount


@FAST
@given(minor_units)
def test_exact_and_caselle_integer_cents(amount):
    assert exact.cents(amount) == amount and exact.cents(str(amount)) == amount
    if amount > 0:
        assert exact._amount(amount) == amount
    from vault_wallets.processors.caselle import CaselleProcessor

    checker = CaselleProcessor._check_amount
    if amount > 0:
        assert checker(None, amount) == amount


# -- shopper text ------------------------------------------------------------------------------------


@FAST
@given(nasty_text)
def test_text_validation_refuses_exactly_the_unprintable(value):
    import unicodedata

    bad = any(unicodedata.category(c) in validators.REFUSED_CATEGORIES for c in value)
    if bad:
        with pytest.raises(ValidationError):
            validators.clean_text(value)
    else:
        cleaned = validators.clean_text(value)
        assert cleaned == unicodedata.normalize("NFC", value)
        assert not safejson.bad_text(cleaned)


@FAST
@given(st.text(max_size=4))
def test_country_codes(value):
    try:
        code = validators.clean_country(value)
    except ValidationError:
        assert value.strip().upper() not in validators.ISO_3166_ALPHA2
    else:
        assert code in validators.ISO_3166_ALPHA2 and code.isascii() and len(code) == 2
