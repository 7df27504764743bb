"""Redaction of detected PII: mask, keyed hash (joinable) or numbered placeholders (reversible).

Three modes over the detector's findings:

- ``mask``: ``<EMAIL>`` or asterisks of the same length; nothing can be recovered.
- ``hash``: ``<EMAIL:3f9a1c2b4d5e>``, a prefix of HMAC-SHA256(key, type + normalised value), so the
  same card written ``4111 1111 ...`` or ``4111-1111-...`` gets the same token across rows and
  datasets (joins, counts) while the value cannot be read back without brute force over the key.
- ``placeholder``: ``<EMAIL_1>``, ``<PHONE_1>``... numbered per text, plus the mapping from
  placeholders to values encrypted with Fernet; ``restore(text, encrypted_mapping, key)`` undoes
  it, and only the key holder can.

``ScrubRedactor`` adapts a ``Redactor`` to the data package's scrub step
(``redact(text) -> (text, findings)``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import phonenumbers
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import InvalidInput
from llmops.security.pii import PIIDetector
from llmops.security.pii_types import Finding, PIIType
from llmops.settings import Settings, get_settings

RedactMode = Literal["mask", "hash", "placeholder"]
PLACEHOLDER_RE = re.compile(r"<([A-Z_]+)_(\d+)>")
MAPPING_VERSION = 1


class RedactionConfig(BaseModel):
    """How masks and hash tokens look."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mask_style: Literal["label", "asterisks"] = Field(
        default="label", description="'label' writes <EMAIL>; 'asterisks' keeps the length with '*'."
    )
    hash_chars: int = Field(
        default=12, ge=8, le=64, description="Hex characters of the HMAC kept in hash tokens."
    )


@dataclass(frozen=True)
class Redaction:
    """A redacted text, what was found, and (placeholder mode) the encrypted placeholder mapping."""

    text: str
    findings: tuple[Finding, ...]
    encrypted_mapping: bytes | None = None


