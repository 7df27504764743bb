"""A whole answer goes out before its request is recorded (relaxed log), after it in strict mode."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.servers import serving

from llmops.gateway.answer import RecordedResponse
from llmops.gateway.app import build_app
from llmops.gateway.http_server import server_options
from llmops.gateway.service import build_gateway
from llmops.store.home import Home
from llmops.store.schema import GatewayRequest

pytestmark = pytest.mark.anyio


def _logged(home: Home, request_id: str) -> GatewayRequest | None:
    with home.store.read() as session:
        return session.execute(
            select(GatewayRequest).where(GatewayRequest.id == request_id)
        ).scalar_one_or_none()


async def _answer_then_record(
    home: Home, key: str, gw: Any, mode: str
) -> tuple[list[bool], httpx.Response, float]:
    """One chat completion through uvicorn: whether the request's recording saw the client holding
    the answer already (it waits up to 1 s for that), the answer, and the requests counted."""
    config = gw.config(request_log={"mode": mode, "flush_interval_s": 0.05})
    gateway = build_gateway(
        config,
        home,
        in_process=gw.in_process(**{"support-bot": gw.MockUpstream("a")}),
        active_health_checks=False,
    )
    answered, saw = threading.Event(), []
    record = gateway.pipeline.record

    async def recording_after_the_client_has_it(ctx: Any, settled: Any) -> None:
        saw.append(await asyncio.to_thread(answered.wait, 1.0))
        await record(ctx, settled)

    gateway.pipeline.record = recording_after_the_client_has_it  # type: ignore[method-assign]
    options = {k: v for k, v in server_options().items() if k != "loop"}
    with serving(build_app(gateway), **options) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            response = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
            answered.set()
            deadline = time.monotonic() + 5
            while _logged(home, response.headers["x-request-id"]) is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        counted = gateway.metrics.child("requests", "support-bot", "200")._value.get()
    return saw, response, counted


async def test_relaxed_mode_answers_first_then_counts_and_logs_the_request(
    home: Home, make_key: Any, gw: Any
) -> None:
    saw, response, counted = await _answer_then_record(home, make_key(), gw, "relaxed")
    assert response.status_code == 200 and saw == [True]  # the client had the answer first
    assert counted == 1
    row = _logged(home, response.headers["x-request-id"])
    assert row is not None and row.status == 200 and row.completion_tokens == 5 and row.cost_usd > 0


async def test_strict_mode_records_the_request_before_the_answer(home: Home, make_key: Any, gw: Any) -> None:
    saw, response, counted = await _answer_then_record(home, make_key(), gw, "strict")
    assert response.status_code == 200 and saw == [False]  # recorded while the client still waited
    assert counted == 1
    assert _logged(home, response.headers["x-request-id"]) is not None


async def test_a_request_is_recorded_when_its_answer_cannot_be_sent() -> None:
    recorded: list[bool] = []

    async def record() -> None:
        recorded.append(True)

    async def send(message: Any) -> None:
        raise OSError("the client went away")

    with pytest.raises(OSError):
        await RecordedResponse(b"{}", 200, "application/json", record)({"type": "http"}, None, send)
    assert recorded == [True]
