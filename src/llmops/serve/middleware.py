"""Pure ASGI middleware of a replica: request ids (with a last-resort 500) and the body-size limit.

``RequestIdMiddleware`` gives every answer an ``x-request-id``: the caller's when it is well formed
(so a gateway's id follows the request), a fresh one otherwise; it is also put in the request's
state for handlers and logs. An exception no handler mapped becomes an OpenAI-shaped 500 carrying
that id, never a stack trace.

``BodyLimitMiddleware`` reads the body before the app does, counting bytes as they arrive (a
missing or false ``Content-Length`` does not get past it), answers 413 as soon as the limit is
passed, and replays the body to the app; later ``receive`` calls go to the server, so handlers can
still see the client disconnect.
"""

from __future__ import annotations

import logging
import re
import uuid

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops.errors import InvalidInput, LLMOpsError, PayloadTooLarge

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_WELL_FORMED_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


async def send_error(error: LLMOpsError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with ``error``'s status, OpenAI body and headers, straight from middleware."""
    response = JSONResponse(error.to_body(), status_code=error.status_code, headers=error.headers())
    await response(scope, receive, send)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def incoming_request_id(scope: Scope) -> str | None:
    raw = _header(scope, REQUEST_ID_HEADER.encode())
    if raw is None:
        return None
    text = raw.decode("latin-1")
    return text if _WELL_FORMED_ID.fullmatch(text) else None


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error in request %s", request_id)
            if started:
                raise
            error = LLMOpsError(f"internal error; quote request id {request_id} when reporting it")
            await send_error(error, scope, receive, send_with_id)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"request body is larger than the {self.max_bytes} bytes this server accepts",
            code="request_too_large",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_error(InvalidInput("Content-Length is not a number"), scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await send_error(self._too_large(), scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away before sending it all
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_error(self._too_large(), scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _Replay(b"".join(chunks), receive), send)


class _Replay:
    """A ``receive`` that hands out the buffered body once, then defers to the server."""

    def __init__(self, body: bytes, receive: Receive) -> None:
        self.body: bytes | None = body
        self.receive = receive

    async def __call__(self) -> Message:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        return await self.receive()
