"""Text the vault stores for shoppers: printable, and ISO 3166-1 alpha-2 for countries.

Shoppers type labels and addresses that staff read in the admin, processors receive and
receipts print.  Control characters (NUL, ESC, newlines…), bidirectional overrides and
isolates (U+202A–U+202E, U+2066–U+2069, which make "txt.exe" read as "exe.txt"), zero-width
characters (U+200B–U+200D, U+2060, U+FEFF), other invisible format characters, unassigned or
private-use code points, lone surrogates and line/paragraph separators are refused with a
clear message; everything a script needs to be written is accepted (Unicode letters, marks,
numbers, punctuation, symbols and the ordinary space).  Values are stored NFC-normalized.
"""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError

#: Unicode general categories refused: Cc control, Cf format (bidi controls, zero-width
#: characters, soft hyphen, BOM), Cs surrogates, Co private use, Cn unassigned, Zl/Zp separators.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

#: ISO 3166-1 alpha-2: the 249 officially assigned codes (from Debian's iso-codes).
ISO_3166_ALPHA2 = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY
BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK
FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR
IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK
ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
""".split())


def first_unprintable(value: str) -> str | None:
    """A description of the first refused character in ``value`` ("U+202E"), or None."""
    for char in value:
        if unicodedata.category(char) in REFUSED_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None


def clean_text(value: str) -> str:
    """``value`` NFC-normalized; raises ``ValidationError`` if it holds a refused character."""
    if not isinstance(value, str):
        raise ValidationError("Must be text.", code="invalid")
    found = first_unprintable(value)
    if found:
        raise ValidationError(f"Contains a control, invisible or direction-changing character ({found}).",
                              code="unprintable")
    return unicodedata.normalize("NFC", value)


def validate_printable(value: str) -> None:
    clean_text(value)


def clean_country(value: str) -> str:
    """The ISO 3166-1 alpha-2 code in upper case; raises ``ValidationError`` otherwise."""
    code = value.strip().upper() if isinstance(value, str) else ""
    if not (code.isascii() and code in ISO_3166_ALPHA2):
        raise ValidationError("Use a two-letter ISO 3166-1 country code (such as US, GB, DE).", code="country")
    return code


def validate_country(value: str) -> None:
    clean_country(value)
