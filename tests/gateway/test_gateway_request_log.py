"""The request log: batched writes, spill file and replay, strict mode, the loss window, no raw keys."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text

from llmops.gateway.config import RequestLogConfig
from llmops.gateway.request_log import SPILL_NAME, RequestLogRecord, RequestLogWriter
from llmops.store.home import Home
from llmops.store.schema import GatewayRequest, utcnow

pytestmark = pytest.mark.anyio


def _record(i: int) -> RequestLogRecord:
    return RequestLogRecord(
        id=f"r{i:06d}", ts=utcnow() + timedelta(microseconds=i), endpoint="chat", prompt=f"p{i}"
    )


def _ids(home: Home) -> list[str]:
    with home.store.read() as session:
        return list(session.execute(select(GatewayRequest.id).order_by(GatewayRequest.ts)).scalars())


def _hold_write_lock(home: Home, seconds: float, ready: threading.Event) -> threading.Thread:
    """Another writer keeps the request-log table locked for ``seconds``."""

    def hold() -> None:
        with home.store.transaction() as session:
            if home.store.dialect == "postgresql":
                session.execute(text("LOCK TABLE gateway_requests IN ACCESS EXCLUSIVE MODE"))
            else:
                session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: SQLite's write lock is held
            ready.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert ready.wait(10)
    return thread


async def test_relaxed_rows_land_within_the_flush_interval_without_close(home: Home, tmp_path: Path) -> None:
    config = RequestLogConfig(flush_interval_s=0.05)
    writer = RequestLogWriter(home.store, tmp_path / "spill", config)
    await writer.start()
    for i in range(100):
        await writer.submit(_record(i))
    deadline = time.monotonic() + 5  # committed within the window (plus scheduling on a busy machine)
    while len(_ids(home)) < 100 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert len(_ids(home)) == 100 and writer.pending() == 0
    await writer.close()


async def test_slow_database_spills_and_replays_in_order(home: Home, tmp_path: Path) -> None:
    config = RequestLogConfig(flush_interval_s=0.02, queue_max=20, batch_size=10)
    writer = RequestLogWriter(home.store, tmp_path / "spill", config)
    await writer.start()
    thread = _hold_write_lock(home, 1.5, threading.Event())
    for i in range(200):
        await writer.submit(_record(i))
        await asyncio.sleep(0.002)
    assert (tmp_path / "spill" / SPILL_NAME).exists() or list((tmp_path / "spill").glob("*.jsonl"))
    await asyncio.to_thread(thread.join)
    await writer.close()
    assert _ids(home) == [f"r{i:06d}" for i in range(200)]
    assert not list((tmp_path / "spill").glob("*.jsonl"))


async def test_leftover_spill_files_are_replayed_on_start(home: Home, tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    (spill / "requests.replay-00000001.jsonl").write_text("".join(_record(i).to_line() for i in range(3)))
    (spill / SPILL_NAME).write_text(
        "".join(_record(i).to_line() for i in range(2, 6))
    )  # r2 twice: replay is idempotent
    writer = RequestLogWriter(home.store, spill, RequestLogConfig(flush_interval_s=0.02))
    await writer.start()
    await writer.submit(_record(6))
    await writer.close()
    assert _ids(home) == [f"r{i:06d}" for i in range(7)]


async def test_strict_mode_commits_before_the_response(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key()
    config = gw.config(request_log={"mode": "strict", "flush_interval_s": 5.0})
    async with gw.client(home, config, gw.in_process(**{"support-bot": gw.MockUpstream("a")})) as (client, _):
        plain = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
        assert plain.status_code == 200 and _ids(home) == [plain.headers["x-request-id"]]
        streamed = await client.post(
            "/v1/chat/completions", json=gw.chat_body(stream=True), headers=gw.bearer(key)
        )
        assert streamed.text.endswith("data: [DONE]\n\n")
        assert streamed.headers["x-request-id"] in _ids(home)


@pytest.mark.slow
async def test_database_locked_for_10s_loses_no_row(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key()
    config = gw.config(request_log={"flush_interval_s": 0.05, "queue_max": 50, "batch_size": 50})
    async with gw.client(home, config, gw.in_process(**{"support-bot": gw.MockUpstream("a")})) as (
        client,
        gateway,
    ):
        assert (
            await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
        ).status_code == 200
        await asyncio.sleep(0.2)
        thread = _hold_write_lock(home, 10.0, threading.Event())
        started = time.monotonic()
        answers = []
        for _ in range(10):
            wave = await asyncio.gather(
                *(
                    client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
                    for _ in range(30)
                )
            )
            answers += wave
            await asyncio.sleep(0.3)
        assert time.monotonic() - started < 9, "requests must not wait for the locked database"
        assert all(a.status_code == 200 for a in answers)
        assert gateway.metrics.log_spilled._value.get() > 0
        await asyncio.to_thread(thread.join)
    ids = set(_ids(home))
    assert len(ids) == 301 and {a.headers["x-request-id"] for a in answers} <= ids


async def test_raw_key_appears_in_no_log_row_or_error_body(
    home: Home,
    make_key: Any,
    gw: Any,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    spilled: list[str] = []
    original_spill = RequestLogWriter._spill

    def tee(self: RequestLogWriter, records: list[RequestLogRecord]) -> None:
        spilled.extend(r.to_line() for r in records)
        original_spill(self, records)

    monkeypatch.setattr(RequestLogWriter, "_spill", tee)
    key, budget_key = make_key(rpm=3), make_key(budget_usd=0.0)
    spill = tmp_path / "spill"
    config = gw.config(request_log={"queue_max": 1, "flush_interval_s": 0.05, "spill_dir": str(spill)})
    bodies: list[str] = []
    async with gw.client(home, config, gw.in_process(**{"support-bot": gw.MockUpstream("a")})) as (client, _):
        for body, k in [
            (gw.chat_body(), key),
            (gw.chat_body(stream=True), key),
            (gw.chat_body(model="nope"), key),
            (gw.chat_body(api_base="http://x"), key),
            (gw.chat_body(), key),
            (gw.chat_body(), key),
            (gw.chat_body(), budget_key),
            (gw.chat_body(), key[:-2] + "zz"),
        ]:
            response = await client.post("/v1/chat/completions", json=body, headers=gw.bearer(k))
            bodies.append(response.text + json.dumps(dict(response.headers)))
        bodies.append((await client.get("/api/keys", headers=gw.bearer(key))).text)
        bodies.append((await client.get("/v1/models", headers={"Authorization": key})).text)
    assert spilled, "the spill path was exercised"
    written = (
        "\n".join(bodies) + caplog.text + "".join(spilled) + "".join(p.read_text() for p in spill.glob("*"))
    )
    with home.store.read() as session:
        for table in inspect(session.get_bind()).get_table_names():
            written += str(session.execute(text(f'SELECT * FROM "{table}"')).all())
    assert len(_ids(home)) == 7  # every request with a valid key has a row, refused ones too
    for secret in (key, budget_key, key[:-2] + "zz"):
        assert secret not in written and secret[10:30] not in written


async def test_odd_values_never_block_the_log(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = RequestLogWriter(home.store, tmp_path / "spill", RequestLogConfig(flush_interval_s=0.02))
    await writer.start()
    odd = _record(1)
    odd.user, odd.prompt = "u" * 5000, "nul\x00byte"
    await writer.submit(odd)
    await writer.close()
    with home.store.read() as session:
        row = session.get(GatewayRequest, "r000001")
    assert row is not None and len(row.user or "") == 200 and row.prompt == "nul\ufffdbyte"
    # a row the database refuses for another reason is kept aside, and the rest of its batch is written
    original = RequestLogWriter._insert_sync

    def refuse_r3(self: RequestLogWriter, rows: list[dict[str, Any]]) -> None:
        if any(r["id"] == "r000003" for r in rows):
            raise ValueError("refused")
        original(self, rows)

    monkeypatch.setattr(RequestLogWriter, "_insert_sync", refuse_r3)
    writer = RequestLogWriter(home.store, tmp_path / "spill", RequestLogConfig(flush_interval_s=0.02))
    await writer.start()
    for i in (2, 3, 4):
        await writer.submit(_record(i))
    await writer.close()
    assert _ids(home) == ["r000001", "r000002", "r000004"]
    assert "r000003" in (tmp_path / "spill" / "requests.rejected.jsonl").read_text()
