"""The one protection step for stored payloads: redact personal data, then encrypt.

Every text a user sent or a model produced that is kept (a request-log row's prompt and completion,
a feedback's comment and corrected output) goes through ``PayloadProtection.protect`` before it is
written: redaction first when a mode is set (``request_log.redact``: mask, hash or placeholder),
then encryption when ``LLMOPS_PAYLOAD_KEYS`` is set (``enc:v1:`` tokens). Readers show the result
with ``payload_crypto.revealer``: decrypted for roles that may read payloads, ``[encrypted]`` for
the others. ``protect`` is blocking (PII detection is not free): on an event loop, call it in a
thread when ``redacts`` is true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmops.security.payload_crypto import PayloadCipher
from llmops.security.redaction import Redactor
from llmops.settings import Settings, get_settings

RedactSetting = Literal["off", "mask", "hash", "placeholder"]


@dataclass(frozen=True)
class PayloadProtection:
    """Redact with ``redactor`` in mode ``redact`` (unless off), then encrypt with ``cipher`` (if any)."""

    redact: RedactSetting = "off"
    redactor: Redactor | None = None
    cipher: PayloadCipher | None = None

    @classmethod
    def from_settings(
        cls, redact: RedactSetting = "off", settings: Settings | None = None
    ) -> PayloadProtection:
        """Redaction keys from the server secret (only when redacting) and the payload keys of
        ``settings`` (encryption off when none is configured)."""
        settings = settings or get_settings()
        redactor = Redactor.from_settings(settings) if redact != "off" else None
        return cls(redact, redactor, PayloadCipher.from_settings(settings))

    @property
    def redacts(self) -> bool:
        return self.redactor is not None and self.redact != "off"

    def protect(self, *texts: str | None) -> tuple[str | None, ...]:
        """``texts`` as they may be stored, in order (None and empty texts stay as they are)."""
        redactor, mode = self.redactor, self.redact
        if redactor is not None and mode != "off":
            texts = tuple(redactor.redact(text, mode).text if text else text for text in texts)
        if self.cipher is not None:
            texts = tuple(self.cipher.encrypt(text) for text in texts)
        return texts
