"""How uvicorn serves the gateway: uvloop, httptools, and one socket write per answer.

uvicorn writes a response's status line and headers in one ``transport.write`` and its body in
another: two system calls for every whole answer, which were about a tenth of the gateway's CPU.
``CoalescingHttpToolsProtocol`` hands uvicorn a transport that gathers the writes made during one
turn of the event loop and sends them together at the end of that turn (``call_soon``), so a head
and the body sent right after it leave in one write; a stream's later events go out as they come
(one turn later at most). A response's last write goes out at once: when uvicorn marks the
response complete, what was gathered is sent there and then, not a loop turn later (so the answer
leaves before the rest of the request's task runs: whatever the app does after its last ``send``,
and uvicorn's own bookkeeping). Closing the transport sends what was gathered first.

``server_options()`` is what every ``uvicorn.run`` of the gateway passes (the CLI, the benchmarks):
this protocol, uvloop when installed, and no uvicorn access log (the gateway's request log has
every request; at the ``warning`` level it runs at, uvicorn's access log printed nothing but still
built each line).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes of one event-loop turn go out as one write; the rest is passed on."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(chunk) for chunk in self._pending)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a ``CoalescingTransport``; a complete
    response is sent at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.coalescing = CoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, self.coalescing))  # every other call is passed on

    def on_response_complete(self) -> None:
        self.coalescing.flush()
        super().on_response_complete()


def server_options() -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run``/``uvicorn.Config`` for the gateway."""
    return {"loop": "auto", "http": CoalescingHttpToolsProtocol, "access_log": False}
