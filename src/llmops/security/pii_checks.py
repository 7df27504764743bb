"""Checksums and validity rules that turn regex candidates into findings.

A regex alone flags every 16-digit order number as a card and every ``XX00...`` string as an IBAN;
these checks are what make the recognisers precise: the Luhn checksum for payment cards, the
ISO 13616 length table and mod-97 for IBANs, the SSA's never-issued ranges for US social security
numbers, and Shannon entropy for unlabelled secrets.
"""

from __future__ import annotations

import math
from collections import Counter

# ISO 13616 IBAN lengths by country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# Numbers the SSA has publicly voided (used in advertising) although their ranges are valid.
VOIDED_SSNS = frozenset({"078051120", "219099999"})


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (only 0-9) passes the Luhn (mod 10) checksum."""
    if not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_network(digits: str) -> str | None:
    """The card network whose issuer prefix (IIN) and length ``digits`` fit, or None.

    Prefix and length together matter: a 15-digit Luhn-valid number is an Amex card only if it starts
    with 34 or 37; IMEIs (15 digits, usually 35...) and ISBN/EAN-13s (978...) fit no network.
    """
    n = len(digits)
    if not digits.isdigit() or not 13 <= n <= 19:
        return None
    p2, p3, p4 = int(digits[:2]), int(digits[:3]), int(digits[:4])
    rules = (
        ("visa", digits[0] == "4", n in (13, 16, 19)),
        ("mastercard", 51 <= p2 <= 55 or 2221 <= p4 <= 2720, n == 16),
        ("amex", p2 in (34, 37), n == 15),
        ("diners", 300 <= p3 <= 305 or p2 in (36, 38, 39), n >= 14),
        ("discover", p4 == 6011 or 644 <= p3 <= 649 or p2 == 65, n >= 16),
        ("jcb", 3528 <= p4 <= 3589, n >= 16),
        ("unionpay", p2 == 62, n >= 16),
        ("maestro", p2 == 50 or 56 <= p2 <= 69, True),
    )
    for name, prefix_ok, length_ok in rules:
        if prefix_ok and length_ok:
            return name
    return None


def card_number_valid(digits: str) -> bool:
    """A plausible payment card number: a known network's prefix and length, and Luhn-valid."""
    return card_network(digits) is not None and luhn_valid(digits)


def iban_valid(compact: str) -> bool:
    """True for an IBAN without spaces whose country length and mod-97 check both hold."""
    compact = compact.upper()
    expected = IBAN_LENGTHS.get(compact[:2])
    if expected is None or len(compact) != expected or not compact.isalnum():
        return False
    if not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(char, 36)) for char in rearranged)
    return int(numeric) % 97 == 1


def iban_check_digits(country: str, bban: str) -> str:
    """The two check digits that make ``country + check + bban`` a valid IBAN (for fixtures)."""
    numeric = "".join(str(int(char, 36)) for char in (bban + country + "00").upper())
    return f"{98 - int(numeric) % 97:02d}"


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """The SSA never issues area 000, 666 or 900-999, group 00 or serial 0000."""
    if len(area) != 3 or len(group) != 2 or len(serial) != 4:
        return False
    if area in ("000", "666") or area.startswith("9"):
        return False
    if group == "00" or serial == "0000":
        return False
    return area + group + serial not in VOIDED_SSNS


def shannon_entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character (0 for the empty string)."""
    if not text:
        return 0.0
    counts = Counter(text)
    size = len(text)
    return -sum(n / size * math.log2(n / size) for n in counts.values())


def character_classes(text: str) -> int:
    """How many of lower case, upper case and digits occur in ``text``."""
    return sum(
        (
            any(c.islower() for c in text),
            any(c.isupper() for c in text),
            any(c.isdigit() for c in text),
        )
    )
