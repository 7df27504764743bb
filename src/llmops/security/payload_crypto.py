"""Encryption at rest of logged prompts and completions (Fernet; several keys for rotation).

``LLMOPS_PAYLOAD_KEYS`` holds one or more Fernet keys, comma-separated: the first encrypts, every
one decrypts (``MultiFernet``), so a new key is put first, ``rotate`` re-encrypts the stored rows,
and the old key can then be dropped. A stored payload is ``enc:v1:`` followed by the Fernet token,
so encrypted and plain rows (written before encryption was turned on) can live side by side.
Readers whose role may not read payloads see ``[encrypted]`` (``HIDDEN``).
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from llmops.errors import InvalidInput
from llmops.settings import Settings, get_settings

PREFIX = "enc:v1:"
HIDDEN = "[encrypted]"
UNREADABLE = "[encrypted: no key for it]"
Reveal = Callable[[str | None], str | None]


def is_encrypted(value: str | None) -> bool:
    return value is not None and value.startswith(PREFIX)


class PayloadCipher:
    """Encrypts with the first key, decrypts with any of them."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise InvalidInput("give at least one payload key", param="LLMOPS_PAYLOAD_KEYS")
        fernets = []
        for number, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key))
            except ValueError:
                raise InvalidInput(
                    f"payload key {number} is not a Fernet key (32 url-safe base64-encoded bytes); make one "
                    "with cryptography's Fernet.generate_key()",
                    param="LLMOPS_PAYLOAD_KEYS",
                ) from None
        self._primary = fernets[0]
        self._all = MultiFernet(fernets)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> PayloadCipher | None:
        """The cipher of ``LLMOPS_PAYLOAD_KEYS``; None when no key is configured (encryption off)."""
        raw = (settings or get_settings()).payload_keys
        if raw is None:
            return None
        keys = [part.strip().encode() for part in raw.get_secret_value().split(",") if part.strip()]
        return cls(keys) if keys else None

    def encrypt(self, value: str | None) -> str | None:
        if value is None or is_encrypted(value):
            return value
        return PREFIX + self._primary.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, value: str | None) -> str | None:
        """The plain text of an encrypted payload (plain ones pass through); ``UNREADABLE`` when no
        configured key opens it."""
        if value is None or not is_encrypted(value):
            return value
        try:
            return self._all.decrypt(value[len(PREFIX) :].encode("ascii")).decode("utf-8")
        except InvalidToken:
            return UNREADABLE

    def rotate(self, value: str | None) -> str | None:
        """``value`` encrypted with the first key (plain text is encrypted; unreadable tokens kept)."""
        if value is None:
            return None
        if not is_encrypted(value):
            return self.encrypt(value)
        try:
            token = self._all.rotate(value[len(PREFIX) :].encode("ascii"))
        except InvalidToken:
            return value
        return PREFIX + token.decode("ascii")


def hide(value: str | None) -> str | None:
    """What a reader without payload access sees: ``[encrypted]`` for an encrypted payload."""
    return HIDDEN if is_encrypted(value) else value


def revealer(cipher: PayloadCipher | None) -> Reveal:
    """Decrypts with ``cipher``; without one, encrypted payloads read ``[encrypted]``."""
    return cipher.decrypt if cipher is not None else hide


def default_reveal(value: str | None) -> str | None:
    """Decrypt with the keys of this process's settings (the CLI and the Python API)."""
    return revealer(PayloadCipher.from_settings())(value)
