"""The Upstream implementations: HTTP (h1, aiohttp, httpx) and in-process ASGI, streaming as sent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from llmops.gateway.config import TimeoutConfig
from llmops.gateway.upstream_aiohttp import AiohttpUpstream
from llmops.gateway.upstream_h1 import H1Upstream
from llmops.gateway.upstreams import AsgiUpstream, HttpUpstream, UpstreamRequest, UpstreamUnavailable

pytestmark = pytest.mark.anyio
TIMEOUTS = TimeoutConfig(connect_s=1, first_token_s=5, total_s=10)


def _request(stream: bool) -> UpstreamRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3, "stream": stream}
    return UpstreamRequest("/v1/chat/completions", json.dumps(body).encode(), "rid-1")


async def _check(upstream: Any) -> None:
    await upstream.start()
    try:
        whole = await upstream.open(_request(False), TIMEOUTS)
        payload = json.loads(await whole.read())
        await whole.aclose()
        assert whole.status == 200 and payload["choices"][0]["message"]["content"] == "r: tok tok"
        streamed = await upstream.open(_request(True), TIMEOUTS)
        assert streamed.headers["content-type"].startswith("text/event-stream")
        text = (await streamed.read()).decode()
        await streamed.aclose()
        assert text.count("data: ") == 4 and text.endswith("data: [DONE]\n\n")
        assert await upstream.health("/healthz")
    finally:
        await upstream.aclose()


@pytest.mark.parametrize("client", [H1Upstream, AiohttpUpstream, HttpUpstream])
async def test_http_upstreams(gw: Any, client: Any) -> None:
    mock = gw.MockUpstream("r")
    with gw.serve(mock) as url:
        await _check(client(url))
    assert mock.calls[0]["messages"][0]["content"] == "x"
    dead = client("http://127.0.0.1:9")
    with pytest.raises(UpstreamUnavailable, match=r"127\.0\.0\.1:9"):
        await dead.open(_request(False), TIMEOUTS)
    assert not await dead.health("/healthz")
    await dead.aclose()


async def test_asgi_upstream_streams_chunks_as_they_are_sent(gw: Any) -> None:
    await _check(AsgiUpstream(gw.MockUpstream("r"), name="local"))
    slow = AsgiUpstream(gw.MockUpstream("r", token_delay=0.3), name="slow")
    response = await slow.open(_request(True), TIMEOUTS)
    first = await asyncio.wait_for(anext(response.body), 0.25)  # long before the whole answer (0.6 s)
    assert b"r:" in first
    await response.aclose()
