"""An HTTP replica through aiohttp: one pooled ``ClientSession`` per replica, created in the loop.

Chosen over httpx by benchmark for the gateway's hot path (see docs/benchmarks.md): httpcore's
pool does work per pooled connection on every request, which grows with concurrency.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import aiohttp

from llmops.gateway.config import TimeoutConfig
from llmops.gateway.upstreams import (
    Upstream,
    UpstreamDisconnected,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamUnavailable,
    upstream_headers,
)


class AiohttpUpstream(Upstream):
    def __init__(self, url: str, name: str | None = None, *, max_connections: int = 512) -> None:
        self.url = url.rstrip("/")
        self.name = name or self.url
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                base_url=self.url + "/", connector=connector, auto_decompress=False
            )
        return self._session

    async def start(self) -> None:
        self._client()

    async def open(self, request: UpstreamRequest, timeouts: TimeoutConfig) -> UpstreamResponse:
        timeout = _client_timeout(timeouts.connect_s, timeouts.first_token_s)
        headers = upstream_headers(request)
        try:
            resp = await self._client().post(
                request.path.lstrip("/"), data=request.body, headers=headers, timeout=timeout
            )
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnavailable(f"{self.name}: {type(exc).__name__} {exc}".strip()) from exc
        except TimeoutError as exc:
            raise UpstreamUnavailable(f"{self.name}: no answer within {timeouts.first_token_s:g}s") from exc
        headers_out = {k.lower(): v for k, v in resp.headers.items()}
        return UpstreamResponse(resp.status, headers_out, _body(resp, self.name), resp.release)

    async def health(self, path: str) -> bool:
        try:
            async with self._client().get(path.lstrip("/"), timeout=aiohttp.ClientTimeout(total=2)) as resp:
                await resp.read()
                return resp.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@functools.lru_cache(maxsize=64)
def _client_timeout(connect_s: float, first_token_s: float) -> aiohttp.ClientTimeout:
    """One (immutable) timeout object per deployment's settings, not one per request."""
    return aiohttp.ClientTimeout(total=None, connect=connect_s, sock_read=first_token_s)


async def _body(resp: aiohttp.ClientResponse, name: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.content.iter_any():
            yield chunk
    except TimeoutError as exc:
        raise UpstreamDisconnected(f"{name}: the replica stopped sending (read timeout)") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamDisconnected(
            f"{name}: the replica broke off the response ({type(exc).__name__})"
        ) from exc
