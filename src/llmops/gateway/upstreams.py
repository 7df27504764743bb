"""``Upstream``: one replica as the router sees it; HTTP and in-process ASGI implementations.

Contract: ``open`` sends one request and returns once the response head has arrived (status and
headers), with the body as an async iterator of byte chunks; it raises ``UpstreamUnavailable`` when
the replica cannot be reached. Every implementation sends ``upstream_headers(request)``, which
carries the trace context. A body iterator that fails part-way raises ``UpstreamDisconnected``.
``UpstreamResponse.aclose`` must always be called. ``health`` probes the replica's health path.

Why an ASGI app and not an engine ``Backend`` for in-process replicas: the serve app already owns
the translation between the OpenAI protocol and the engine, so the gateway speaks one protocol to
every replica (local or remote), never duplicates that translation, and never imports the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from llmops.gateway.config import TimeoutConfig
from llmops.monitor.tracing import inject_trace_context

AsgiApp = Callable[..., Any]


class UpstreamUnavailable(Exception):
    """The replica could not be reached or refused the connection (safe to retry elsewhere)."""


class UpstreamDisconnected(Exception):
    """The replica failed after its response had started (not safe to retry)."""


@dataclass(frozen=True)
class UpstreamRequest:
    path: str
    body: bytes
    request_id: str
    headers: Mapping[str, str] = field(default_factory=dict)


def upstream_headers(request: UpstreamRequest) -> dict[str, str]:
    """Headers of a request to a replica: JSON, the gateway's request id, and the W3C
    ``traceparent`` of the current span when tracing is on (so the replica's spans join the trace)."""
    headers = {"content-type": "application/json", "x-request-id": request.request_id, **request.headers}
    inject_trace_context(headers)
    return headers


@dataclass
class UpstreamResponse:
    status: int
    headers: Mapping[str, str]
    body: AsyncIterator[bytes]
    _close: Callable[[], Any] | None = None
    # whether every byte of the answer has arrived (reading the rest cannot wait); None: not known
    arrived: Callable[[], bool] | None = None

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.body])

    async def aclose(self) -> None:
        if self._close is not None:
            result = self._close()
            if asyncio.iscoroutine(result):
                await result


