"""The gateway's own HTTP/1.1 client: connections reused, a replica's idle close survived, stalls typed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from llmops.gateway.config import TimeoutConfig
from llmops.gateway.upstream_h1 import H1Upstream
from llmops.gateway.upstreams import UpstreamDisconnected, UpstreamRequest, UpstreamUnavailable

pytestmark = pytest.mark.anyio
TIMEOUTS = TimeoutConfig(connect_s=1, first_token_s=5, total_s=10)
ANSWER = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


def _request(stream: bool = False) -> UpstreamRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "stream": stream}
    return UpstreamRequest("/v1/chat/completions", json.dumps(body).encode(), "rid-1")


async def _ask(upstream: H1Upstream, timeouts: TimeoutConfig = TIMEOUTS, stream: bool = False) -> bytes:
    response = await upstream.open(_request(stream), timeouts)
    try:
        assert response.status == 200
        return await response.read()
    finally:
        await response.aclose()


async def test_one_connection_carries_requests_one_after_another(gw: Any) -> None:
    mock = gw.MockUpstream("r")
    with gw.serve(mock) as url:
        upstream = H1Upstream(url)
        for stream in (False, True, False):
            assert b" tok" in await _ask(upstream, stream=stream)
        assert upstream.connections == 1 and len(mock.calls) == 3
        await upstream.aclose()
        assert upstream.connections == 0


@asynccontextmanager
async def _closes_on_second_request() -> AsyncIterator[tuple[str, list[int]]]:
    """A replica that answers the first request of a connection and closes it at the second
    without answering (as a server does with a connection it timed out just as it was reused)."""
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for turn in range(2):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(v)
                for k, _, v in (line.partition(b": ") for line in head.split(b"\r\n"))
                if k.lower() == b"content-length"
            )
            await reader.readexactly(length)
            if turn == 1:
                break
            served.append(1)
            writer.write(ANSWER)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", served
    finally:
        server.close()


async def test_a_reused_connection_closed_before_answering_is_replaced_once() -> None:
    async with _closes_on_second_request() as (url, served):
        upstream = H1Upstream(url)
        assert await _ask(upstream) == b'{"ok":true}'
        assert await _ask(upstream) == b'{"ok":true}'  # the second went out again on a new connection
        assert len(served) == 2
        await upstream.aclose()


async def test_no_head_in_time_is_unavailable_and_a_stalled_body_disconnected(gw: Any) -> None:
    short = TimeoutConfig(connect_s=1, first_token_s=0.2, total_s=10)
    with gw.serve(gw.MockUpstream("slow-head", first_delay=1.0)) as url:
        upstream = H1Upstream(url)
        with pytest.raises(UpstreamUnavailable, match=r"no answer within 0\.2s"):
            await upstream.open(_request(), short)
        assert upstream.connections == 0  # a connection with an answer still coming is not reused
    with gw.serve(gw.MockUpstream("slow-body", token_delay=1.0)) as url:
        upstream = H1Upstream(url)
        response = await upstream.open(_request(stream=True), short)
        with pytest.raises(UpstreamDisconnected, match="stopped sending"):
            await response.read()
        await response.aclose()
        assert upstream.connections == 0


async def test_a_replica_that_closes_mid_answer_is_disconnected() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    upstream = H1Upstream(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    try:
        response = await upstream.open(_request(), TIMEOUTS)
        with pytest.raises(UpstreamDisconnected, match="broke off"):
            await response.read()
        await response.aclose()
    finally:
        server.close()
    assert upstream.connections == 0


async def test_requests_past_max_connections_wait_for_one(gw: Any) -> None:
    with gw.serve(gw.MockUpstream("r", token_delay=0.05)) as url:
        upstream = H1Upstream(url, max_connections=2)
        answers = await asyncio.gather(*(_ask(upstream) for _ in range(6)))
        assert all(b" tok" in answer for answer in answers)
        assert upstream.connections == 2
        await upstream.aclose()