def derive_key(secret: bytes, purpose: str) -> bytes:
    """32 bytes for one purpose from the server secret (HKDF-SHA256), so purposes never share keys."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"llmops/{purpose}".encode())
    return hkdf.derive(secret)


def new_mapping_key() -> bytes:
    """A fresh random Fernet key for placeholder mappings."""
    return Fernet.generate_key()


def normalise(finding: Finding, region: str = "US") -> str:
    """The canonical form hashed for joins: one value, one token, however it was written."""
    value = finding.text
    if finding.type is PIIType.EMAIL:
        return value.lower()
    if finding.type in (PIIType.CREDIT_CARD, PIIType.US_SSN):
        return "".join(char for char in value if char.isdigit())
    if finding.type is PIIType.IBAN:
        return value.replace(" ", "").upper()
    if finding.type is PIIType.IP_ADDRESS:
        return str(ipaddress.ip_address(value))
    if finding.type is PIIType.PHONE:
        try:
            number = phonenumbers.parse(value, region)
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            return "".join(char for char in value if char.isdigit() or char == "+")
    return value


class Redactor:
    """Detects and redacts; ``hash_key`` is needed for hash mode, ``mapping_key`` for placeholders."""

    def __init__(
        self,
        detector: PIIDetector | None = None,
        config: RedactionConfig | None = None,
        *,
        hash_key: bytes | None = None,
        mapping_key: bytes | None = None,
    ) -> None:
        self.detector = detector or PIIDetector()
        self.config = config or RedactionConfig()
        self.hash_key = hash_key
        self.mapping_key = mapping_key

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        detector: PIIDetector | None = None,
        config: RedactionConfig | None = None,
    ) -> Redactor:
        """Keys derived from the server secret: stable across restarts, different per purpose."""
        secret = (settings or get_settings()).secret_value()
        mapping_key = base64.urlsafe_b64encode(derive_key(secret, "pii-placeholder-mapping"))
        return cls(detector, config, hash_key=derive_key(secret, "pii-hash"), mapping_key=mapping_key)

    def redact(self, text: str, mode: RedactMode = "mask") -> Redaction:
        """Replace every finding in ``text`` according to ``mode``."""
        self._check_keys(mode)
        findings = self.detector.detect(text)
        if mode == "mask":
            return Redaction(_replace(text, findings, self._mask), tuple(findings))
        if mode == "hash":
            return Redaction(_replace(text, findings, self._hash_token), tuple(findings))
        return self._placeholders(text, findings)

    def _check_keys(self, mode: str) -> None:
        if mode not in ("mask", "hash", "placeholder"):
            raise InvalidInput(
                f"unknown redaction mode {mode!r}; use mask, hash or placeholder", param="mode"
            )
        if mode == "hash" and not self.hash_key:
            raise InvalidInput(
                "hash redaction needs a hash_key: use Redactor.from_settings() or pass "
                "derive_key(secret, 'pii-hash')",
                param="hash_key",
            )
        if mode == "placeholder" and not self.mapping_key:
            raise InvalidInput(
                "placeholder redaction needs a mapping_key: use Redactor.from_settings() or "
                "new_mapping_key()",
                param="mapping_key",
            )

    def _mask(self, finding: Finding) -> str:
        if self.config.mask_style == "asterisks":
            return "*" * len(finding.text)
        return f"<{finding.type.value}>"

    def _hash_token(self, finding: Finding) -> str:
        assert self.hash_key  # checked by _check_keys
        message = f"{finding.type.value}:{normalise(finding, self.detector.config.default_region)}"
        digest = hmac.new(self.hash_key, message.encode(), hashlib.sha256).hexdigest()
        return f"<{finding.type.value}:{digest[: self.config.hash_chars]}>"

    def _placeholders(self, text: str, findings: list[Finding]) -> Redaction:
        assert self.mapping_key  # checked by _check_keys
        by_value: dict[tuple[PIIType, str], str] = {}
        counters: dict[PIIType, int] = {}

        def placeholder(finding: Finding) -> str:
            key = (finding.type, finding.text)
            if key not in by_value:
                number = counters.get(finding.type, 0) + 1
                while f"<{finding.type.value}_{number}>" in text:
                    number += 1  # never collide with a placeholder-like string already in the text
                counters[finding.type] = number
                by_value[key] = f"<{finding.type.value}_{number}>"
            return by_value[key]

        redacted = _replace(text, findings, placeholder)
        mapping = {token: value for (_, value), token in by_value.items()}
        body = json.dumps({"v": MAPPING_VERSION, "placeholders": mapping}, sort_keys=True).encode()
        encrypted = _fernet(self.mapping_key).encrypt(body)
        return Redaction(redacted, tuple(findings), encrypted)


def _replace(text: str, findings: list[Finding], token_of: Callable[[Finding], str]) -> str:
    parts: list[str] = []
    cursor = 0
    for finding in findings:  # sorted and non-overlapping, as the detector returns them
        parts.append(text[cursor : finding.start])
        parts.append(token_of(finding))
        cursor = finding.end
    parts.append(text[cursor:])
    return "".join(parts)


def _fernet(key: bytes) -> Fernet:
    try:
        return Fernet(key)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "mapping key must be 32 url-safe base64-encoded bytes (see new_mapping_key())", param="key"
        ) from exc


def restore(text: str, encrypted_mapping: bytes, key: bytes) -> str:
    """Put the original values back into a placeholder-redacted text; needs the mapping's key."""
    try:
        body = json.loads(_fernet(key).decrypt(encrypted_mapping))
    except InvalidToken as exc:
        raise InvalidInput(
            "the placeholder mapping does not decrypt with this key (wrong key, or the mapping was altered)",
            param="key",
        ) from exc
    mapping: dict[str, str] = body["placeholders"]
    return PLACEHOLDER_RE.sub(lambda match: mapping.get(match.group(0), match.group(0)), text)


class ScrubRedactor:
    """The data package's scrub-step detector: ``redact(text) -> (redacted text, findings)``."""

    def __init__(self, redactor: Redactor | None = None, mode: Literal["mask", "hash"] = "mask") -> None:
        self.redactor = redactor or Redactor()
        self.mode: Literal["mask", "hash"] = mode

    def redact(self, text: str) -> tuple[str, int]:
        result = self.redactor.redact(text, self.mode)
        return result.text, len(result.findings)
