"""Signing model versions: Ed25519 signatures over a version's manifest digest.

A version's digest already pins every byte of its files (the artifact store verifies it on every
read); a signature says who vouched for that digest. The signed message is domain-separated
(``llmops-model-manifest-v1:<digest>``) so a signature cannot be replayed for anything else.
Private keys are PEM files written with mode 0600; ``key_id`` is the first 16 hex characters of
the sha256 of the raw public key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from llmops.errors import IntegrityError, InvalidInput

DOMAIN = b"llmops-model-manifest-v1:"


@dataclass(frozen=True)
class ManifestSignature:
    key_id: str
    signature: str  # base64
    algorithm: str = "ed25519"

    def to_json(self) -> dict[str, str]:
        return {"key_id": self.key_id, "signature": self.signature, "algorithm": self.algorithm}


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key(private_path: Path) -> Path:
    """Write a new private key (mode 0600) and its public key beside it (``.pub``); returns the latter."""
    if private_path.exists():
        raise InvalidInput(f"{private_path} already exists; refusing to overwrite a key", param="key")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path = private_path.with_suffix(".pub")
    public_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return public_path


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read a private key from {path.name}: {exc}", param="key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"{path.name} is not an Ed25519 private key", param="key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read a public key from {path.name}: {exc}", param="public_key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput(f"{path.name} is not an Ed25519 public key", param="public_key")
    return key


def sign_digest(private_path: Path, digest: str) -> ManifestSignature:
    key = _load_private(private_path)
    signature = key.sign(DOMAIN + digest.encode())
    return ManifestSignature(key_id(key.public_key()), base64.b64encode(signature).decode())


def verify_digest(
    public: Ed25519PublicKey, digest: str, signature: ManifestSignature | dict[str, str] | None
) -> None:
    """Raise ``IntegrityError`` unless ``signature`` is a valid signature of ``digest`` by ``public``."""
    if signature is None:
        raise IntegrityError("the model version is not signed; sign it with `llmops models sign`")
    sig = signature if isinstance(signature, ManifestSignature) else ManifestSignature(**signature)
    if sig.key_id != key_id(public):
        raise IntegrityError(f"the version was signed by key {sig.key_id}, not by key {key_id(public)}")
    try:
        public.verify(base64.b64decode(sig.signature), DOMAIN + digest.encode())
    except (InvalidSignature, ValueError):
        raise IntegrityError("the signature does not match the version's manifest digest") from None