class Upstream(ABC):
    """One replica: send a request, stream the answer, report health."""

    name: str

    @abstractmethod
    async def open(self, request: UpstreamRequest, timeouts: TimeoutConfig) -> UpstreamResponse: ...

    @abstractmethod
    async def health(self, path: str) -> bool: ...

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class HttpUpstream(Upstream):
    """A replica over HTTP, through one pooled ``httpx.AsyncClient`` per replica."""

    def __init__(self, url: str, name: str | None = None, *, max_connections: int = 512) -> None:
        self.url = url.rstrip("/")
        self.name = name or self.url
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.AsyncClient(base_url=self.url, limits=limits, timeout=None)

    async def open(self, request: UpstreamRequest, timeouts: TimeoutConfig) -> UpstreamResponse:
        timeout = httpx.Timeout(
            connect=timeouts.connect_s, read=timeouts.first_token_s, write=timeouts.connect_s, pool=None
        )
        headers = upstream_headers(request)
        req = self._client.build_request("POST", request.path, content=request.body, headers=headers)
        req.extensions["timeout"] = timeout.as_dict()
        try:
            resp = await self._client.send(req, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise UpstreamUnavailable(f"{self.name}: {type(exc).__name__} {exc}".strip()) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailable(f"{self.name}: no answer within {timeouts.first_token_s:g}s") from exc
        return UpstreamResponse(resp.status_code, resp.headers, _http_body(resp, self.name), resp.aclose)

    async def health(self, path: str) -> bool:
        try:
            resp = await self._client.get(path, timeout=2.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    async def aclose(self) -> None:
        await self._client.aclose()


async def _http_body(resp: httpx.Response, name: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.aiter_raw():
            yield chunk
    except httpx.TimeoutException as exc:
        raise UpstreamDisconnected(f"{name}: the replica stopped sending (read timeout)") from exc
    except httpx.HTTPError as exc:
        raise UpstreamDisconnected(
            f"{name}: the replica broke off the response ({type(exc).__name__})"
        ) from exc


class AsgiUpstream(Upstream):
    """An in-process replica: an ASGI app (the serve app of one model) called without a socket.

    Unlike ``httpx.ASGITransport`` it streams: body chunks reach the gateway as the app sends them.
    ``start``/``aclose`` run the app's lifespan, so its backend starts and stops with the gateway.
    """

    def __init__(self, app: AsgiApp, name: str = "in-process", *, lifespan: bool = True) -> None:
        self.app = app
        self.name = name
        self._lifespan = lifespan
        self._lifespan_task: asyncio.Task[None] | None = None
        self._lifespan_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def start(self) -> None:
        if not self._lifespan or self._lifespan_task is not None:
            return
        done: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._lifespan_task = asyncio.create_task(self._run_lifespan(scope, done))
        await self._lifespan_queue.put({"type": "lifespan.startup"})
        message = await done.get()
        if message["type"] == "lifespan.startup.failed":
            raise UpstreamUnavailable(f"{self.name}: start-up failed: {message.get('message', '')}")

    async def _run_lifespan(self, scope: dict[str, Any], done: asyncio.Queue[dict[str, Any]]) -> None:
        async def send(message: dict[str, Any]) -> None:
            await done.put(message)

        try:
            await self.app(scope, self._lifespan_queue.get, send)
        except Exception:  # apps without lifespan support raise; that is allowed by the spec
            await done.put({"type": "lifespan.startup.complete"})

    async def aclose(self) -> None:
        if self._lifespan_task is not None and not self._lifespan_task.done():
            await self._lifespan_queue.put({"type": "lifespan.shutdown"})
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(self._lifespan_task, 10)

    async def open(self, request: UpstreamRequest, timeouts: TimeoutConfig) -> UpstreamResponse:
        headers = upstream_headers(request)
        call = _AsgiCall(self.app, _scope("POST", request.path, headers), request.body)
        return await call.start(self.name)

    async def health(self, path: str) -> bool:
        call = _AsgiCall(self.app, _scope("GET", path, {}), b"")
        try:
            resp = await call.start(self.name)
            await resp.read()
            await resp.aclose()
        except (UpstreamUnavailable, UpstreamDisconnected):
            return False
        return resp.status == 200


def _scope(method: str, path: str, headers: Mapping[str, str]) -> dict[str, Any]:
    raw, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw,
        "raw_path": raw.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 0),
        "server": ("in-process", 80),
        "state": {},
    }


class _AsgiCall:
    """One request to an ASGI app, its messages relayed through a queue as they are sent."""

    def __init__(self, app: AsgiApp, scope: dict[str, Any], body: bytes) -> None:
        self.app, self.scope, self.body = app, scope, body
        self.queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        self.disconnected = asyncio.Event()
        self.body_sent = False
        self.task: asyncio.Task[None] | None = None

    async def _receive(self) -> dict[str, Any]:
        if not self.body_sent:
            self.body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if self.disconnected.is_set():
            raise OSError("client disconnected")
        await self.queue.put(message)

    async def _run(self) -> None:
        try:
            await self.app(self.scope, self._receive, self._send)
            await self.queue.put(None)
        except BaseException as exc:
            await self.queue.put(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def start(self, name: str) -> UpstreamResponse:
        self.task = asyncio.create_task(self._run())
        head = await self.queue.get()
        if not isinstance(head, dict) or head.get("type") != "http.response.start":
            await self.close()
            raise UpstreamUnavailable(f"{name}: the in-process replica failed before answering: {head!r}")
        headers = {k.decode().lower(): v.decode() for k, v in head.get("headers", [])}
        return UpstreamResponse(int(head["status"]), headers, self._body(name), self.close)

    async def _body(self, name: str) -> AsyncIterator[bytes]:
        while True:
            message = await self.queue.get()
            if message is None:
                return
            if isinstance(message, BaseException):
                raise UpstreamDisconnected(f"{name}: the in-process replica failed mid-response") from message
            if message.get("type") == "http.response.body":
                if message.get("body"):
                    yield bytes(message["body"])
                if not message.get("more_body", False):
                    return

    async def close(self) -> None:
        self.disconnected.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
