"""Sampling a deployment's load from its replicas' /metrics: the names a replica really exports, the
p95 TTFT over a window of the histogram's increase, restarts and silent replicas."""

from __future__ import annotations

import math

import pytest

from llmops.deploy.load import LoadSampler, ReplicaLoad, histogram_quantile, parse_replica_load
from llmops.engine.types import EngineStats
from llmops.serve.metrics import ServeMetrics


class _Stats:
    def __init__(self, waiting: int, running: int) -> None:
        self.numbers = EngineStats(waiting=waiting, running=running)

    def stats(self) -> EngineStats:
        return self.numbers


def test_a_replicas_own_exposition_gives_its_queue_running_and_ttft_histogram() -> None:
    metrics = ServeMetrics(_Stats(waiting=3, running=2))  # type: ignore[arg-type]
    for seconds in (0.02, 0.03, 0.2):
        metrics.ttft.observe(seconds)
    load = parse_replica_load(metrics.exposition().decode())
    assert (load.waiting, load.running) == (3, 2)
    assert load.ttft_buckets[0.025] == 1 and load.ttft_buckets[0.05] == 2 and load.ttft_buckets[math.inf] == 3


def test_vllm_names_are_read_too() -> None:
    text = (
        '# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name="m"} 4.0\n'
        '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="m"} 1.0\n'
    )
    load = parse_replica_load(text)
    assert (load.waiting, load.running, load.ttft_buckets) == (4, 1, {})


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        ({0.1: 0, 0.5: 0, math.inf: 0}, None),
        ({0.1: 10, 0.5: 10, math.inf: 10}, 0.1 * 0.95),  # all in the first bucket: from 0
        ({0.1: 0, 0.5: 20, math.inf: 20}, 0.1 + 0.4 * 0.95),
        ({0.1: 10, 0.5: 10, math.inf: 20}, 0.5),  # in +Inf: the highest finite bound
    ],
)
def test_histogram_quantile_interpolates_like_prometheus(
    buckets: dict[float, float], expected: float | None
) -> None:
    found = histogram_quantile(0.95, buckets)
    assert found == pytest.approx(expected) if expected is not None else found is None


def _ttft(fast: float, slow: float) -> dict[float, float]:
    """Cumulative buckets of ``fast`` first tokens under 0.1 s and ``slow`` ones of 0.5..1 s."""
    return {0.1: fast, 0.5: fast, 1.0: fast + slow, math.inf: fast + slow}


class _Replicas:
    """What each replica's /metrics says now; None: it does not answer."""

    def __init__(self) -> None:
        self.now: dict[str, ReplicaLoad | None] = {}

    def fetch(self, url: str) -> ReplicaLoad | None:
        return self.now[url]


def test_sums_over_replicas_and_p95_only_over_the_window() -> None:
    replicas, clock = _Replicas(), [0.0]
    sampler = LoadSampler(replicas.fetch, clock=lambda: clock[0])
    pair = [("a", "a"), ("b", "b")]
    replicas.now = {"a": ReplicaLoad(1, 2, _ttft(100, 0)), "b": ReplicaLoad(3, 1, _ttft(0, 0))}
    first = sampler.sample(pair, window_s=10)
    assert first is not None and (first.replicas, first.waiting, first.running) == (2, 4, 3)
    assert first.p95_ttft_ms is None, "history from before the sampler is not current load"

    clock[0] = 2.0
    replicas.now = {"a": ReplicaLoad(0, 1, _ttft(100, 10)), "b": ReplicaLoad(0, 0, _ttft(0, 10))}
    slow = sampler.sample(pair, window_s=10)
    assert slow is not None and slow.p95_ttft_ms == pytest.approx(500 + 500 * 0.95)

    clock[0] = 20.0  # the slow first tokens left the window; 100 fast ones came since
    replicas.now = {"a": ReplicaLoad(0, 1, _ttft(200, 10)), "b": ReplicaLoad(0, 0, _ttft(0, 10))}
    fast = sampler.sample(pair, window_s=10)
    assert fast is not None and fast.p95_ttft_ms == pytest.approx(95.0)


def test_a_restarted_replica_counts_all_its_numbers_and_a_silent_one_none() -> None:
    replicas, clock = _Replicas(), [0.0]
    sampler = LoadSampler(replicas.fetch, clock=lambda: clock[0])
    replicas.now = {"a": ReplicaLoad(0, 0, _ttft(500, 0)), "b": ReplicaLoad(0, 0, _ttft(0, 0))}
    sampler.sample([("a", "a"), ("b", "b")], window_s=60)
    clock[0] = 1.0
    replicas.now = {"a": ReplicaLoad(2, 0, _ttft(0, 4)), "b": None}  # a restarted; b is silent
    sample = sampler.sample([("a", "a"), ("b", "b")], window_s=60)
    assert sample is not None and (sample.replicas, sample.waiting) == (2, 2)
    assert sample.p95_ttft_ms == pytest.approx(500 + 500 * 0.95)
    replicas.now = {"a": None, "b": None}
    assert sampler.sample([("a", "a"), ("b", "b")], window_s=60) is None
