"""Prometheus metrics of one gateway, in a registry of its own (no process-wide mutable state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    """Counters and histograms the gateway updates on the request path."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llmops_gateway_requests",
            "Requests by deployment and status.",
            ["deployment", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "llmops_gateway_latency_seconds",
            "Request latency.",
            ["deployment"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "llmops_gateway_ttft_seconds",
            "Time to first token.",
            ["deployment"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_failures = Counter(
            "llmops_gateway_upstream_failures", "Failed attempts by replica.", ["replica"], registry=r
        )
        self.fail_open = Counter(
            "llmops_gateway_ratelimit_fail_open",
            "Requests admitted without a rate-limit check because the limit store was down.",
            ["limit"],
            registry=r,
        )
        self.cache = Counter("llmops_gateway_cache", "Response cache lookups.", ["result"], registry=r)
        self.log_spilled = Counter(
            "llmops_gateway_request_log_spilled", "Request-log rows written to the spill file.", registry=r
        )
        self.log_written = Counter(
            "llmops_gateway_request_log_written", "Request-log rows committed to the database.", registry=r
        )
        self.log_queue = Gauge("llmops_gateway_request_log_queue", "Rows waiting in memory.", registry=r)
        self.shadow = Counter(
            "llmops_gateway_shadow", "Mirrored requests by outcome.", ["outcome"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
