"""Feedback text is protected like a completion: a ``corrected_output`` or ``comment`` sent to
``POST /v1/feedback`` is redacted (``request_log.redact``) and encrypted (``LLMOPS_PAYLOAD_KEYS``)
before it is stored, and read back decrypted only by roles that may read payloads."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from llmops.security.payload_crypto import HIDDEN, PREFIX
from llmops.security.roles import Role
from llmops.settings import reset_settings
from llmops.store.home import Home

pytestmark = pytest.mark.anyio
SSN, EMAIL = "536-22-8145", "jane.doe@example.com"
CORRECTED = f"Your SSN {SSN} is on file; we wrote to {EMAIL}."
COMMENT = f"it should have said {EMAIL}"


async def _raw_feedback(home: Home, request_id: str) -> tuple[str | None, str | None]:
    """The stored feedback text straight from the database, bypassing every llmops reader."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with home.store.engine.connect() as conn:
            query = text("SELECT comment, corrected_output FROM feedback WHERE request_id = :id")
            row = conn.execute(query, {"id": request_id}).first()
        if row is not None:
            return row[0], row[1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no feedback row for {request_id}")


def _config(gw: Any, redact: str) -> Any:
    return gw.config(
        request_log={"flush_interval_s": 0.05, "redact": redact},
        monitor={"store_flush_interval_s": 0.05},
    )


async def _rate(client: Any, gw: Any, key: str) -> str:
    answered = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
    assert answered.status_code == 200, answered.text
    request_id: str = answered.headers["x-request-id"]
    body = {"request_id": request_id, "thumbs": "down", "comment": COMMENT, "corrected_output": CORRECTED}
    stored = await client.post("/v1/feedback", json=body, headers=gw.bearer(key))
    assert stored.status_code == 201, stored.text
    return request_id


async def test_feedback_text_is_redacted_and_encrypted_and_shown_by_role(
    gw: Any, home: Home, make_key: Any, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    monkeypatch.setenv("LLMOPS_PAYLOAD_KEYS", Fernet.generate_key().decode())
    reset_settings()
    consumer, developer, deployer = make_key(Role.CONSUMER), make_key(Role.DEVELOPER), make_key(Role.DEPLOYER)
    upstreams = gw.in_process(**{"support-bot": gw.MockUpstream("m")})
    async with gw.client(home, _config(gw, "mask"), upstreams) as (client, _):
        request_id = await _rate(client, gw, consumer)
        comment, corrected = await _raw_feedback(home, request_id)
        for stored in (comment, corrected):
            assert stored is not None and stored.startswith(PREFIX)
            assert SSN not in stored and EMAIL not in stored

        hidden = (await client.get(f"/api/requests/{request_id}", headers=gw.bearer(developer))).json()
        [item] = hidden["feedback"]
        assert (item["comment"], item["corrected_output"]) == (HIDDEN, HIDDEN)
        listed = await client.get("/api/requests", headers=gw.bearer(developer))
        exported = await client.get("/api/requests/export", headers=gw.bearer(developer))
        for body in (listed.text, exported.text):
            assert EMAIL not in body and SSN not in body and "Your SSN" not in body

        shown = (await client.get(f"/api/requests/{request_id}", headers=gw.bearer(deployer))).json()
        [item] = shown["feedback"]
        assert item["corrected_output"] == "Your SSN <US_SSN> is on file; we wrote to <EMAIL>."
        assert item["comment"] == "it should have said <EMAIL>"

    # the operator's CLI holds the payload keys: it decrypts (and the text stays redacted)
    on_cli = cli("requests", "show", request_id)
    assert on_cli.code == 0 and "corrected: Your SSN <US_SSN> is on file" in on_cli.out
    assert SSN not in on_cli.out and EMAIL not in on_cli.out


async def test_feedback_text_is_redacted_without_payload_keys(gw: Any, home: Home, make_key: Any) -> None:
    consumer = make_key(Role.CONSUMER)
    upstreams = gw.in_process(**{"support-bot": gw.MockUpstream("m")})
    async with gw.client(home, _config(gw, "mask"), upstreams) as (client, _):
        request_id = await _rate(client, gw, consumer)
        comment, corrected = await _raw_feedback(home, request_id)
    assert corrected == "Your SSN <US_SSN> is on file; we wrote to <EMAIL>."
    assert comment == "it should have said <EMAIL>"
