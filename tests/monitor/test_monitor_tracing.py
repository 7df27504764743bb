"""Tracing end to end, in memory: a gateway in front of a replica app over a fake backend.

Gateway and replica each get their own tracer and in-memory exporter, so the only link between
their spans is the ``traceparent`` header the gateway sends upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from llmops.engine.types import Backend, EngineStats, GenerationRequest, HealthStatus, ModelInfo, TokenEvent
from llmops.gateway.app import build_app
from llmops.gateway.config import GatewayConfig
from llmops.gateway.service import build_gateway
from llmops.gateway.upstreams import AsgiUpstream
from llmops.monitor.tracing import REQUEST_ID_ATTRIBUTE, ServerSpanMiddleware, Tracing
from llmops.security.keys import KeySpec, KeyStore
from llmops.serve import build_app as build_replica_app
from llmops.settings import Settings
from llmops.store.home import Home

pytestmark = pytest.mark.anyio

PREFILL_S = 0.02


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class SlowEchoBackend(Backend):
    """Waits ``PREFILL_S`` before the first token, then echoes the prompt's words one per step.

    ``current_spans`` records whether a span was current while generating (tracing off: never)."""

    def __init__(self) -> None:
        self.current_spans: list[bool] = []

    def info(self) -> ModelInfo:
        return ModelInfo(model_id="echo", max_model_len=256)

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        return self._generate(request)

    async def _generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        self.current_spans.append(trace.get_current_span().get_span_context().is_valid)
        words = (request.messages[-1].content if request.messages else "").split()[
            : request.sampling.max_tokens
        ]
        await asyncio.sleep(PREFILL_S)
        for count, word in enumerate(words, start=1):
            finish = "stop" if count == len(words) else None
            yield TokenEvent(request.request_id, count, word + " ", 4, count, finish_reason=finish)
            await asyncio.sleep(0.005)

    async def abort(self, request_id: str) -> None:
        return None

    async def health(self) -> HealthStatus:
        return HealthStatus(ok=True)

    def stats(self) -> EngineStats:
        return EngineStats()


class HeaderTap:
    """An ASGI wrapper remembering the headers of every request that reaches the replica."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await self.app(scope, receive, send)


