"""A deployment's load, read from its replicas' /metrics: the numbers the local autoscaler decides on.

``parse_replica_load`` reads one exposition (Prometheus text, through ``prometheus_client.parser``):
the engine's queue depth and running batch (gauges) and the cumulative buckets of the TTFT
histogram. llmops replicas export ``QUEUE_DEPTH_METRIC``, ``RUNNING_METRIC`` and ``TTFT_METRIC``
(``llmops.serve.metrics``); vLLM's server exports the same signals under its own names, read too.

``LoadSampler`` turns one read of every ready replica into a ``LoadSample``: waiting and running
summed over the replicas, and the p95 TTFT of the first tokens produced within the last
``window_s`` seconds: the histogram's increase over that window, interpolated within its bucket as
Prometheus' ``histogram_quantile(0.95, increase(...[window]))`` does. A replica seen for the first
time is a baseline (its history before this sampler is not the current load); a replica whose
counts went down restarted, so its counts are all new. A replica that does not answer is left out
(its liveness probe deals with it); none answering gives no sample.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from llmops.deploy.autoscale import LoadSample
from llmops.serve.metrics import QUEUE_DEPTH_METRIC, RUNNING_METRIC, TTFT_METRIC

WAITING_NAMES = (QUEUE_DEPTH_METRIC, "vllm:num_requests_waiting")
RUNNING_NAMES = (RUNNING_METRIC, "vllm:num_requests_running")
TTFT_BUCKET_NAMES = (f"{TTFT_METRIC}_bucket", "vllm:time_to_first_token_seconds_bucket")

Buckets = dict[float, float]  # upper bound in seconds (math.inf last) -> cumulative count


@dataclass(frozen=True)
class ReplicaLoad:
    """One replica's load now: engine queue, running batch, and its TTFT histogram so far."""

    waiting: float
    running: float
    ttft_buckets: Buckets


def parse_replica_load(text: str) -> ReplicaLoad:
    """The load numbers of one /metrics exposition (absent signals count as 0)."""
    waiting = running = 0.0
    buckets: Buckets = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in WAITING_NAMES:
                waiting += sample.value
            elif sample.name in RUNNING_NAMES:
                running += sample.value
            elif sample.name in TTFT_BUCKET_NAMES:
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return ReplicaLoad(waiting, running, buckets)


def fetch_replica_load(url: str, timeout_s: float = 2.0) -> ReplicaLoad | None:
    """``url``'s load from its /metrics, or None when it does not answer with them."""
    try:
        response = httpx.get(f"{url}/metrics", timeout=timeout_s)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        return parse_replica_load(response.text)
    except (ValueError, KeyError):
        return None


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """The ``q`` quantile of cumulative ``buckets`` (Prometheus' interpolation), None when empty.
    In the +Inf bucket it is the highest finite bound (nothing above it is known)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _increase(now: Buckets, before: Buckets | None) -> Buckets:
    if before is None:
        return {}
    if any(count < before.get(bound, 0.0) for bound, count in now.items()):
        return dict(now)  # the replica restarted: every count is new
    return {bound: count - before.get(bound, 0.0) for bound, count in now.items()}


class LoadSampler:
    """Samples a deployment's replicas; keeps what a p95 TTFT over a window needs (see the module)."""

    def __init__(
        self,
        fetch: Callable[[str], ReplicaLoad | None] = fetch_replica_load,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch = fetch
        self.clock = clock
        self._last: dict[str, Buckets] = {}
        self._window: deque[tuple[float, Buckets]] = deque()

    def sample(self, replicas: Sequence[tuple[str, str]], *, window_s: float) -> LoadSample | None:
        """The load of ``replicas`` (name, url) now, or None when none of them answers. The sample
        counts every replica given (what scaling counts), the sums only those that answered."""
        now = self.clock()
        waiting = running = 0.0
        answered = 0
        increase: Buckets = {}
        for name, url in replicas:
            load = self.fetch(url)
            if load is None:
                continue
            answered += 1
            waiting += load.waiting
            running += load.running
            for bound, count in _increase(load.ttft_buckets, self._last.get(name)).items():
                increase[bound] = increase.get(bound, 0.0) + count
            self._last[name] = load.ttft_buckets
        names = {name for name, _ in replicas}
        self._last = {name: b for name, b in self._last.items() if name in names}
        self._window.append((now, increase))
        while self._window and self._window[0][0] <= now - window_s:
            self._window.popleft()
        if not answered:
            return None
        return LoadSample(len(replicas), waiting, running, self._p95_ms())

    def _p95_ms(self) -> float | None:
        total: Buckets = {}
        for _, increase in self._window:
            for bound, count in increase.items():
                total[bound] = total.get(bound, 0.0) + count
        p95 = histogram_quantile(0.95, total)
        return p95 * 1000 if p95 is not None else None
