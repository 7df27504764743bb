"""PII recognisers and the detector: checksums, context rules, overlaps and configuration."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llmops.security.pii import Finding, PIIConfig, PIIDetector, PIIType, resolve_overlaps
from llmops.security.pii_checks import (
    card_network,
    card_number_valid,
    iban_check_digits,
    iban_valid,
    luhn_valid,
    shannon_entropy,
    ssn_valid,
)


def kinds(text: str, detector: PIIDetector | None = None) -> list[tuple[str, str]]:
    return [(f.type.value, f.text) for f in (detector or PIIDetector()).detect(text)]


def test_luhn_and_card_networks() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("41111x1111111111")
    assert card_network("378282246310005") == "amex"
    assert card_network("356938035643809") is None  # an IMEI: Luhn-valid, 15 digits, not 34/37
    assert card_network("9780306406157") is None  # an ISBN-13
    assert card_number_valid("2223003122003222")  # Mastercard 2-series
    assert not card_number_valid("4111111111111")  # 13 digits, Luhn-invalid


def test_iban_length_table_and_mod97() -> None:
    assert iban_valid("GB82WEST12345698765432")
    assert iban_valid("gb82west12345698765432")
    assert not iban_valid("GB83WEST12345698765432")  # check digits off by one
    assert not iban_valid("GB82WEST1234569876543")  # one character short for GB
    assert not iban_valid("ZZ82WEST12345698765432")  # no such country
    assert iban_check_digits("DE", "370400440532013000") == "89"


@pytest.mark.parametrize(
    ("area", "group", "serial", "valid"),
    [
        ("536", "22", "1234", True),
        ("000", "12", "3456", False),
        ("666", "12", "3456", False),
        ("900", "12", "3456", False),
        ("999", "12", "3456", False),
        ("123", "00", "4567", False),
        ("123", "45", "0000", False),
        ("078", "05", "1120", False),  # voided by the SSA
    ],
)
def test_ssn_never_issued_ranges(area: str, group: str, serial: str, valid: bool) -> None:
    assert ssn_valid(area, group, serial) is valid


def test_entropy() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)


def test_cards_need_checksum_consistent_separators_and_no_identifier_label() -> None:
    assert kinds("card 4111 1111 1111 1111 exp") == [("CREDIT_CARD", "4111 1111 1111 1111")]
    assert kinds("card 4111-1111-1111-1111") == [("CREDIT_CARD", "4111-1111-1111-1111")]
    assert kinds("card 4111 1111 1111 1112") == []
    assert kinds("mixed 4111-1111 1111-1111") == []
    assert kinds("Order #4111111111111111") == []
    # an expiry glued on as a fifth group is dropped, the card kept
    assert kinds("4111 1111 1111 1111 12") == [("CREDIT_CARD", "4111 1111 1111 1111")]


def test_ibans_printed_compact_and_lower_case() -> None:
    text = "to GB82 WEST 1234 5698 7654 32 or de89370400440532013000."
    assert kinds(text) == [("IBAN", "GB82 WEST 1234 5698 7654 32"), ("IBAN", "de89370400440532013000")]
    assert kinds("GB82WEST12345698765432X") == []  # the run goes on past GB's 22 characters


def test_emails_and_asset_names() -> None:
    assert kinds("mail o'brien@example.ie now") == [("EMAIL", "o'brien@example.ie")]
    assert kinds("<info@café-example.com>") == [("EMAIL", "info@café-example.com")]
    assert kinds("logo@2x.png lodash@4.17.21 a..b@example.com") == []


def test_phones_need_grouping_or_context_when_bare() -> None:
    assert kinds("Office (212) 555-0199.") == [("PHONE", "(212) 555-0199")]
    assert kinds("Order 2025550143 confirmed") == []
    assert kinds("call me on 2025550143") == [("PHONE", "2025550143")]
    assert kinds("Invoice INV-2024-000123") == []  # valid digits, but not grouped like a US number
    assert kinds("London +44 20 7946 0958") == [("PHONE", "+44 20 7946 0958")]


def test_phone_default_region_is_configurable() -> None:
    german = PIIDetector(PIIConfig(default_region="de", types=frozenset({PIIType.PHONE})))
    assert kinds("Büro 030 901820", german) == [("PHONE", "030 901820")]
    assert kinds("Büro 030 901820", PIIDetector(PIIConfig(types=frozenset({PIIType.PHONE})))) == []
    with pytest.raises(ValidationError, match="unknown phone region"):
        PIIConfig(default_region="XX")
    with pytest.raises(ValidationError):
        PIIConfig(unknown_field=1)  # type: ignore[call-arg]


def test_ip_addresses_but_not_versions_or_oids() -> None:
    text = "from 203.0.113.45:443 and [2001:db8::1]; v1.2.3.4 version 10.0.0.1 OID 1.3.6.1.4.1 999.1.1.1"
    assert kinds(text) == [("IP_ADDRESS", "203.0.113.45"), ("IP_ADDRESS", "2001:db8::1")]
    assert kinds("Chrome/120.0.0.0 and 1.2.3.4-beta and 12:30:45 and 00:1A:2B:3C:4D:5E") == []
    assert kinds("http://10.0.0.1/x") == [("IP_ADDRESS", "10.0.0.1")]


def test_ssn_formats() -> None:
    assert kinds("id 536-22-1234") == [("US_SSN", "536-22-1234")]
    assert kinds("ref 536221234") == []
    assert kinds("SSN 536221234") == [("US_SSN", "536221234")]
    assert kinds("SSN 666-22-1234") == []


def test_secret_shapes_and_hex_decision() -> None:
    aws = "AKIAQQQQ3EXAMPLE7KEY"
    assert kinds(f"id {aws}") == [("SECRET", aws)]
    assert kinds("sk-learn-compatible-estimator is prose") == []
    digest = "3f786850e387550fdab836ed7e6dc881de23001b"
    assert kinds(f"commit {digest}") == []  # unlabelled hex is an identifier
    assert kinds(f"api_key={digest}") == [("SECRET", digest)]  # labelled hex is a secret
    assert kinds("DB_PASSWORD=hunter2024 and token: <your-token>") == [("SECRET", "hunter2024")]
    assert kinds("postgres://app:s3cret!@db:5432/x") == [("SECRET", "s3cret!")]
    assert kinds("random Xk9mP2vL8nQ4wR7tY1zB3cD6 here") == [("SECRET", "Xk9mP2vL8nQ4wR7tY1zB3cD6")]
    assert kinds("class PolicyNameV2WithSuffix") == []
    own = "sk-llmops-" + "A1b2C3d4E5" * 4 + "F6g"  # 43 url-safe characters, as keys.new_key() makes
    assert [(f.recogniser, f.text) for f in PIIDetector().detect(f"key {own}.")] == [("llmops_api_key", own)]


def test_private_key_block_is_one_finding() -> None:
    block = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    found = PIIDetector().detect(f"key:\n{block}\n")
    assert [(f.recogniser, f.text) for f in found] == [("private_key", block)]


def test_overlaps_keep_the_best_score_then_the_longest() -> None:
    weak = Finding(PIIType.SECRET, 0, 10, "x" * 10, 0.6)
    strong = Finding(PIIType.IBAN, 5, 20, "y" * 15, 0.99)
    apart = Finding(PIIType.EMAIL, 25, 30, "z" * 5, 0.5)
    longer = Finding(PIIType.PHONE, 24, 40, "w" * 16, 0.5)
    assert resolve_overlaps([weak, strong, apart, longer]) == [strong, longer]


def test_types_allow_values_and_min_score() -> None:
    text = "mail support@llmops.dev or bob@example.com from 10.0.0.1"
    only_email = PIIDetector(PIIConfig(types=frozenset({PIIType.EMAIL}), allow_values={"support@llmops.dev"}))
    assert kinds(text, only_email) == [("EMAIL", "bob@example.com")]
    strict = PIIDetector(PIIConfig(min_score=0.9))
    assert kinds(text, strict) == [("EMAIL", "support@llmops.dev"), ("EMAIL", "bob@example.com")]


def test_findings_index_the_source_text() -> None:
    text = "Name: J. Doe, email jdoe@example.com, phone (415) 555-0175, SSN 509-23-4781, IP 8.8.8.8"
    found = PIIDetector().detect(text)
    assert [f.type for f in found] == [PIIType.EMAIL, PIIType.PHONE, PIIType.US_SSN, PIIType.IP_ADDRESS]
    for finding in found:
        assert text[finding.start : finding.end] == finding.text
        assert 0.0 < finding.score <= 1.0
