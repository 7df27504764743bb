"""The direct OTLP span encoder writes the same bytes as the OpenTelemetry exporter's encoder."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llmops.monitor.otlp_encoding import LeanOTLPSpanExporter, SpanEncoder


def _spans() -> list:
    exporter = InMemorySpanExporter()
    spans = []
    for service in ("gateway", "replica"):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("llmops", "1.0", schema_url="https://opentelemetry.io/schemas/1.21.0")
        carrier = {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "k=v",
        }
        remote = TraceContextTextMapPropagator().extract(carrier)
        with tracer.start_as_current_span(
            "POST", context=remote, kind=SpanKind.SERVER, attributes={"http.request.method": "POST"}
        ) as span:
            span.set_attributes(
                {"http.route": "/v1/chat/completions", "n": -3, "ratio": 0.5, "ok": False, "e": ""}
            )
            span.set_status(Status(StatusCode.ERROR, "replica failed"))
            with tracer.start_as_current_span(
                "inner", attributes={"tags": ("a", "b")}
            ):  # an array: reference
                pass
        with tracer.start_as_current_span("plain", context=context.Context()) as span:
            span.add_event("retry", {"attempt": 2})  # an event: the reference encoder writes it
        with tracer.start_as_current_span("empty", context=context.Context()):
            pass
        provider.shutdown()
    spans = list(exporter.get_finished_spans())
    assert all(s.get_span_context() != trace.INVALID_SPAN_CONTEXT for s in spans)
    return spans


def test_the_same_bytes_as_the_exporters_encoder() -> None:
    spans = _spans()
    encoder = SpanEncoder()
    for batch in (spans, spans[:1], spans[2:5], spans[::-1]):
        assert encoder.encode(batch) == encode_spans(batch).SerializePartialToString()


def test_the_lean_exporter_posts_those_bytes_to_the_collector() -> None:
    received: list[bytes] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        exporter = LeanOTLPSpanExporter(f"http://127.0.0.1:{server.server_port}/v1/traces")
        spans = _spans()
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        exporter.shutdown()
    finally:
        server.shutdown()
    assert received == [encode_spans(spans).SerializePartialToString()]
