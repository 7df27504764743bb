"""An HTTP replica through the gateway's own keep-alive HTTP/1.1 pool (``H1Connection``).

Chosen over aiohttp by benchmark (docs/benchmarks.md): a request is one write of a prebuilt head
and body on a pooled connection and one parse of the answer; aiohttp's ``ClientSession`` builds
request, response, stream-reader and timer objects per request, which were about a sixth of the
gateway's CPU. The contract is ``Upstream``'s: ``UpstreamUnavailable`` when the replica cannot be
reached or gives no head within ``first_token_s``, ``UpstreamDisconnected`` when the body breaks off
or stalls for ``first_token_s``.

Pool: idle connections are reused last-in first-out and dropped after ``KEEPALIVE_S`` idle (below
uvicorn's 5 s, so the replica does not close one as it is taken). A reused connection that the
replica closed before answering a byte is replaced by a fresh one once: the replica never saw that
request. At most ``max_connections`` are open; further requests wait for one to come back.
``https://`` replicas are reached over TLS with the system's trust store.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import urlsplit

from llmops.gateway.config import TimeoutConfig
from llmops.gateway.h1_connection import ConnectionBroken, H1Connection, ReadTimeout
from llmops.gateway.upstreams import (
    Upstream,
    UpstreamDisconnected,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamUnavailable,
    upstream_headers,
)

KEEPALIVE_S = 4.0
HEALTH_TIMEOUT_S = 2.0


class H1Upstream(Upstream):
    def __init__(self, url: str, name: str | None = None, *, max_connections: int = 512) -> None:
        self.url = url.rstrip("/")
        self.name = name or self.url
        self.max_connections = max_connections
        parts = urlsplit(self.url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{self.url}: a replica URL is http:// or https://")
        self.host = parts.hostname
        self.port = parts.port or (443 if scheme == "https" else 80)
        self._tls = ssl.create_default_context() if scheme == "https" else None
        self.prefix = parts.path.rstrip("/")
        self._host_line = f"host: {parts.netloc}\r\n".encode("latin-1")
        self._idle: deque[H1Connection] = deque()
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def connections(self) -> int:
        """Connections open to the replica (idle or carrying an exchange)."""
        return self._open

    async def open(self, request: UpstreamRequest, timeouts: TimeoutConfig) -> UpstreamResponse:
        data = self._encode("POST", request.path, upstream_headers(request), request.body)
        conn = await self._exchange(data, timeouts.connect_s, timeouts.first_token_s)
        return UpstreamResponse(
            conn.status,
            conn.headers,
            _body(conn, timeouts.first_token_s, self.name),
            self._releaser(conn),
            lambda: conn.complete,
        )

    async def health(self, path: str) -> bool:
        data = self._encode("GET", path, {}, b"")
        try:
            conn = await self._exchange(data, HEALTH_TIMEOUT_S, HEALTH_TIMEOUT_S)
        except UpstreamUnavailable:
            return False
        try:
            async for _ in conn.chunks(HEALTH_TIMEOUT_S):
                pass
        except (ConnectionBroken, ReadTimeout):
            return False
        finally:
            self._release(conn)
        return conn.status == 200

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()
            self._open -= 1

    # ---- one exchange ----
    async def _exchange(self, data: bytes, connect_s: float, read_s: float) -> H1Connection:
        """A connection whose answer's head has arrived, or ``UpstreamUnavailable``."""
        conn = await self._acquire(connect_s)
        try:
            conn.send(data)
            await conn.head(read_s)
            return conn
        except ConnectionBroken as exc:
            self._discard(conn)
            if not (conn.reused and not conn.received):
                raise UpstreamUnavailable(f"{self.name}: {exc}") from exc
        except ReadTimeout as exc:
            self._discard(conn)
            raise UpstreamUnavailable(f"{self.name}: no answer within {read_s:g}s") from exc
        except BaseException:
            self._discard(conn)
            raise
        # the replica closed an idle connection as it was taken: it never saw the request
        conn = await self._connect(connect_s)
        try:
            conn.send(data)
            await conn.head(read_s)
            return conn
        except (ConnectionBroken, ReadTimeout) as exc:
            self._discard(conn)
            raise UpstreamUnavailable(f"{self.name}: {type(exc).__name__} {exc}".strip()) from exc
        except BaseException:
            self._discard(conn)
            raise

    def _encode(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
        lines = [f"{method} {self.prefix}{path} HTTP/1.1\r\n".encode("latin-1"), self._host_line]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise UpstreamUnavailable(f"{self.name}: header {name!r} has a line break")
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"content-length: %d\r\n\r\n" % len(body))
        lines.append(body)
        return b"".join(lines)

    # ---- the pool ----
    async def _acquire(self, connect_s: float) -> H1Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < KEEPALIVE_S and conn.reusable():
                conn.reused = True
                return conn
            self._discard(conn)
        while self._open >= self.max_connections:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass on the turn this request was given
                raise
            if self._idle:
                return await self._acquire(connect_s)
        return await self._connect(connect_s)

    async def _connect(self, connect_s: float) -> H1Connection:
        loop = asyncio.get_running_loop()
        self._open += 1
        try:
            async with asyncio.timeout(connect_s):
                _, conn = await loop.create_connection(
                    lambda: H1Connection(loop), self.host, self.port, ssl=self._tls
                )
        except TimeoutError as exc:
            self._closed()
            raise UpstreamUnavailable(f"{self.name}: no connection within {connect_s:g}s") from exc
        except OSError as exc:
            self._closed()
            raise UpstreamUnavailable(f"{self.name}: {type(exc).__name__} {exc}".strip()) from exc
        except BaseException:
            self._closed()
            raise
        return conn

    def _releaser(self, conn: H1Connection) -> Callable[[], None]:
        """``UpstreamResponse``'s close: gives the connection back once, however often it is called."""
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._release(conn)

        return release

    def _release(self, conn: H1Connection) -> None:
        conn.busy = False
        if conn.reusable():
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
            self._wake_one()
        else:
            self._discard(conn)

    def _discard(self, conn: H1Connection) -> None:
        conn.close()
        self._closed()

    def _closed(self) -> None:
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


async def _body(conn: H1Connection, read_s: float, name: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in conn.chunks(read_s):
            yield chunk
    except ReadTimeout as exc:
        raise UpstreamDisconnected(f"{name}: the replica stopped sending (read timeout)") from exc
    except ConnectionBroken as exc:
        raise UpstreamDisconnected(f"{name}: the replica broke off the response ({exc})") from exc
