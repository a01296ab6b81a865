"""Card-number helpers shared by the processor fakes (plain Python: no Django, no pytest).

``card_brand`` names a card's network from its leading digits; each fake maps that name to
its processor's own vocabulary (``"VISA"``, ``"001"``, ``"Master"``…).  ``luhn_ok`` is the
sandbox's check digit test, re-exported here.
"""

from __future__ import annotations

from vault_wallets.sandbox.cards import luhn_ok

VISA = "visa"
MASTERCARD = "mastercard"
AMEX = "amex"
DISCOVER = "discover"
DINERS = "diners"
JCB = "jcb"
UNKNOWN = "unknown"


def _prefix(number: str, digits: int) -> int:
    head = number[:digits]
    return int(head) if len(head) == digits and head.isdigit() else -1


def card_brand(number: str) -> str:
    """The network of a card number by its IIN range: ``"visa"``, ``"mastercard"``, ``"amex"``,
    ``"discover"``, ``"diners"``, ``"jcb"``, or ``"unknown"``."""
    two, three, four = _prefix(number, 2), _prefix(number, 3), _prefix(number, 4)
    if number.startswith("4"):
        return VISA
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return MASTERCARD
    if two in (34, 37):
        return AMEX
    if four == 6011 or two == 65 or 644 <= three <= 649:
        return DISCOVER
    if two in (36, 38) or 300 <= three <= 305:
        return DINERS
    if 3528 <= four <= 3589:
        return JCB
    return UNKNOWN


__all__ = ["AMEX", "DINERS", "DISCOVER", "JCB", "MASTERCARD", "UNKNOWN", "VISA", "card_brand", "luhn_ok"]
