"""``build_app``: the FastAPI app of one replica over a ``Backend``.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``POST /v1/embeddings``,
``POST /v1/classify`` (an encoder classifier; others answer 400), ``GET /v1/models`` (and
``/v1/models/{id}``), ``GET /healthz`` (the process answers),
``GET /readyz`` (the backend is healthy), ``GET /metrics`` (Prometheus). The app's lifespan starts
and stops the backend. Middleware, outermost first: the trace span (only when tracing is on; it
continues the caller's ``traceparent``), request id (and the last-resort 500), metrics, body-size
limit; errors are mapped once by ``error_responses``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from llmops.engine.types import Backend
from llmops.errors import NotFound
from llmops.monitor.tracing import ServerSpanMiddleware, Tracing
from llmops.openapi_contract import attach_error_responses, error_responses, event_stream_response
from llmops.security.json_route import StrictJsonRoute
from llmops.serve.chat import chat_completions
from llmops.serve.classify import classify
from llmops.serve.completions import completions
from llmops.serve.config import ServeConfig
from llmops.serve.embeddings import embeddings
from llmops.serve.error_responses import install_error_handlers
from llmops.serve.metrics import MetricsMiddleware, ServeMetrics
from llmops.serve.middleware import BodyLimitMiddleware, RequestIdMiddleware
from llmops.serve.openapi_doc import install_document
from llmops.serve.protocol import (
    ChatCompletionRequest,
    ClassifyRequest,
    CompletionRequest,
    EmbeddingRequest,
)
from llmops.serve.responses import (
    ChatCompletion,
    ClassificationList,
    Completion,
    EmbeddingList,
    ModelCard,
    ModelList,
    ProbeStatus,
)
from llmops.serve.service import ReplicaService
from llmops.serve.streaming import json_response
from llmops.settings import get_settings

READINESS_TIMEOUT_S = 5.0
# every route: a malformed Content-Length (400), a body over the limit (413), the last-resort 500
SHARED_ERRORS = (400, 413, 500)
_ERRORS = error_responses(404, 429, 502, 503)


def build_app(
    backend: Backend,
    served_model_name: str,
    config: ServeConfig | None = None,
    *,
    tracing: Tracing | None = None,
) -> FastAPI:
    """The OpenAI-compatible app serving ``backend`` under ``served_model_name``.

    ``tracing`` None: from the settings (off unless ``LLMOPS_OTLP_ENDPOINT`` is set), flushed and
    stopped by the lifespan; a ``Tracing`` passed in belongs to the caller.
    """
    config = config or ServeConfig()
    owned = tracing is None
    tracing = Tracing.from_settings(get_settings(), "replica") if tracing is None else tracing
    service = ReplicaService(backend, served_model_name, config, ServeMetrics(backend), tracing=tracing)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await backend.start()
        try:
            yield
        finally:
            await service.drain()
            await backend.shutdown()
            if owned:
                tracing.shutdown()

    app = FastAPI(title="llmops replica", summary=f"Serves {served_model_name}", lifespan=lifespan)
    app.state.service = service
    app.router.route_class = StrictJsonRoute
    install_error_handlers(app)
    _add_openai_routes(app, service)
    _add_probe_routes(app, service)
    for route in app.routes:
        if isinstance(route, APIRoute):
            attach_error_responses(route, SHARED_ERRORS)
    install_document(app, config, [card.id for card in _model_cards(service)])
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    app.add_middleware(RequestIdMiddleware)
    if tracing.tracer is not None:
        app.add_middleware(ServerSpanMiddleware, tracer=tracing.tracer)
    return app


def _add_openai_routes(app: FastAPI, service: ReplicaService) -> None:
    @app.post(
        "/v1/chat/completions",
        responses={
            **event_stream_response(ChatCompletion, "The completion, or its chunks as SSE."),
            **_ERRORS,
        },
    )
    async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
        """Chat completion; ``stream: true`` answers with server-sent events."""
        return await chat_completions(service, body, request)

    @app.post(
        "/v1/completions",
        responses={**event_stream_response(Completion, "The completion, or its chunks as SSE."), **_ERRORS},
    )
    async def create_completion(body: CompletionRequest, request: Request) -> Response:
        """Text completion of one or more prompts (strings or token ids)."""
        return await completions(service, body, request)

    @app.post("/v1/embeddings", responses={200: {"model": EmbeddingList}, **_ERRORS})
    async def create_embeddings(body: EmbeddingRequest) -> Response:
        """Embeddings of one or more texts."""
        return await embeddings(service, body)

    @app.post("/v1/classify", responses={200: {"model": ClassificationList}, **_ERRORS})
    async def create_classification(body: ClassifyRequest) -> Response:
        """Labels of one or more texts, with every label's probability (an encoder classifier)."""
        return await classify(service, body)

    @app.get("/v1/models", responses={200: {"model": ModelList}})
    async def list_models() -> Response:
        """The served model and its loaded adapters."""
        return json_response(ModelList(data=_model_cards(service)))

    @app.get("/v1/models/{model:path}", responses={200: {"model": ModelCard}, **error_responses(404)})
    async def retrieve_model(model: str) -> Response:
        for card in _model_cards(service):
            if card.id == model:
                return json_response(card)
        raise NotFound(f"model {model!r} is not served here", param="model", code="model_not_found")


def _model_cards(service: ReplicaService) -> list[ModelCard]:
    info = service.backend.info()
    base = ModelCard(
        id=service.served_model_name,
        created=service.created,
        root=info.model_id,
        max_model_len=info.max_model_len,
    )
    adapters = [
        ModelCard(id=name, created=service.created, root=info.model_id, parent=service.served_model_name)
        for name in info.adapters
    ]
    return [base, *adapters]


def _add_probe_routes(app: FastAPI, service: ReplicaService) -> None:
    @app.get("/healthz", responses={200: {"model": ProbeStatus}})
    async def healthz() -> Response:
        """Liveness: the process answers."""
        return json_response(ProbeStatus(status="ok"))

    @app.get("/readyz", responses={200: {"model": ProbeStatus}, 503: {"model": ProbeStatus}})
    async def readyz() -> Response:
        """Readiness: the backend reports itself healthy."""
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_S):
                health = await service.backend.health()
        except TimeoutError:
            return _probe(ProbeStatus(status="unavailable", detail="backend health check timed out"), 503)
        if not health.ok:
            return _probe(ProbeStatus(status="unavailable", detail=health.detail), 503)
        return _probe(ProbeStatus(status="ready", detail=health.detail), 200)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus exposition of this replica's metrics."""
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _probe(status: ProbeStatus, code: int) -> Response:
    return Response(status.model_dump_json(), status_code=code, media_type="application/json")
