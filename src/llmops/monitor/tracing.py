"""Distributed tracing with OpenTelemetry: the tracer of one service, server spans, W3C propagation.

``Tracing`` is the tracer a service is handed (never a process-wide provider: nothing here calls
``trace.set_tracer_provider``). It is off unless ``LLMOPS_OTLP_ENDPOINT`` is set
(``Tracing.from_settings``), and off costs nothing: apps add no span middleware and create no spans,
and ``inject_trace_context`` only looks up the current span (a context-variable read). On, spans go
to an OTLP/HTTP collector through a batching processor (a background thread, never the event loop)
and ``otlp_encoding.LeanOTLPSpanExporter`` (the OTLP exporter with a direct protobuf encoder),
sampled by ``ParentBased(TraceIdRatioBased(ratio))`` so a replica follows the gateway's decision.
Tests use ``Tracing.in_memory()`` and read the finished spans from its exporter.

``ServerSpanMiddleware`` (pure ASGI) opens one SERVER span per HTTP request, as the child of the
caller's ``traceparent`` when there is one, names it ``METHOD route``, and records the status and
the ``x-request-id`` the app put in ``scope["state"]["request_id"]`` (attribute
``llmops.request_id``). ``inject_trace_context`` writes the current span's ``traceparent`` into the
headers of an outgoing request.

The OpenTelemetry API is required (FastAPI already depends on it); the SDK and the OTLP exporter
(the ``tracing`` extra) are imported only when tracing is turned on.

Must not import ``serve``, ``gateway`` or any web framework: it speaks plain ASGI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llmops.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_ATTRIBUTE = "llmops.request_id"
INSTRUMENTATION_NAME = "llmops"
OTLP_TRACES_PATH = "/v1/traces"
_PROPAGATED = (b"traceparent", b"tracestate")
_W3C = TraceContextTextMapPropagator()  # stateless; the W3C format the gateway and replicas share


@dataclass(frozen=True)
class Tracing:
    """The tracer of one service, or none (tracing off). ``shutdown`` flushes and stops the export."""

    tracer: Tracer | None = None
    provider: TracerProvider | None = None

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    @classmethod
    def off(cls) -> Tracing:
        return cls()

    @classmethod
    def from_settings(cls, settings: Settings, component: str) -> Tracing:
        """OTLP/HTTP export to ``settings.otlp_endpoint`` as ``<otel_service_name>-<component>``;
        off when no endpoint is set. A bare ``http://host:4318`` gets ``/v1/traces`` appended."""
        if not settings.otlp_endpoint:
            return cls.off()
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from llmops.monitor.otlp_encoding import LeanOTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/")
        if not endpoint.endswith(OTLP_TRACES_PATH):
            endpoint += OTLP_TRACES_PATH
        provider = _provider(f"{settings.otel_service_name}-{component}", settings.trace_sample_ratio)
        provider.add_span_processor(BatchSpanProcessor(LeanOTLPSpanExporter(endpoint)))
        return cls(provider.get_tracer(INSTRUMENTATION_NAME), provider)

    @classmethod
    def in_memory(cls, service_name: str = "llmops-test") -> tuple[Tracing, InMemorySpanExporter]:
        """Every span, exported synchronously to memory (tests)."""
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = _provider(service_name, 1.0)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return cls(provider.get_tracer(INSTRUMENTATION_NAME), provider), exporter

    def shutdown(self) -> None:
        """Export what is buffered and stop (blocks briefly; call from shutdown paths only)."""
        if self.provider is not None:
            self.provider.shutdown()


def _provider(service_name: str, ratio: float) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    return TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBased(TraceIdRatioBased(ratio)),
    )


def extract_trace_context(headers: Iterable[tuple[bytes, bytes]]) -> Context:
    """The caller's trace context from raw ASGI headers (an empty context when there is none)."""
    carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in _PROPAGATED}
    return _W3C.extract(carrier) if carrier else Context()


def inject_trace_context(headers: dict[str, str]) -> None:
    """Add ``traceparent`` (and ``tracestate``) of the current span, if any, to ``headers``."""
    if trace.get_current_span().get_span_context().is_valid:
        _W3C.inject(headers)


class ServerSpanMiddleware:
    """One SERVER span per HTTP request; the span is current while the app runs (and streams)."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET"))
        status = 0

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        attributes = {"http.request.method": method, "url.path": str(scope.get("path", ""))}
        parent = extract_trace_context(scope.get("headers", ()))
        # what ``start_as_current_span`` does, without its two generator-based context managers
        span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        error: Exception | None = None
        try:
            await self.app(scope, receive, send_with_status)
        except Exception as exc:
            error = exc
            raise
        finally:
            _finish_server_span(span, scope, method, status)
            if error is not None and span.is_recording():
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            otel_context.detach(token)
            span.end()


def _finish_server_span(span: trace.Span, scope: Scope, method: str, status: int) -> None:
    attributes: dict[str, str | int] = {}  # set at once: each ``set_attribute`` takes the span's lock
    route = getattr(scope.get("route"), "path", None)
    if route:
        span.update_name(f"{method} {route}")
        attributes["http.route"] = route
    request_id = scope.get("state", {}).get("request_id")
    if request_id:
        attributes[REQUEST_ID_ATTRIBUTE] = str(request_id)
    if status:
        attributes["http.response.status_code"] = status
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
    span.set_attributes(attributes)
