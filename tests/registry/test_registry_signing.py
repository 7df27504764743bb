"""Signing versions through the CLI: sign, verify, and refuse a wrong key, no signature or changed files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from llmops.registry import Registry
from llmops.store.home import open_home


def test_sign_and_verify(cli, tiny_model_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "keys" / "release.pem"
    assert cli("models", "keygen", key).code == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    other = tmp_path / "keys" / "other.pem"
    cli("models", "keygen", other)
    cli("models", "register", tiny_model_dir, "--name", "m")

    unsigned = cli("models", "verify", "m@1", "--public-key", key.with_suffix(".pub"))
    assert unsigned.code == 1 and "not signed" in unsigned.err
    signed = cli("models", "sign", "m@1", "--key", key)
    assert signed.code == 0 and "signed m@1" in signed.out
    ok = cli("models", "verify", "m@1", "--public-key", key.with_suffix(".pub"))
    assert ok.code == 0 and "verified" in ok.out
    wrong = cli("models", "verify", "m@1", "--public-key", other.with_suffix(".pub"))
    assert wrong.code == 1 and "signed by key" in wrong.err

    registry = Registry.from_home(open_home())
    weights = registry.local_path("m@1") / "model.safetensors"
    os.chmod(weights, 0o644)
    with weights.open("r+b") as handle:
        handle.seek(-1, 2)
        handle.write(b"\x00" if handle.read(1) != b"\x00" else b"\x01")
    tampered = cli("models", "verify", "m@1", "--public-key", key.with_suffix(".pub"))
    assert tampered.code == 1
    assert "model.sign" not in cli("audit", "list").out
    assert "model.tags.merge" in cli("audit", "list").out
