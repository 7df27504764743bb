"""Logged prompts and completions: encrypted at rest (Fernet, rotatable keys), decrypted through the
admin API only for roles that may read payloads, and redacted before storage when configured."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from llmops.security.payload_crypto import HIDDEN, PREFIX, PayloadCipher
from llmops.security.roles import Role
from llmops.settings import reset_settings
from llmops.store.home import Home

pytestmark = pytest.mark.anyio
PLANTED = "the launch code is PLANTED-7741"


async def _raw_row(home: Home, request_id: str) -> tuple[str | None, str | None]:
    """The stored payloads straight from the database, bypassing every llmops reader."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with home.store.engine.connect() as conn:
            row = conn.execute(
                text("SELECT prompt, completion FROM gateway_requests WHERE id = :id"), {"id": request_id}
            ).first()
        if row is not None:
            return row[0], row[1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no log row for {request_id}")


async def test_payloads_are_encrypted_at_rest_and_shown_by_role(
    gw: Any, home: Home, make_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("LLMOPS_PAYLOAD_KEYS", old)
    reset_settings()
    consumer, developer, deployer = make_key(Role.CONSUMER), make_key(Role.DEVELOPER), make_key(Role.DEPLOYER)
    body = {"model": "support-bot", "messages": [{"role": "user", "content": PLANTED}], "max_tokens": 3}
    async with gw.client(home, gw.config(), gw.in_process(**{"support-bot": gw.MockUpstream("m")})) as (
        client,
        _,
    ):
        answered = await client.post("/v1/chat/completions", json=body, headers=gw.bearer(consumer))
        assert answered.status_code == 200
        request_id = answered.headers["x-request-id"]
        prompt, completion = await _raw_row(home, request_id)
        assert prompt is not None and prompt.startswith(PREFIX) and "PLANTED" not in prompt
        assert completion is not None and completion.startswith(PREFIX) and "tok" not in completion

        shown = (await client.get(f"/api/requests/{request_id}", headers=gw.bearer(deployer))).json()
        assert PLANTED in shown["prompt"] and shown["completion"].startswith("m:")
        hidden = (await client.get(f"/api/requests/{request_id}", headers=gw.bearer(developer))).json()
        assert hidden["prompt"] == HIDDEN and hidden["completion"] == HIDDEN
        listed = (await client.get("/api/requests", headers=gw.bearer(developer))).json()
        assert PLANTED not in str(listed) and listed[0]["prompt"] == HIDDEN
        exported = await client.get("/api/requests/export", headers=gw.bearer(developer))
        assert PLANTED not in exported.text and HIDDEN in exported.text
        assert (
            await client.get(f"/api/requests/{request_id}", headers=gw.bearer(consumer))
        ).status_code == 403

        # rotation: a new key first, the old one still decrypts what it wrote
        monkeypatch.setenv("LLMOPS_PAYLOAD_KEYS", f"{new},{old}")
        reset_settings()
        shown = (await client.get(f"/api/requests/{request_id}", headers=gw.bearer(deployer))).json()
        assert PLANTED in shown["prompt"]


def test_cipher_rotation_and_bad_keys() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    stored = PayloadCipher([old]).encrypt(PLANTED)
    assert stored is not None
    rotated = PayloadCipher([new, old]).rotate(stored)
    assert PayloadCipher([new]).decrypt(rotated) == PLANTED
    assert PayloadCipher([Fernet.generate_key()]).decrypt(stored) == "[encrypted: no key for it]"
    with pytest.raises(Exception, match=r"LLMOPS_PAYLOAD_KEYS|Fernet"):
        PayloadCipher([b"not-a-key"])


async def test_logged_payloads_are_redacted_when_configured(gw: Any, home: Home, make_key: Any) -> None:
    config = gw.config(request_log={"flush_interval_s": 0.05, "redact": "mask"})
    key = make_key(Role.CONSUMER)
    body = {
        "model": "support-bot",
        "messages": [{"role": "user", "content": "mail alice.smith@example.com about it"}],
        "max_tokens": 3,
    }
    async with gw.client(home, config, gw.in_process(**{"support-bot": gw.MockUpstream("m")})) as (client, _):
        answered = await client.post("/v1/chat/completions", json=body, headers=gw.bearer(key))
        prompt, _completion = await _raw_row(home, answered.headers["x-request-id"])
    assert prompt is not None and "alice.smith@example.com" not in prompt and "<EMAIL>" in prompt
