"""uvicorn with the gateway's coalescing protocol: one write per turn, answers unchanged."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from tests.servers import serving

from llmops.gateway.http_server import CoalescingHttpToolsProtocol, CoalescingTransport, server_options

pytestmark = pytest.mark.anyio


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


async def test_writes_of_one_turn_leave_as_one_and_close_sends_them_first() -> None:
    raw = _Transport()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"body")
    assert raw.writes == [] and transport.get_write_buffer_size() == 23
    await asyncio.sleep(0)
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    transport.write(b"last")
    transport.close()
    assert raw.writes[-1] == b"last" and raw.closed
    await asyncio.sleep(0)
    assert len(raw.writes) == 2  # nothing written twice


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for part in (b"one ", b"two"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


async def test_uvicorn_answers_whole_streamed_head_and_closing_requests_as_before() -> None:
    options = {k: v for k, v in server_options().items() if k != "loop"}
    assert options["http"] is CoalescingHttpToolsProtocol
    with serving(_app, lifespan="off", **options) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(3):  # keep-alive: the same connection answers again
                assert (await client.get("/")).text == "hello"
            head = await client.head("/")
            assert head.status_code == 200 and head.headers["content-length"] == "5" and head.content == b""
            closing = await client.get("/", headers={"connection": "close"})
            assert closing.text == "hello"
            async with client.stream("GET", "/stream") as streamed:
                parts = [part async for part in streamed.aiter_raw()]
            assert b"".join(parts) == b"one two" and len(parts) >= 2  # each event as it was sent


async def test_a_complete_response_leaves_before_the_rest_of_its_task_runs() -> None:
    answered = threading.Event()
    waited: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})
        waited.append(answered.wait(5))  # blocks the server's loop: only a write made already got out

    options = {k: v for k, v in server_options().items() if k != "loop"}
    with serving(app, lifespan="off", **options) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/")).text == "hello"
            answered.set()
            await asyncio.sleep(0.1)
    assert waited == [True]
