"""Defects of the gateway's security review (issue 19), each reproduced through the HTTP app.

Shadow rows protected like main ones; fallbacks limited to what the key may use and served under
the serving deployment's own policy; generic upstream errors for consumers; the cache keyed by
endpoint.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import bindparam, text

from llmops.gateway.config import RequestLogConfig
from llmops.gateway.log_protection import LogProtection
from llmops.gateway.request_log import SPILL_NAME, RequestLogRecord, RequestLogWriter
from llmops.security.payload_crypto import PREFIX, PayloadCipher
from llmops.security.payload_protection import PayloadProtection
from llmops.security.redaction import Redactor
from llmops.security.roles import Role
from llmops.settings import reset_settings
from llmops.store.home import Home
from llmops.store.schema import utcnow

pytestmark = pytest.mark.anyio
CARD, EMAIL = "4111 1111 1111 1111", "alice.smith@example.com"
SECRET_PROMPT = f"charge card {CARD} and mail the receipt to {EMAIL}"
BLOCKED = "the forbidden word"


async def _raw_rows(home: Home, *ids: str) -> dict[str, dict[str, Any]]:
    """The rows straight from the database, bypassing every llmops reader; waits for all of them."""
    deadline = time.monotonic() + 10
    while True:
        with home.store.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT * FROM gateway_requests WHERE id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": list(ids)},
            ).mappings()
            found = {row["id"]: dict(row) for row in rows}
        if len(found) == len(ids) or time.monotonic() > deadline:
            assert len(found) == len(ids), f"rows missing: {set(ids) - set(found)}"
            return found
        await asyncio.sleep(0.05)


async def _ask(client: Any, gw: Any, key: str, model: str, **extra: Any) -> Any:
    body = gw.chat_body(model, **extra)
    return await client.post("/v1/chat/completions", json=body, headers=gw.bearer(key))


async def _quiet_shadows(gateway: Any) -> None:
    deadline = time.monotonic() + 10
    while gateway.pipeline.shadow._tasks and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


# ---- item 1: shadow rows go through the same protection as main rows ----
async def test_shadow_rows_are_redacted_and_encrypted_like_main_rows(
    gw: Any, home: Home, make_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload_key = Fernet.generate_key()
    monkeypatch.setenv("LLMOPS_PAYLOAD_KEYS", payload_key.decode())
    reset_settings()
    shadow = {"arm": {"name": "candidate"}, "sample_rate": 1.0}
    config = gw.config(
        gw.deployment("support-bot", shadow=shadow), request_log={"flush_interval_s": 0.05, "redact": "mask"}
    )
    # the answers carry personal data too: each mock starts its answer with its name
    mocks = gw.in_process(
        **{"support-bot": gw.MockUpstream(EMAIL), "support-bot__candidate": gw.MockUpstream(EMAIL)}
    )
    consumer, developer, deployer = make_key(Role.CONSUMER), make_key(Role.DEVELOPER), make_key(Role.DEPLOYER)
    body = {"model": "support-bot", "messages": [{"role": "user", "content": SECRET_PROMPT}], "max_tokens": 3}
    async with gw.client(home, config, mocks) as (client, gateway):
        answered = await client.post("/v1/chat/completions", json=body, headers=gw.bearer(consumer))
        assert answered.status_code == 200
        main_id = answered.headers["x-request-id"]
        await _quiet_shadows(gateway)
        rows = await _raw_rows(home, main_id, f"{main_id}.shadow")
        cipher = PayloadCipher([payload_key])
        for row in rows.values():
            for column in ("prompt", "completion"):
                stored = row[column]
                assert stored is not None and stored.startswith(PREFIX), (row["id"], column)
                plain = cipher.decrypt(stored) or ""
                assert CARD not in plain and EMAIL not in plain and "<EMAIL>" in plain, (row["id"], plain)

        for reader in (developer, deployer):
            listed = await client.get("/api/requests", headers=gw.bearer(reader))
            assert listed.status_code == 200 and len(listed.json()) == 2
            assert CARD not in listed.text and EMAIL not in listed.text
            shown = await client.get(f"/api/requests/{main_id}.shadow", headers=gw.bearer(reader))
            assert CARD not in shown.text and EMAIL not in shown.text
            for needle in ("alice.smith", "4111"):
                found = await client.get("/api/requests", params={"text": needle}, headers=gw.bearer(reader))
                assert found.status_code == 200 and found.json() == [], needle


async def test_spilled_rows_are_protected_before_they_reach_the_disk(home: Home, tmp_path: Path) -> None:
    config = RequestLogConfig(queue_max=1, redact="mask")
    cipher = PayloadCipher([Fernet.generate_key()])
    protection = LogProtection(payload=PayloadProtection("mask", Redactor.from_settings(), cipher))
    writer = RequestLogWriter(home.store, tmp_path / "spill", config, protection=protection)
    for index in range(3):  # not started and the queue holds one row: the others spill
        await writer.submit(
            RequestLogRecord(
                id=f"r{index}", ts=utcnow(), endpoint="chat", prompt=SECRET_PROMPT, completion=EMAIL
            )
        )
    writer._close_spill()
    spilled = (tmp_path / "spill" / SPILL_NAME).read_text()
    assert spilled.count(PREFIX) == 4 and CARD not in spilled and EMAIL not in spilled
    await writer.start()
    await writer.close()  # replays the spill file as written: protected, not protected twice
    rows = await _raw_rows(home, "r0", "r1", "r2")
    assert all((cipher.decrypt(r["completion"]) or "") == "<EMAIL>" for r in rows.values())


# ---- item 2: fallbacks only to deployments the key may use, under their own policy ----
def _fallback_config(gw: Any, **other: Any) -> Any:
    cheap = gw.deployment("cheap", fallbacks=["other"], max_retries=0, price={"free": True})
    priced = {"input_usd_per_1k_tokens": 10.0, "output_usd_per_1k_tokens": 20.0}
    return gw.config(cheap, gw.deployment("other", price=priced, **other))


def _fallback_mocks(gw: Any) -> tuple[dict[str, list[Any]], Any]:
    other = gw.MockUpstream("other")
    return gw.in_process(cheap=gw.MockUpstream("cheap", fail_status=503), other=other), other


async def test_a_fallback_the_key_may_not_use_never_serves_it(gw: Any, home: Home, make_key: Any) -> None:
    key = make_key(models=("cheap",))
    mocks, other = _fallback_mocks(gw)
    async with gw.client(home, _fallback_config(gw), mocks) as (client, _):
        direct = await _ask(client, gw, key, "other")
        assert direct.status_code == 404
        refused = await _ask(client, gw, key, "cheap")
    assert refused.status_code in (502, 503) and other.calls == []
    row = (await _raw_rows(home, refused.headers["x-request-id"]))[refused.headers["x-request-id"]]
    assert row["deployment"] == "cheap" and row["cost_usd"] == 0


async def test_a_fallback_serves_under_its_own_price_limits_and_guardrails(
    gw: Any, home: Home, make_key: Any
) -> None:
    key = make_key(models=("cheap", "other"))
    guardrails = {"mode": "block", "blocked_terms": ["forbidden"]}
    mocks, other = _fallback_mocks(gw)
    config = _fallback_config(gw, rpm=2, guardrails=guardrails)
    async with gw.client(home, config, mocks) as (client, _):
        served = await _ask(client, gw, key, "cheap")
        assert served.status_code == 200
        assert served.json()["choices"][0]["message"]["content"].startswith("other")
        body = gw.chat_body("cheap", messages=[{"role": "user", "content": BLOCKED}])
        blocked = await client.post("/v1/chat/completions", json=body, headers=gw.bearer(key))
        assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "guardrail_blocked"
        limited = await _ask(client, gw, key, "cheap")
        assert limited.status_code == 429 and "'other'" in limited.json()["error"]["message"]
    assert len(other.calls) == 1
    ids = [r.headers["x-request-id"] for r in (served, blocked, limited)]
    rows = await _raw_rows(home, *ids)
    assert rows[ids[0]]["deployment"] == "other" and rows[ids[0]]["cost_usd"] > 0.01
    assert rows[ids[1]]["deployment"] == "other" and "blocked_terms" in rows[ids[1]]["error"]


async def test_a_fallback_is_held_to_the_budget_at_its_own_price(gw: Any, home: Home, make_key: Any) -> None:
    key = make_key(models=("cheap", "other"), budget_usd=0.001)
    mocks, other = _fallback_mocks(gw)
    async with gw.client(home, _fallback_config(gw), mocks) as (client, _):
        refused = await _ask(client, gw, key, "cheap")
    assert refused.status_code == 429 and "budget" in refused.json()["error"]["message"]
    assert other.calls == []


# ---- item 5: consumers get a generic message; operators keep the detail ----
async def test_upstream_failures_reach_consumers_without_addresses_or_upstream_text(
    gw: Any, home: Home, make_key: Any
) -> None:
    key = make_key()
    down = gw.deployment("down", upstreams=[{"url": "http://127.0.0.1:18799"}], max_retries=0)
    config = gw.config(down, gw.deployment("broken", max_retries=0), gw.deployment("busy", max_retries=0))
    mocks = gw.in_process(
        broken=gw.MockUpstream("internal-10.0.0.7", fail_status=500),
        busy=gw.MockUpstream("internal-10.0.0.8", fail_status=503),
    )
    async with gw.client(home, config, mocks) as (client, _):
        answers = {
            name: await client.post("/v1/chat/completions", json=gw.chat_body(name), headers=gw.bearer(key))
            for name in ("down", "broken", "busy")
        }
    for name, answer in answers.items():
        request_id = answer.headers["x-request-id"]
        assert answer.status_code in (502, 503), name
        assert request_id in answer.json()["error"]["message"], name
        for leak in ("127.0.0.1", "18799", "internal-10.0.0", "failing", "Cannot connect"):
            assert leak not in answer.text, (name, leak)
    rows = await _raw_rows(home, *(a.headers["x-request-id"] for a in answers.values()))
    errors = {row["deployment"]: row["error"] or "" for row in rows.values()}
    assert "127.0.0.1:18799" in errors["down"]
    assert "internal-10.0.0.7 failing" in errors["broken"] and "internal-10.0.0.8 failing" in errors["busy"]


# ---- bug: the cache key names the endpoint ----
async def test_the_cache_never_answers_a_completion_with_a_chat_completion(
    gw: Any, home: Home, make_key: Any
) -> None:
    key = make_key()
    config = gw.config(cache={"enabled": True})
    body = {
        "model": "support-bot",
        "messages": [{"role": "user", "content": "hi"}],
        "prompt": "hi",
        "max_tokens": 3,
        "temperature": 0,
    }
    async with gw.client(home, config, gw.in_process(**{"support-bot": gw.MockUpstream("m")})) as (client, _):
        chat = await client.post("/v1/chat/completions", json=body, headers=gw.bearer(key))
        assert chat.status_code == 200 and chat.json()["object"] == "chat.completion"
        again = await client.post("/v1/chat/completions", json=body, headers=gw.bearer(key))
        assert again.headers.get("x-llmops-cache") == "hit"
        completion = await client.post("/v1/completions", json=body, headers=gw.bearer(key))
    assert completion.status_code == 200 and completion.json()["object"] == "text_completion"
    assert completion.headers.get("x-llmops-cache") != "hit"
