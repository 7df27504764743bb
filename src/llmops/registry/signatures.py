"""Signing and verifying registered versions (Ed25519 over the manifest digest), audited."""

from __future__ import annotations

from pathlib import Path

from llmops.registry.client import Registry
from llmops.registry.records import ModelVersionInfo
from llmops.security.signing import load_public, sign_digest, verify_digest

SIGNATURE_TAG = "signature"


def sign_version(registry: Registry, ref: str, private_key: Path) -> ModelVersionInfo:
    version = registry.get(ref)
    registry.artifacts.verify(version.digest)  # never vouch for bytes that no longer match
    signature = sign_digest(private_key, version.digest)
    return registry.merge_tags(version.ref, {SIGNATURE_TAG: signature.to_json()}, reason="signed")


def verify_version(registry: Registry, ref: str, public_key: Path) -> ModelVersionInfo:
    """Raise ``IntegrityError`` unless the version is signed by ``public_key`` and its files match."""
    version = registry.get(ref)
    verify_digest(load_public(public_key), version.digest, version.tags.get(SIGNATURE_TAG))
    registry.artifacts.verify(version.digest)
    return version
