"""One keep-alive HTTP/1.1 connection to a replica: an asyncio protocol whose answers httptools parses.

A connection carries one exchange at a time. ``send`` writes the request head and body in one
``transport.write`` (one system call), ``head`` waits for the status line and headers, and ``chunks``
yields the body as it arrives (chunked transfer decoded, nothing decompressed). A whole answer
that arrives in one read costs one parse and one wake-up; nothing is awaited that is already there.
When more than ``HIGH_WATER`` bytes wait unread (a slow client behind a stream), reading pauses
until the consumer catches up.

Failures are typed for the caller: ``ConnectionBroken`` (the peer closed or sent something that is
not HTTP) and ``ReadTimeout`` (nothing arrived for ``read_timeout`` seconds); the upstream maps them
to ``UpstreamUnavailable`` before the head and ``UpstreamDisconnected`` after it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

import httptools

HIGH_WATER = 256 * 1024


class ConnectionBroken(Exception):
    """The replica closed the connection or answered with something that is not HTTP/1.1."""


class ReadTimeout(Exception):
    """Nothing arrived from the replica within the read timeout."""


class H1Connection(asyncio.Protocol):
    """A keep-alive connection: ``send``, ``head``, ``chunks``, then ``reusable`` says if it can go back."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.idle_since = 0.0
        self.reused = False  # carried an earlier exchange
        self.busy = False  # an exchange is under way (bytes while idle mean a broken peer)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.received = False  # any byte of the current answer
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None
        self.closed_by_peer = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._framed = False  # content-length or chunked: the end is known without EOF

    # ---- asyncio.Protocol ----
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            self.closed_by_peer = True
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionBroken(f"invalid HTTP answer ({exc})"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed_by_peer = True
        if self.head_done and not self.complete and not self._framed and exc is None:
            self.complete = True  # an answer delimited by the end of the connection
            self._wake()
            return
        if not self.complete:
            reason = type(exc).__name__ if exc is not None else "connection closed"
            self._fail(ConnectionBroken(reason))

    # ---- httptools callbacks ----
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.head_done = True
        encoding = self.headers.get("transfer-encoding", "")
        self._framed = "content-length" in self.headers or "chunked" in encoding.lower()
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # reset once the callback returns
        self.complete = True
        self._wake()

    # ---- the exchange ----
    def send(self, data: bytes) -> None:
        self._reset()
        self.busy = True
        assert self.transport is not None
        self.transport.write(data)

    async def head(self, read_timeout: float) -> None:
        while not self.head_done:
            await self._wait(read_timeout)

    async def chunks(self, read_timeout: float) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= HIGH_WATER // 2 and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                yield chunk
            elif self.complete:
                return
            else:
                await self._wait(read_timeout)

    def reusable(self) -> bool:
        return (
            self.complete
            and not self._chunks
            and not self.closed_by_peer
            and self.error is None
            and self.keep_alive
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # ---- waiting ----
    async def _wait(self, read_timeout: float) -> None:
        if self.error is not None:
            raise self.error
        waiter = self._waiter = self.loop.create_future()
        timer = self.loop.call_later(read_timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self.error is not None and not self._chunks and not self.complete:
            raise self.error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout())