async def _ask(home: Home, gateway_tracing: Tracing, replica_tracing: Tracing, body: dict[str, Any]) -> tuple[
    httpx.Response, SlowEchoBackend, HeaderTap, Any
]:  # fmt: skip
    backend = SlowEchoBackend()
    replica = HeaderTap(build_replica_app(backend, "support-bot", tracing=replica_tracing))
    config = GatewayConfig.model_validate(
        {
            "allow_loopback_upstreams": True,
            "deployments": [{"name": "support-bot", "price": {"input_usd_per_1k_tokens": 1.0}}],
            "request_log": {"flush_interval_s": 0.05},
        }
    )
    upstream = AsgiUpstream(replica, name="replica-1")
    gateway = build_gateway(config, home, in_process={"support-bot": [upstream]}, active_health_checks=False)
    app = build_app(gateway, tracing=gateway_tracing)
    key = KeyStore.from_home(home).create(KeySpec(name="tracing-test")).key
    await gateway.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            answer = await client.post(
                "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            )
    finally:
        await gateway.close()
    return answer, backend, replica, app


def _only(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


@pytest.mark.parametrize("stream", [False, True])
async def test_one_trace_from_gateway_to_replica_phases(home: Home, stream: bool) -> None:
    gateway_tracing, gateway_spans = Tracing.in_memory("gateway")
    replica_tracing, replica_spans = Tracing.in_memory("replica")
    body = {
        "model": "support-bot",
        "messages": [{"role": "user", "content": "one two three"}],
        "stream": stream,
    }
    answer, _, replica, _ = await _ask(home, gateway_tracing, replica_tracing, body)
    assert answer.status_code == 200, answer.text
    request_id = answer.headers["x-request-id"]

    gateway_span = _only(gateway_spans.get_finished_spans(), "POST /v1/chat/completions")
    server = _only(replica_spans.get_finished_spans(), "POST /v1/chat/completions")
    prefill = _only(replica_spans.get_finished_spans(), "queue_wait_and_prefill")
    decode = _only(replica_spans.get_finished_spans(), "decode")
    assert gateway_span.kind == SpanKind.SERVER and server.kind == SpanKind.SERVER
    assert gateway_span.attributes is not None and server.attributes is not None
    assert gateway_span.attributes[REQUEST_ID_ATTRIBUTE] == request_id
    assert server.attributes[REQUEST_ID_ATTRIBUTE] == request_id  # the gateway's id followed the request
    assert gateway_span.attributes["http.response.status_code"] == 200

    # one trace: the replica's request span is the child of the gateway's, the phases of the replica's
    gateway_ctx, server_ctx = gateway_span.get_span_context(), server.get_span_context()
    assert gateway_ctx is not None and server_ctx is not None
    assert {s.context.trace_id for s in (server, prefill, decode) if s.context} == {gateway_ctx.trace_id}
    assert server.parent is not None and server.parent.span_id == gateway_ctx.span_id
    assert replica.headers[0]["traceparent"].split("-")[1] == f"{gateway_ctx.trace_id:032x}"
    for phase in (prefill, decode):
        assert phase.parent is not None and phase.parent.span_id == server_ctx.span_id
    assert prefill.attributes is not None and prefill.attributes["gen_ai.usage.output_tokens"] == 3

    # the phases tile the generation, inside the replica's span, inside the gateway's
    assert prefill.start_time and prefill.end_time and decode.start_time and decode.end_time
    assert prefill.end_time == decode.start_time
    assert prefill.end_time - prefill.start_time >= PREFILL_S * 1e9 * 0.9
    assert server.start_time and server.end_time and gateway_span.start_time and gateway_span.end_time
    assert server.start_time <= prefill.start_time and decode.end_time <= server.end_time
    assert gateway_span.start_time <= server.start_time and server.end_time <= gateway_span.end_time


async def test_tracing_off_creates_no_spans_and_sends_no_traceparent(home: Home) -> None:
    body = {"model": "support-bot", "messages": [{"role": "user", "content": "one two"}]}
    answer, backend, replica, app = await _ask(home, Tracing.off(), Tracing.off(), body)
    assert answer.status_code == 200, answer.text
    assert backend.current_spans == [False]  # no span was current in the gateway or the replica
    assert "traceparent" not in replica.headers[0]
    assert all(m.cls is not ServerSpanMiddleware for m in app.user_middleware)


async def test_gateway_continues_a_callers_trace(home: Home) -> None:
    gateway_tracing, gateway_spans = Tracing.in_memory("gateway")
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    body = {"model": "support-bot", "messages": [{"role": "user", "content": "one"}]}
    backend = SlowEchoBackend()
    config = GatewayConfig.model_validate(
        {"deployments": [{"name": "support-bot", "price": {"input_usd_per_1k_tokens": 1.0}}]}
    )
    replica = AsgiUpstream(build_replica_app(backend, "support-bot", tracing=Tracing.off()))
    gateway = build_gateway(config, home, in_process={"support-bot": [replica]}, active_health_checks=False)
    key = KeyStore.from_home(home).create(KeySpec(name="caller")).key
    await gateway.start()
    try:
        transport = httpx.ASGITransport(app=build_app(gateway, tracing=gateway_tracing))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            headers = {
                "Authorization": f"Bearer {key}",
                "traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01",
            }
            answer = await client.post("/v1/chat/completions", json=body, headers=headers)
    finally:
        await gateway.close()
    assert answer.status_code == 200, answer.text
    span = _only(gateway_spans.get_finished_spans(), "POST /v1/chat/completions")
    assert span.context is not None and f"{span.context.trace_id:032x}" == caller_trace


def test_tracing_is_off_without_an_endpoint_and_exports_over_otlp_with_one() -> None:
    assert not Tracing.from_settings(Settings(), "gateway").enabled
    tracing = Tracing.from_settings(
        Settings(otlp_endpoint="http://127.0.0.1:4318", otel_service_name="svc", trace_sample_ratio=0.5),
        "gateway",
    )
    try:
        assert tracing.enabled and tracing.provider is not None
        assert tracing.provider.resource.attributes["service.name"] == "svc-gateway"
        assert "0.5" in tracing.provider.sampler.get_description()
    finally:
        tracing.shutdown()
