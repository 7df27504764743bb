"""The gateway's one pure-ASGI middleware: request id, size limits, and the last-resort error body.

Every response carries ``x-request-id``, always a new id made here: it keys the request log, so a
client cannot choose it (a reused id would collide with another request's row).
Headers larger than ``max_header_bytes`` get 431; a body larger than ``max_body_bytes`` gets 413,
from its Content-Length before it is read, or while it streams in. An API request (POST under
/v1/) the worker has no room for gets 503 with Retry-After before its body is read (``shedding``).
An exception that escapes the app before the response started becomes an OpenAI-style 500 body
without a trace or a path.
Every response also carries headers that keep a browser from rendering or framing it, unless a
mounted app (the dashboard, with its own sessions and CSRF tokens) set its own: the API serves
JSON and SSE only, and authenticates by bearer key, never by cookie, so a cross-site page can
neither read its answers nor ride a session (there is none to ride: no CSRF surface).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from llmops.errors import LLMOpsError, PayloadTooLarge
from llmops.gateway.config import HttpLimitsConfig
from llmops.gateway.metrics import GatewayMetrics
from llmops.gateway.shedding import LoadShedder, Slot

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


class HeadersTooLarge(LLMOpsError):
    status_code = 431
    error_type = "invalid_request_error"


def error_response_parts(error: LLMOpsError, request_id: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps(error.to_body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"x-request-id", request_id.encode()),
        *SECURITY_HEADERS,
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
    return error.status_code, headers, body


class GatewayMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        limits: HttpLimitsConfig,
        metrics: GatewayMetrics | None = None,
        shedder: LoadShedder | None = None,
    ) -> None:
        self.app = app
        self.limits = limits
        self.shedder = shedder or LoadShedder(limits, metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = os.urandom(16).hex()  # 128 random bits, as uuid4 without its object
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", request_id.encode()), *_missing(headers)]
            await send(message)

        api = scope["method"] == "POST" and scope["path"].startswith("/v1/")
        refusal = self.shedder.refusal() if api else None
        if refusal is not None:
            await _send_error(send, refusal, request_id)
            return
        slot = Slot(self.shedder) if api else None
        try:
            self._check_sizes(scope)
            await self.app(scope, self._limited(receive, slot), send_with_id)
        except LLMOpsError as error:
            if started:
                raise
            await _send_error(send, error, request_id)
        except Exception:
            if started:
                raise
            log.exception("unhandled error in request %s", request_id)
            await _send_error(
                send, LLMOpsError("internal error; the request id is in x-request-id"), request_id
            )
        finally:
            if slot is not None:
                slot.release()

    def _check_sizes(self, scope: Scope) -> None:
        headers = scope.get("headers", [])
        if sum(len(k) + len(v) + 4 for k, v in headers) > self.limits.max_header_bytes:
            raise HeadersTooLarge(
                f"request headers are larger than {self.limits.max_header_bytes} bytes",
                code="headers_too_large",
            )
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and int(value) > self.limits.max_body_bytes:
                raise self._too_large()

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"request body is larger than {self.limits.max_body_bytes} bytes", code="body_too_large"
        )

    def _limited(self, receive: Receive, slot: Slot | None) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limits.max_body_bytes:
                    raise self._too_large()
                if slot is not None and not message.get("more_body", False):
                    slot.take()
            return message

        return limited


def _missing(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The security headers a response lacks: an app mounted beside the API (the dashboard) sets
    its own policy, which must not be narrowed by the API's ``default-src 'none'``."""
    present = {name.lower() for name, _ in headers}
    return [(name, value) for name, value in SECURITY_HEADERS if name not in present]


async def _send_error(send: Send, error: LLMOpsError, request_id: str) -> None:
    status, headers, body = error_response_parts(error, request_id)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
