"""Prometheus metrics of one replica: HTTP traffic, generation latency, tokens, engine gauges.

Each app owns its own ``CollectorRegistry`` (two apps in one process never collide), with the
process's resource metrics (``monitor.resource_metrics``). Engine numbers
are read from ``backend.stats()`` at scrape time. ``MetricsMiddleware`` is pure ASGI: it counts every
answer, 413s and 400s included, by route template (unknown paths share one label, so a scanner
cannot blow up the label space).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops.engine.types import Backend, EngineStats
from llmops.monitor.resource_metrics import register_resource_collectors

logger = logging.getLogger(__name__)

# The load signals autoscalers read (KEDA/HPA queries, the local autoscaler): exported once, here.
QUEUE_DEPTH_METRIC = "llmops_engine_requests_waiting"
RUNNING_METRIC = "llmops_engine_requests_running"
TTFT_METRIC = "llmops_time_to_first_token_seconds"
ACCEPTANCE_METRIC = "llmops_engine_spec_acceptance_ratio"
TOKENS_PER_STEP_METRIC = "llmops_engine_spec_tokens_per_step"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class ServeMetrics:
    """The metrics one replica app exports at ``/metrics``."""

    def __init__(self, backend: Backend) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llmops_http_requests", "HTTP requests answered, by route and status.",
            ["method", "route", "status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "llmops_http_request_duration_seconds", "Time from request to the last byte of the answer.",
            ["route"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge("llmops_http_requests_in_flight", "Requests being answered now.", registry=r)
        self.ttft = Histogram(
            TTFT_METRIC, "Time from request to a choice's first token.",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.tpot = Histogram(
            "llmops_time_per_output_token_seconds", "Mean time between a choice's tokens after the first.",
            buckets=TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "llmops_prompt_tokens", "Prompt tokens of answered requests.", registry=r
        )
        self.completion_tokens = Counter(
            "llmops_completion_tokens", "Tokens generated for answered requests.", registry=r
        )
        r.register(EngineStatsCollector(backend))
        register_resource_collectors(r)  # process CPU, memory, file descriptors; GPU memory and use

    def record_usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens.inc(prompt_tokens)
        self.completion_tokens.inc(completion_tokens)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class EngineStatsCollector(Collector):
    """Reads ``backend.stats()`` on each scrape into ``llmops_engine_*`` gauges and counters."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self.backend.stats()
        except Exception:  # a scrape must not fail because the engine is unwell
            logger.exception("backend.stats() failed")
            return
        gauges = {
            QUEUE_DEPTH_METRIC: ("Requests queued in the engine.", stats.waiting),
            RUNNING_METRIC: ("Requests in the running batch.", stats.running),
            "llmops_engine_kv_blocks_capacity": ("KV-cache blocks in the pool.", stats.kv_blocks_total),
            "llmops_engine_kv_blocks_used": ("KV-cache blocks in use.", stats.kv_blocks_used),
            "llmops_engine_last_batch_size": ("Sequences in the last engine step.", stats.last_batch_size),
        }
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(name, doc, value=value)
        usage = stats.kv_blocks_used / stats.kv_blocks_total if stats.kv_blocks_total else 0.0
        yield GaugeMetricFamily(
            "llmops_engine_kv_cache_usage_ratio", "Share of KV blocks in use.", value=usage
        )
        counters = {
            "llmops_engine_steps": ("Engine steps run.", stats.steps),
            "llmops_engine_prefix_cache_queries": ("Prefix-cache lookups.", stats.prefix_cache_queries),
            "llmops_engine_prefix_cache_hits": ("Prefix-cache lookups that hit.", stats.prefix_cache_hits),
            "llmops_engine_prompt_tokens": ("Prompt tokens the engine processed.", stats.prompt_tokens_total),
            "llmops_engine_generation_tokens": (
                "Tokens the engine generated.",
                stats.generation_tokens_total,
            ),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(name, doc, value=value)
        yield from _speculation_metrics(stats)


def _speculation_metrics(stats: EngineStats) -> Iterator[Metric]:
    """Speculative decoding: counters, and the two ratios people watch (exported when it is on)."""
    if not stats.spec_verifications_total:
        return
    counters = {
        "llmops_engine_spec_verifications": (
            "Sequence-steps that verified draft tokens.",
            stats.spec_verifications_total,
        ),
        "llmops_engine_spec_draft_tokens": ("Draft tokens proposed.", stats.spec_proposed_tokens_total),
        "llmops_engine_spec_accepted_tokens": (
            "Draft tokens the served model kept.",
            stats.spec_accepted_tokens_total,
        ),
    }
    for name, (doc, value) in counters.items():
        yield CounterMetricFamily(name, doc, value=value)
    proposed = stats.spec_proposed_tokens_total
    yield GaugeMetricFamily(
        ACCEPTANCE_METRIC,
        "Share of draft tokens kept since the replica started.",
        value=stats.spec_accepted_tokens_total / proposed if proposed else 0.0,
    )
    yield GaugeMetricFamily(
        TOKENS_PER_STEP_METRIC,
        "Tokens a sequence gained per verifying step since the replica started (1 = no gain).",
        value=stats.spec_emitted_tokens_total / stats.spec_verifications_total,
    )


class MetricsMiddleware:
    """Counts answers by status and times them to the last body byte (streams included)."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            self.metrics.in_flight.dec()
            route = _route_template(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "other"
