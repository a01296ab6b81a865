"""Sandbox test cards and bank accounts, and the behaviour each one selects."""

from __future__ import annotations

OK = "ok"
DECLINE = "decline"
VERIFY_FAIL = "verify_fail"
PROCESSOR_ERROR = "processor_error"
VERIFY_PENDING = "verify_pending"

#: number → (brand, behaviour, what it does)
TEST_CARDS: dict[str, tuple[str, str, str]] = {
    "4242424242424242": ("visa", OK, "vaults and charges successfully"),
    "5555555555554444": ("mastercard", OK, "vaults and charges successfully"),
    "378282246310005": ("amex", OK, "vaults and charges successfully"),
    "6011111111111117": ("discover", OK, "vaults and charges successfully"),
    "4000000000000002": ("visa", DECLINE, "vaults; every charge is declined (card_declined)"),
    "4000000000000127": ("visa", VERIFY_FAIL, "fails verification and is not saved"),
    "4000000000001216": ("visa", PROCESSOR_ERROR, "vaults; charges fail with a processor error"),
    "4000000000000101": ("visa", VERIFY_PENDING, "vaults with verification pending until completed"),
}

#: (routing, account) → (bank name, behaviour)
TEST_BANK_ACCOUNTS: dict[tuple[str, str], tuple[str, str]] = {
    ("110000000", "000123456789"): ("Sandbox Bank", OK),
}


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def aba_routing_ok(routing: str) -> bool:
    if not (routing.isdigit() and len(routing) == 9):
        return False
    d = [int(c) for c in routing]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])) % 10 == 0
