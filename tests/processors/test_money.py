"""``vault_wallets.processors.money``: exact minor-unit ↔ decimal conversion."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from vault_wallets.processors.money import (
    currency_exponent,
    format_major,
    to_major,
    to_major_string,
    to_minor,
)


@pytest.mark.parametrize(("currency", "exponent"), [
    ("USD", 2), ("usd", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3), ("", 2),
])
def test_currency_exponent(currency, exponent):
    assert currency_exponent(currency) == exponent


@pytest.mark.parametrize(("minor", "currency", "text"), [
    (1999, "USD", "19.99"),
    (5, "usd", "0.05"),
    (0, "USD", "0.00"),
    (100000, "USD", "1000.00"),
    (100000000001, "EUR", "1000000000.01"),
    (500, "JPY", "500"),
    (1999, "JPY", "1999"),
    (1234, "KWD", "1.234"),
    (1, "BHD", "0.001"),
    (10, "KWD", "0.010"),
])
def test_round_trip_is_exact(minor, currency, text):
    assert to_major_string(minor, currency) == text
    assert to_major(minor, currency) == Decimal(text)
    assert to_minor(text, currency) == minor


def test_to_minor_accepts_numbers_and_fewer_decimals():
    assert to_minor("19.9", "USD") == 1990
    assert to_minor(19.99, "USD") == 1999  # str(float) is the short repr, not the binary value
    assert to_minor(Decimal("19.99"), "USD") == 1999
    assert to_minor(" 7 ", "JPY") == 7
    assert to_minor("1.5", "KWD") == 1500


@pytest.mark.parametrize(("value", "currency"), [
    ("19.999", "USD"), ("0.005", "USD"), ("1.5", "JPY"), ("0.0001", "KWD"),
])
def test_to_minor_refuses_inexact_amounts(value, currency):
    with pytest.raises(ValueError, match="more decimals"):
        to_minor(value, currency)


def test_to_minor_rounds_only_when_told_how():
    assert to_minor("0.005", "USD", rounding=ROUND_HALF_UP) == 1
    assert to_minor("19.994", "USD", rounding=ROUND_HALF_UP) == 1999
    assert to_minor("2.5", "JPY", rounding=ROUND_HALF_UP) == 3


@pytest.mark.parametrize("value", ["abc", "", None, "NaN", "Infinity", "-inf"])
def test_to_minor_refuses_what_is_not_an_amount(value):
    with pytest.raises(ValueError, match="not an amount"):
        to_minor(value, "USD")


@pytest.mark.parametrize("minor", [19.99, "1999", True, Decimal("1999")])
def test_to_major_takes_integer_minor_units_only(minor):
    with pytest.raises(TypeError):
        to_major(minor, "USD")


def test_format_major_pads_to_the_currency_decimals():
    assert format_major(Decimal("19.9"), "USD") == "19.90"
    assert format_major(Decimal("500"), "JPY") == "500"
    assert format_major(Decimal("1.2"), "KWD") == "1.200"
