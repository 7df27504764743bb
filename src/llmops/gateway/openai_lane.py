"""The OpenAI routes served straight from ASGI: the request path without FastAPI's layers.

``POST /v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings`` read their bodies raw
and hand them to the pipeline: they need no model validation, dependency injection or routing
table, which cost a large share of a proxied request's CPU. ``GatewayApp`` sends these three
requests down ``OpenAILane`` (behind the same ``GatewayMiddleware``, and the server span when
tracing is on) and everything else through FastAPI. The FastAPI routes of the same paths stay
registered: they publish the request schemas and every status code in the OpenAPI document, and
serve a request that does not take the lane (an app mounted under a prefix).

The lane answers as the routes do: the key is checked first (``RequireRole(CONSUMER)``), then the
body is read, then the pipeline answers; an ``LLMOpsError`` becomes the same OpenAI-style body,
status and headers as the app's error handler gives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.responses import JSONResponse

from llmops.errors import LLMOpsError
from llmops.gateway.auth import presented_key
from llmops.gateway.openai_request import PATHS, Endpoint
from llmops.security.roles import Role

if TYPE_CHECKING:
    from llmops.gateway.service import Gateway

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ENDPOINTS: dict[str, Endpoint] = {path: endpoint for endpoint, path in PATHS.items()}  # type: ignore[misc]
_KEY_HEADERS = (b"authorization", b"x-api-key")


def error_response(error: LLMOpsError) -> JSONResponse:
    """The OpenAI-style answer to ``error``: its body, status and headers (``Retry-After``...)."""
    return JSONResponse(error.to_body(), status_code=error.status_code, headers=error.headers())


def takes_lane(scope: Scope) -> bool:
    """Whether a request is one of the OpenAI calls the lane serves."""
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and scope["path"] in ENDPOINTS
        and not scope.get("root_path")
    )


def _key_headers(scope: Scope) -> dict[str, str]:
    """The first ``Authorization`` and ``x-api-key`` headers (what Starlette's ``Headers.get`` reads)."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _KEY_HEADERS:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


async def _body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client went away before sending it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class OpenAILane:
    """The three OpenAI routes as one ASGI app (``takes_lane`` requests only)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = self.gateway
        request_id = str(scope.get("state", {}).get("request_id", ""))
        try:
            principal = await gateway.key_cache.authenticate(presented_key(_key_headers(scope)))
            principal.require(Role.CONSUMER)
            raw = await _body(receive)
            if raw is None:
                return
            response = await gateway.pipeline.handle(request_id, principal, raw, ENDPOINTS[scope["path"]])
        except LLMOpsError as error:
            response = error_response(error)
        await response(scope, receive, send)


class GatewayApp(FastAPI):
    """The gateway's FastAPI app, whose OpenAI calls take ``lane`` (set by ``build_app``).

    A lane request carries its FastAPI route in ``scope["route"]``, as routing would have set it,
    so what reads the route (the server span's name and ``http.route``) sees the same request."""

    lane: ASGIApp | None = None
    _lane_routes: dict[str, Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.lane
        if lane is not None and takes_lane(scope):
            scope["route"] = self._route_of(scope["path"])
            await lane(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _route_of(self, path: str) -> Any:
        if self._lane_routes is None:
            self._lane_routes = {
                getattr(route, "path", ""): route
                for route in self.router.routes
                if getattr(route, "path", None) in ENDPOINTS and "POST" in getattr(route, "methods", ())
            }
        return self._lane_routes.get(path)
