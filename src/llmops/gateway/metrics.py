"""Prometheus metrics of one gateway, in a registry of its own (no process-wide mutable state).

With several worker processes, a scrape reaches one worker; in prometheus-client's multiprocess
mode every worker writes its values to files in one folder and ``render`` aggregates all of them
(counters and histograms summed, gauges per ``pid``). The mode must be chosen before the workers
import prometheus-client: the process that starts them empties the folder
(``prepare_multiprocess_dir``), sets ``PROMETHEUS_MULTIPROC_DIR`` to it in their environment, and
sets ``metrics_multiprocess_dir`` in the gateway config to the same folder.

Resource metrics (``monitor.resource_metrics``): one process exports its own ``process_*``; in
multiprocess mode every live worker's ``process_*`` is read from ``/proc`` at scrape time and
labelled with its ``pid``, like the gauges.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from llmops.monitor.resource_metrics import (
    RESOURCE_FAMILY_PREFIXES,
    register_resource_collectors,
    register_worker_resource_collectors,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    """Counters and histograms the gateway updates on the request path.

    ``child(name, *labels)`` is the labelled series of collector ``name``, looked up once per
    label values and kept (``labels()`` validates and locks on every call: about 15 us a request
    on the machines we measure on); ``forget_children`` drops them after a collector is replaced.
    """

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
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
        self.shed = Counter(
            "llmops_gateway_shed",
            "API requests refused with 503 because the worker already served http.max_in_flight of them.",
            registry=r,
        )
        self.cache = Counter("llmops_gateway_cache", "Response cache lookups.", ["result"], registry=r)
        self.log_spilled = Counter(
            "llmops_gateway_request_log_spilled", "Request-log rows written to the spill file.", registry=r
        )
        self.log_written = Counter(
            "llmops_gateway_request_log_written", "Request-log rows committed to the database.", registry=r
        )
        self.log_lost = Counter(
            "llmops_gateway_request_log_lost",
            "Request-log rows dropped: the database was unavailable and the spill file could not be written.",
            registry=r,
        )
        self.log_queue = Gauge("llmops_gateway_request_log_queue", "Rows waiting in memory.", registry=r)
        self.shadow = Counter(
            "llmops_gateway_shadow", "Mirrored requests by outcome.", ["outcome"], registry=r
        )
        register_resource_collectors(r)

    def child(self, name: str, *labels: str) -> Any:
        """The series of collector ``name`` with ``labels`` (in the collector's label order)."""
        key = (name, labels)
        series = self._children.get(key)
        if series is None:
            series = self._children[key] = getattr(self, name).labels(*labels)
        return series

    def count_request(self, deployment: str, status: int, latency_s: float, ttft_s: float | None) -> None:
        """One finished request: its status, latency and (when known) time to first token."""
        self.child("requests", deployment, str(status)).inc()
        self.child("latency", deployment).observe(latency_s)
        if ttft_s is not None:
            self.child("ttft", deployment).observe(ttft_s)

    def forget_children(self) -> None:
        self._children.clear()

    def include(self, registry: CollectorRegistry, labels: Mapping[str, str]) -> None:
        """Expose ``registry``'s metrics (an in-process replica's) here too, each sample labelled
        with ``labels``. Its resource families are left out: it runs in this process, whose own
        the gateway exports. Another family name the gateway already exposes raises ``ValueError``."""
        self.registry.register(_Labelled(registry, dict(labels), skip=RESOURCE_FAMILY_PREFIXES))

    def render(self) -> bytes:
        """The exposition of this worker, or of every worker in multiprocess mode."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.multiprocess_dir))
        register_worker_resource_collectors(registry, self.multiprocess_dir)
        return generate_latest(registry)


def prepare_multiprocess_dir(path: Path) -> Path:
    """Create ``path`` for multiprocess metrics and remove files a previous run left (call before
    starting the workers; stale files would add old counts to the new ones)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return path


class _Labelled(Collector):
    """Another registry's families, read at each scrape, with constant labels added."""

    def __init__(
        self, registry: CollectorRegistry, labels: dict[str, str], skip: tuple[str, ...] = ()
    ) -> None:
        self._registry, self._labels, self._skip = registry, labels, skip

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            if family.name.startswith(self._skip):
                continue
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [s._replace(labels={**s.labels, **self._labels}) for s in family.samples]
            yield labelled
