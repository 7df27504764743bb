"""Recognisers: one function per entity type, each turning regex candidates into validated findings.

Every recogniser has the signature ``(text, config) -> Iterator[Finding]`` and may return
overlapping findings; the detector resolves overlaps. Numbers with a checksum are never reported on
the strength of a regex alone: cards pass Luhn, IBANs pass the country length and mod-97, IP
addresses pass ``ipaddress``, phone numbers pass libphonenumber's validity check, and US social
security numbers avoid the ranges the SSA never issues.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator

import phonenumbers

from llmops.security.pii_checks import (
    IBAN_LENGTHS,
    card_number_valid,
    iban_valid,
    ssn_valid,
)
from llmops.security.pii_types import Finding, PIIConfig, PIIType
from llmops.security.secret_recognisers import find_secrets

Recogniser = Callable[[str, PIIConfig], Iterator[Finding]]

# Unicode letters are allowed on both sides (internationalised addresses: info@café.example).
EMAIL_RE = re.compile(
    r"(?<![\w.+%-])([^\W_](?:[\w.%+'-]{0,62}[\w%+-])?)"
    r"@((?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,10}([^\W\d_]{2,24}))(?![\w-]|\.\w)"
)
# "logo@2x.png" is an asset name, not an address: these suffixes are file types, not domains.
FILE_SUFFIXES = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff"}
    | {"css", "js", "json", "yaml", "yml", "txt", "html", "htm"}
)
PHONE_CONTEXT_RE = re.compile(r"(?i)\b(?:phone|tel|telephone|mobile|cell|call|fax|whatsapp|sms|text)\b")
PHONE_SEPARATORS = frozenset(" -.()/\u00a0")
CARD_RE = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
IBAN_START_RE = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})(\d{2})")
IPV4_RE = re.compile(r"(?<![\w.\-])(\d{1,3}(?:\.\d{1,3}){3})(?![\w\-]|\.\d)")
IPV6_RE = re.compile(r"(?<![\w:.])[0-9A-Fa-f:.]{2,45}(?![\w:])")
# Dotted quads after these words are versions or section numbers, not addresses.
VERSION_CONTEXT_RE = re.compile(
    r"(?i)(?:\b(?:v|ver|version|release|build|firmware|fw|tag|section|sec|chapter|clause|figure|fig"
    r"|table|step|rule|item|paragraph)|§)[\s.:=#]*$"
)
# "Chrome/120.0.0.0": a dotted quad right after a product name and a slash is a version.
PRODUCT_TOKEN_RE = re.compile(r"[A-Za-z][\w.-]*/$")
# A number right after one of these labels is an identifier, whatever its checksum says.
IDENTIFIER_CONTEXT_RE = re.compile(
    r"(?i)\b(?:order|invoice|inv|tracking|ref|reference|serial|part|sku|isbn|ean|upc|po|ticket|case)"
    r"(?:\s*(?:no\.?|number|num|id))?\s*[:#]?\s*$"
)
SSN_RE = re.compile(r"(?<![\w-])(\d{3})([- ]?)(\d{2})\2(\d{4})(?![\w-])")
SSN_CONTEXT_RE = re.compile(r"(?i)(?:\bssn\b|\bss#|social\s+security|\bsocial\s+sec\b|\btaxpayer\b|\btin\b)")
CONTEXT_WINDOW = 40


def _context_before(text: str, start: int, pattern: re.Pattern[str]) -> bool:
    return pattern.search(text, max(0, start - CONTEXT_WINDOW), start) is not None


def find_emails(text: str, config: PIIConfig) -> Iterator[Finding]:
    """Addresses with a dotted domain and an alphabetic TLD; no ``..`` in the local part."""
    for match in EMAIL_RE.finditer(text):
        local, tld = match.group(1), match.group(3).lower()
        if ".." in local or tld in FILE_SUFFIXES:
            continue
        yield Finding(PIIType.EMAIL, match.start(), match.end(), match.group(0), 0.95, "email")


def find_phones(text: str, config: PIIConfig) -> Iterator[Finding]:
    """Valid numbers grouped as the region writes them (libphonenumber's STRICT_GROUPING leniency).

    Read in ``default_region`` unless written with ``+``; "2024-000123" is a valid US number by its
    digits but not by its grouping, so invoice numbers like it are not reported.
    """
    matcher = phonenumbers.PhoneNumberMatcher(
        text, config.default_region, leniency=phonenumbers.Leniency.STRICT_GROUPING
    )
    for match in matcher:
        raw = match.raw_string
        international = raw.startswith("+")
        formatted = international or any(char in PHONE_SEPARATORS for char in raw)
        if _context_before(text, match.start, IDENTIFIER_CONTEXT_RE):
            continue
        context = _context_before(text, match.start, PHONE_CONTEXT_RE)
        if not formatted and config.bare_phone_needs_context and not context:
            continue
        score = 0.9 if international else 0.85 if formatted else 0.7
        yield Finding(PIIType.PHONE, match.start, match.end, raw, score, "phone")


def _card_groups_plausible(groups: list[str]) -> bool:
    """Printed cards group as 4-4-4-4(-3) or Amex/Diners 4-6-5 / 4-6-4."""
    if len(groups) == 1:
        return True
    lengths = [len(g) for g in groups]
    if lengths[:2] == [4, 6] and len(lengths) == 3 and lengths[2] in (4, 5):
        return True
    return all(n == 4 for n in lengths[:-1]) and 1 <= lengths[-1] <= 4


def _card_length(raw: str) -> int | None:
    """Length of the longest prefix of ``raw`` (whole groups) that reads as a card number, if any."""
    separators = {char for char in raw if not char.isdigit()}
    if len(separators) > 1:
        return None  # "2024-01-15 1234" mixes separators: a timestamp, not a card
    groups = re.split(r"[ -]", raw) if separators else [raw]
    while sum(len(g) for g in groups) >= 13:
        if _card_groups_plausible(groups) and card_number_valid("".join(groups)):
            return sum(len(g) for g in groups) + len(groups) - 1
        if len(groups) == 1:
            return None
        groups = groups[:-1]
    return None


def find_cards(text: str, config: PIIConfig) -> Iterator[Finding]:
    """13-19 digits, optionally grouped by one kind of separator, Luhn-valid with a card first digit.

    A trailing group that breaks the checksum (an expiry month, a CVV) is dropped and the rest tried.
    """
    for match in CARD_RE.finditer(text):
        length = _card_length(match.group(0))
        if length is None or _context_before(text, match.start(), IDENTIFIER_CONTEXT_RE):
            continue
        start, end = match.start(), match.start() + length
        score = 0.85 if text[start:end].isdigit() else 0.95
        yield Finding(PIIType.CREDIT_CARD, start, end, text[start:end], score, "card")


def _iban_end(text: str, start: int, length: int) -> int | None:
    """Index after the ``length``-th IBAN character from ``start`` (single spaces allowed between)."""
    count, index = 0, start
    while index < len(text) and count < length:
        char = text[index]
        if char.isascii() and char.isalnum():
            count, index = count + 1, index + 1
        elif char == " " and count and index + 1 < len(text) and text[index + 1].isalnum():
            index += 1
        else:
            break
    if count != length:
        return None
    if index < len(text) and text[index].isascii() and text[index].isalnum():
        return None  # the run continues: not an IBAN of this country's length
    return index


def find_ibans(text: str, config: PIIConfig) -> Iterator[Finding]:
    """IBANs, compact or in groups of four, any case, with the country's length and mod-97 == 1."""
    for match in IBAN_START_RE.finditer(text):
        length = IBAN_LENGTHS.get(match.group(1).upper())
        if length is None:
            continue
        end = _iban_end(text, match.start(), length)
        if end is None:
            continue
        value = text[match.start() : end]
        if iban_valid(value.replace(" ", "")):
            yield Finding(PIIType.IBAN, match.start(), end, value, 0.99, "iban")


def find_ips(text: str, config: PIIConfig) -> Iterator[Finding]:
    """IPv4 dotted quads (not preceded by a version word) and IPv6 addresses, checked by ``ipaddress``."""
    for match in IPV4_RE.finditer(text):
        if _context_before(text, match.start(), VERSION_CONTEXT_RE) or _context_before(
            text, match.start(), PRODUCT_TOKEN_RE
        ):
            continue
        try:
            ipaddress.IPv4Address(match.group(1))
        except ValueError:
            continue
        yield Finding(PIIType.IP_ADDRESS, match.start(), match.end(), match.group(1), 0.8, "ipv4")
    for match in IPV6_RE.finditer(text):
        value = match.group(0).rstrip(".")
        if value.count(":") < 2 or not any(char.isdigit() for char in value):
            continue
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            continue
        end = match.start() + len(value)
        yield Finding(PIIType.IP_ADDRESS, match.start(), end, value, 0.8, "ipv6")


def find_ssns(text: str, config: PIIConfig) -> Iterator[Finding]:
    """``AAA-GG-SSSS`` anywhere; space-separated or bare nine digits only after an SSN keyword."""
    for match in SSN_RE.finditer(text):
        area, separator, group, serial = match.groups()
        if not ssn_valid(area, group, serial) or _context_before(text, match.start(), IDENTIFIER_CONTEXT_RE):
            continue
        if separator == "-":
            score = 0.85
        elif _context_before(text, match.start(), SSN_CONTEXT_RE):
            score = 0.75
        else:
            continue
        yield Finding(PIIType.US_SSN, match.start(), match.end(), match.group(0), score, "us_ssn")


RECOGNISERS: dict[PIIType, Recogniser] = {
    PIIType.EMAIL: find_emails,
    PIIType.PHONE: find_phones,
    PIIType.CREDIT_CARD: find_cards,
    PIIType.IBAN: find_ibans,
    PIIType.IP_ADDRESS: find_ips,
    PIIType.US_SSN: find_ssns,
    PIIType.SECRET: find_secrets,
}
