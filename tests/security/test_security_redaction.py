"""Redaction modes (mask, keyed hash, reversible placeholders) and the data scrub-step adapter."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from llmops.data.cleaning import PIIDetector as ScrubStepDetector
from llmops.errors import InvalidInput
from llmops.security.redaction import (
    RedactionConfig,
    Redactor,
    ScrubRedactor,
    derive_key,
    new_mapping_key,
    restore,
)
from llmops.settings import Settings

TEXT = "Mail bob@example.com, card 4111 1111 1111 1111, again bob@example.com, ann@example.org."


def hashing() -> Redactor:
    return Redactor(hash_key=derive_key(b"server-secret", "pii-hash"))


def test_mask_with_labels_or_asterisks() -> None:
    result = Redactor().redact(TEXT, "mask")
    assert result.text == "Mail <EMAIL>, card <CREDIT_CARD>, again <EMAIL>, <EMAIL>."
    assert len(result.findings) == 4 and result.encrypted_mapping is None
    stars = Redactor(config=RedactionConfig(mask_style="asterisks")).redact("to bob@example.com!", "mask")
    assert stars.text == "to " + "*" * len("bob@example.com") + "!"


def test_hash_tokens_join_equal_values_however_written() -> None:
    redactor = hashing()
    first = redactor.redact("card 4111 1111 1111 1111 from bob@example.com").text
    second = redactor.redact("card 4111-1111-1111-1111 from BOB@example.com").text
    assert first == second
    assert "4111" not in first and "bob" not in first
    other_key = Redactor(hash_key=derive_key(b"another-secret", "pii-hash"))
    assert other_key.redact("bob@example.com", "hash").text != redactor.redact("bob@example.com", "hash").text
    token = redactor.redact("bob@example.com", "hash").text
    assert token.startswith("<EMAIL:") and len(token) == len("<EMAIL:>") + 12


def test_hash_mode_needs_a_key() -> None:
    with pytest.raises(InvalidInput, match="hash_key"):
        Redactor().redact(TEXT, "hash")
    with pytest.raises(InvalidInput, match="hash_key"):
        Redactor().redact("no personal data here", "hash")  # refused up front, not on first finding
    with pytest.raises(InvalidInput, match="unknown redaction mode"):
        Redactor().redact(TEXT, "shred")  # type: ignore[arg-type]


def test_placeholders_are_numbered_per_text_and_restorable_only_with_the_key() -> None:
    key = new_mapping_key()
    result = Redactor(mapping_key=key).redact(TEXT, "placeholder")
    assert result.text == "Mail <EMAIL_1>, card <CREDIT_CARD_1>, again <EMAIL_1>, <EMAIL_2>."
    assert result.encrypted_mapping is not None
    assert b"bob@example.com" not in result.encrypted_mapping
    assert restore(result.text, result.encrypted_mapping, key) == TEXT
    with pytest.raises(InvalidInput, match="does not decrypt"):
        restore(result.text, result.encrypted_mapping, new_mapping_key())
    with pytest.raises(InvalidInput, match="does not decrypt"):
        restore(result.text, result.encrypted_mapping[:-4] + b"AAAA", key)
    with pytest.raises(InvalidInput, match="32 url-safe"):
        restore(result.text, result.encrypted_mapping, b"short")


def test_placeholders_never_collide_with_text_that_looks_like_one() -> None:
    key = new_mapping_key()
    text = "literal <EMAIL_1> then bob@example.com"
    result = Redactor(mapping_key=key).redact(text, "placeholder")
    assert result.text == "literal <EMAIL_1> then <EMAIL_2>"
    assert result.encrypted_mapping is not None
    assert restore(result.text, result.encrypted_mapping, key) == text


def test_placeholder_mode_needs_a_key() -> None:
    with pytest.raises(InvalidInput, match="mapping_key"):
        Redactor().redact(TEXT, "placeholder")


def test_keys_from_settings_are_stable_and_distinct_per_purpose(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", secret="s" * 40)
    one, two = Redactor.from_settings(settings), Redactor.from_settings(settings)
    assert one.hash_key == two.hash_key and one.mapping_key == two.mapping_key
    assert one.hash_key is not None and two.mapping_key is not None and one.mapping_key is not None
    assert base64.urlsafe_b64decode(one.mapping_key) != one.hash_key  # one secret, two unrelated keys
    assert derive_key(b"s", "pii-hash") != derive_key(b"s", "other") != derive_key(b"t", "other")
    result = one.redact(TEXT, "placeholder")
    assert result.encrypted_mapping is not None
    assert restore(result.text, result.encrypted_mapping, two.mapping_key) == TEXT


def test_scrub_adapter_satisfies_the_data_package_protocol() -> None:
    adapter: ScrubStepDetector = ScrubRedactor()
    assert adapter.redact(TEXT) == ("Mail <EMAIL>, card <CREDIT_CARD>, again <EMAIL>, <EMAIL>.", 4)
    assert adapter.redact("nothing here") == ("nothing here", 0)
    hashed = ScrubRedactor(hashing(), mode="hash")
    text, count = hashed.redact("bob@example.com")
    assert count == 1 and text.startswith("<EMAIL:")
