"""Exact conversion between vault_wallets' integer minor units and processors' decimal amounts.

Amounts cross the processor boundary as integer minor units (cents); processors that speak
decimal major units ("19.99") convert here, with ``decimal`` and the currency's ISO 4217
exponent, never with floats::

    to_major_string(1999, "USD") == "19.99"      to_minor("19.99", "USD") == 1999
    to_major_string(500, "JPY") == "500"         to_minor("1.234", "KWD") == 1234

``to_minor`` refuses (``ValueError``) an amount with more decimals than the currency has,
unless the caller names a ``rounding`` mode.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

#: ISO 4217 currencies whose minor unit is not 1/100.
ZERO_DECIMAL_CURRENCIES = frozenset(
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split()
)
THREE_DECIMAL_CURRENCIES = frozenset("BHD IQD JOD KWD LYD OMR TND".split())


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point in ``currency``: 0 (JPY), 3 (KWD) or 2 (everything else)."""
    code = (currency or "").upper()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def to_major(minor: int, currency: str) -> Decimal:
    """Integer minor units → a ``Decimal`` in major units, exactly (``1999, "USD"`` → ``Decimal("19.99")``)."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError("amounts are integer minor units")
    return Decimal(minor).scaleb(-currency_exponent(currency))


def format_major(value: Decimal, currency: str) -> str:
    """A major-unit ``Decimal`` as text with exactly the currency's decimals (``"19.90"``, ``"500"``)."""
    return f"{value:.{currency_exponent(currency)}f}"


def to_major_string(minor: int, currency: str) -> str:
    """Integer minor units → decimal text: ``1999, "USD"`` → ``"19.99"``; ``500, "JPY"`` → ``"500"``."""
    return format_major(to_major(minor, currency), currency)


def format_amount(minor: int, currency: str) -> str:
    """For people (admin, templates, emails): ``2250, "USD"`` → ``"22.50 USD"``; ``500, "JPY"`` → ``"500 JPY"``."""
    if minor is None:
        return "—"
    return f"{to_major_string(int(minor), currency)} {(currency or '').upper()}".strip()


def to_minor(value: Any, currency: str, *, rounding: str | None = None) -> int:
    """A decimal amount in major units (text or number) → integer minor units.

    Exact: ``ValueError`` when ``value`` is not a finite number, or has more decimals than
    ``currency`` allows (``"19.999"`` USD) — unless ``rounding`` (a ``decimal`` rounding
    mode such as ``ROUND_HALF_UP``) says how to round those away.
    """
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    scaled = amount.scaleb(currency_exponent(currency))
    integral = scaled.to_integral_value(rounding=rounding)
    if rounding is None and integral != scaled:
        raise ValueError(f"{value!r} has more decimals than {currency} allows")
    return int(integral)


__all__ = [
    "THREE_DECIMAL_CURRENCIES",
    "ZERO_DECIMAL_CURRENCIES",
    "currency_exponent",
    "format_amount",
    "format_major",
    "to_major",
    "to_major_string",
    "to_minor",
]
