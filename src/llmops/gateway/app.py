"""The gateway's FastAPI app: OpenAI-compatible routes, health, metrics, and the admin API.

``build_app(gateway)`` serves a wired ``Gateway``; ``create_app(config, home)`` wires one first.
Every route is public by name (``policy.PUBLIC_PATHS``) or declares the role it needs; the app
refuses to build otherwise. Errors are mapped once, to OpenAI-style bodies. The three OpenAI
completion and embedding calls are served by ``openai_lane`` straight from ASGI, behind the same
middleware; their FastAPI routes stay for the OpenAPI document.

Tracing (``monitor.tracing``): with a ``Tracing`` that is on (``LLMOPS_OTLP_ENDPOINT``, or one
passed in), the outermost middleware opens a SERVER span per request carrying its ``x-request-id``,
and upstream calls carry its ``traceparent``; off, no middleware is added. ``metrics=False`` turns
the gateway's per-request Prometheus updates into no-ops (for overhead benchmarks; ``/metrics``
then stays empty of request series).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from llmops.errors import InvalidInput, LLMOpsError, NotFound
from llmops.gateway.admin import deployments_without_replicas, install_admin_routes
from llmops.gateway.admin_deployments import install_deployment_routes
from llmops.gateway.auth import Principal
from llmops.gateway.config import GatewayConfig
from llmops.gateway.metrics import GatewayMetrics
from llmops.gateway.middleware import GatewayMiddleware
from llmops.gateway.monitor_routes import install_monitor_routes
from llmops.gateway.openai_lane import GatewayApp, OpenAILane, error_response
from llmops.gateway.openapi_doc import install_document, openai_body
from llmops.gateway.policy import RequireRole, unguarded_routes
from llmops.gateway.request_routes import install_request_routes
from llmops.gateway.service import Gateway, build_gateway
from llmops.gateway.upstreams import Upstream
from llmops.monitor.tracing import ServerSpanMiddleware, Tracing
from llmops.openapi_contract import event_stream_response
from llmops.security.json_route import StrictJsonRoute, parse_error_of
from llmops.security.roles import Role
from llmops.serve.responses import ChatCompletion, ClassificationList, Completion, EmbeddingList
from llmops.settings import get_settings
from llmops.store.home import Home

CONSUMER = Depends(RequireRole(Role.CONSUMER))
DEVELOPER = Depends(RequireRole(Role.DEVELOPER))


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, APIRoute) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


def _install_error_handlers(app: FastAPI) -> None:
    async def on_llmops_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LLMOpsError)
        return error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(InvalidInput(f"{where or 'body'}: {first.get('msg', 'invalid')}", param=where))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        refused = parse_error_of(exc)
        if refused is not None:
            return error_response(refused)
        if exc.status_code == 404:
            return error_response(
                NotFound(f"no route {request.url.path}; see /openapi.json", code="no_route")
            )
        error = LLMOpsError(str(exc.detail))
        error.status_code = exc.status_code
        error.error_type = "invalid_request_error"
        response = error_response(error)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = _allowed_methods(request)
        return response

    app.add_exception_handler(LLMOpsError, on_llmops_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


_READY = {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}}
_METRICS_TEXT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


def _add_public_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"], summary="The gateway process is up.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Every deployment has an available replica (a status only; GET /api/readiness names them).",
        responses={
            200: {"description": "Ready.", "content": {"application/json": {"schema": _READY}}},
            503: {"description": "Not ready.", "content": {"application/json": {"schema": _READY}}},
        },
    )
    async def readyz(request: Request) -> JSONResponse:
        gateway: Gateway = request.app.state.gateway
        ready = not deployments_without_replicas(gateway)
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


def _add_openai_routes(app: FastAPI) -> None:
    @app.get("/v1/models", tags=["openai"], summary="Deployments this key may call.")
    async def models(request: Request, principal: Principal = CONSUMER) -> dict[str, Any]:
        gateway: Gateway = request.app.state.gateway
        names = [n for n in gateway.table.names() if principal.key.may_use(n)]
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "llmops"} for n in names]
        return {"object": "list", "data": data}

    @app.post(
        "/v1/chat/completions",
        tags=["openai"],
        summary="Chat completion (streamed or not).",
        responses=event_stream_response(ChatCompletion, "The completion, or its chunks as SSE."),
        openapi_extra=openai_body("ChatCompletionRequest"),
    )
    async def chat(request: Request, principal: Principal = CONSUMER) -> Response:
        gateway: Gateway = request.app.state.gateway
        return await gateway.pipeline.handle(_request_id(request), principal, await request.body(), "chat")

    @app.post(
        "/v1/completions",
        tags=["openai"],
        summary="Text completion (streamed or not).",
        responses=event_stream_response(Completion, "The completion, or its chunks as SSE."),
        openapi_extra=openai_body("CompletionRequest"),
    )
    async def completions(request: Request, principal: Principal = CONSUMER) -> Response:
        gateway: Gateway = request.app.state.gateway
        return await gateway.pipeline.handle(
            _request_id(request), principal, await request.body(), "completions"
        )

    @app.post(
        "/v1/embeddings",
        tags=["openai"],
        summary="Embeddings of one or more texts.",
        responses={200: {"model": EmbeddingList, "description": "One vector per input."}},
        openapi_extra=openai_body("EmbeddingRequest"),
    )
    async def embeddings(request: Request, principal: Principal = CONSUMER) -> Response:
        gateway: Gateway = request.app.state.gateway
        return await gateway.pipeline.handle(
            _request_id(request), principal, await request.body(), "embeddings"
        )

    @app.post(
        "/v1/classify",
        tags=["openai"],
        summary="Labels of one or more texts from an encoder classifier, with every label's probability.",
        responses={200: {"model": ClassificationList, "description": "One label per input."}},
        openapi_extra=openai_body("ClassifyRequest"),
    )
    async def classify(request: Request, principal: Principal = CONSUMER) -> Response:
        gateway: Gateway = request.app.state.gateway
        return await gateway.pipeline.handle(
            _request_id(request), principal, await request.body(), "classify"
        )

    @app.get(
        "/metrics", tags=["monitoring"], summary="Prometheus metrics of this worker.", responses=_METRICS_TEXT
    )
    async def metrics(request: Request, principal: Principal = DEVELOPER) -> Response:
        gateway: Gateway = request.app.state.gateway
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4")


def build_app(gateway: Gateway, *, tracing: Tracing | None = None) -> FastAPI:
    """The ASGI app serving ``gateway``; its lifespan starts and stops the gateway's parts.

    ``tracing`` None: from the settings (off unless ``LLMOPS_OTLP_ENDPOINT`` is set), flushed and
    stopped by the lifespan; a ``Tracing`` passed in belongs to the caller.
    """
    owned = tracing is None
    tracing = Tracing.from_settings(get_settings(), "gateway") if tracing is None else tracing

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()
            if owned:
                tracing.shutdown()

    app = GatewayApp(
        title="llmops gateway",
        version="1",
        description="OpenAI-compatible front door of llmops deployments, and its admin API under /api/.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway
    app.router.route_class = StrictJsonRoute
    _install_error_handlers(app)
    _add_public_routes(app)
    _add_openai_routes(app)
    install_admin_routes(app.router)
    install_deployment_routes(app.router)
    install_request_routes(app.router)
    install_monitor_routes(app.router)
    problems = unguarded_routes(app)
    if problems:
        raise RuntimeError(f"routes without a policy (make them public or require a role): {problems}")
    install_document(app, gateway.table.names())
    # the OpenAI calls take the lane, behind the same middleware (one shedder: one in-flight count)
    lane: Any = GatewayMiddleware(OpenAILane(gateway), limits=gateway.config.http, metrics=gateway.metrics)
    app.add_middleware(
        GatewayMiddleware, limits=gateway.config.http, metrics=gateway.metrics, shedder=lane.shedder
    )
    if tracing.tracer is not None:  # outermost: the span covers size checks and the last-resort 500
        app.add_middleware(ServerSpanMiddleware, tracer=tracing.tracer)
        lane = ServerSpanMiddleware(lane, tracer=tracing.tracer)
    app.lane = lane
    return app


def create_app(
    config: GatewayConfig,
    home: Home,
    *,
    in_process: dict[str, list[Upstream]] | None = None,
    rng: random.Random | None = None,
    active_health_checks: bool = True,
    tracing: Tracing | None = None,
    metrics: bool = True,
) -> FastAPI:
    gateway = build_gateway(
        config, home, in_process=in_process, rng=rng, active_health_checks=active_health_checks
    )
    if not metrics:
        silence_request_metrics(gateway.metrics)
    return build_app(gateway, tracing=tracing)


class _NoMetric:
    """Stands in for a Prometheus collector: every update is a no-op."""

    def labels(self, *args: object, **kwargs: object) -> _NoMetric:
        return self

    def inc(self, amount: float = 1) -> None:
        return None

    def dec(self, amount: float = 1) -> None:
        return None

    def set(self, value: float) -> None:
        return None

    def observe(self, value: float) -> None:
        return None


_REQUEST_METRICS = (
    "requests", "latency", "ttft", "upstream_failures", "fail_open", "cache", "log_spilled", "log_written",
    "log_queue", "shadow",
)  # fmt: skip


def silence_request_metrics(metrics: GatewayMetrics) -> None:
    """Make the gateway's own per-request collectors no-ops (they are read at each update, so every
    part holding ``metrics`` sees the change). Monitoring collectors in the registry stay."""
    for name in _REQUEST_METRICS:
        setattr(metrics, name, _NoMetric())
    metrics.forget_children()
