"""DriftMonitor: rolling windows per model version, checks in a thread, the schedule, metrics."""

from __future__ import annotations

import asyncio

import pytest

from llmops.data.synth import generate
from llmops.errors import InvalidInput, NotFound
from llmops.monitor.drift import DriftReport
from llmops.monitor.drift_features import DriftProfile, DriftSample, build_profile
from llmops.monitor.drift_monitor import DriftMonitor
from llmops.monitor.metrics import MonitorMetrics


@pytest.fixture(scope="module")
def reference() -> DriftProfile:
    return build_profile(DriftSample.of([r["prompt"] for r in generate("intent", 300, seed=0)]))


def _feed(monitor: DriftMonitor, version: str, n: int, seed: int, domain: str = "default") -> None:
    for row in generate("intent", n, seed=seed, domain=domain):
        monitor.observe(version, row["prompt"])


def _value(metrics: MonitorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_untracked_versions_are_ignored_and_windows_are_bounded(reference: DriftProfile) -> None:
    monitor = DriftMonitor(window_size=80)
    assert monitor.observe("v1", "hello") is False
    monitor.set_reference("v1", reference)
    _feed(monitor, "v1", 200, seed=1)
    assert monitor.window("v1").size == 80
    with pytest.raises(NotFound):
        monitor.window("v2")


def test_check_reports_each_version_against_its_reference(reference: DriftProfile) -> None:
    metrics = MonitorMetrics()
    monitor = DriftMonitor(metrics=metrics)
    monitor.set_reference("stable", reference)
    monitor.set_reference("shifted", reference)
    _feed(monitor, "stable", 150, seed=1)
    _feed(monitor, "shifted", 150, seed=1, domain="shifted")
    reports = asyncio.run(monitor.check_all())
    assert {r.model_version: r.drifted for r in reports} == {"shifted": True, "stable": False}
    assert _value(metrics, "llmops_drift_detected", model_version="shifted", feature="overall") == 1.0
    assert _value(metrics, "llmops_drift_detected", model_version="stable", feature="overall") == 0.0
    score = _value(metrics, "llmops_drift_score", model_version="shifted", feature="vocabulary")
    assert score is not None and score > 0.2
    assert _value(metrics, "llmops_drift_checks_total", model_version="shifted", outcome="drifted") == 1.0
    assert _value(metrics, "llmops_drift_window_prompts", model_version="stable") == 150.0


def test_a_small_window_is_skipped_and_counted_not_alarmed(reference: DriftProfile) -> None:
    metrics = MonitorMetrics()
    monitor = DriftMonitor(metrics=metrics)
    monitor.set_reference("v1", reference)
    _feed(monitor, "v1", 10, seed=1, domain="shifted")
    assert asyncio.run(monitor.check_all()) == []
    assert monitor.latest("v1") is None
    with pytest.raises(InvalidInput, match="at least 50"):
        monitor.check("v1")
    assert _value(metrics, "llmops_drift_checks_total", model_version="v1", outcome="insufficient") == 2.0


def test_old_observations_age_out_of_the_window(reference: DriftProfile) -> None:
    now = [1000.0]
    monitor = DriftMonitor(max_age_s=60, clock=lambda: now[0])
    monitor.set_reference("v1", reference)
    _feed(monitor, "v1", 30, seed=1)
    now[0] += 120
    _feed(monitor, "v1", 20, seed=2)
    assert monitor.window("v1").size == 20


def test_the_schedule_runs_checks_and_notifies_listeners(reference: DriftProfile) -> None:
    seen: list[DriftReport] = []

    async def scenario() -> None:
        monitor = DriftMonitor()
        monitor.add_listener(seen.append)
        monitor.set_reference("v1", reference)
        _feed(monitor, "v1", 100, seed=1, domain="shifted")
        monitor.start(interval_s=0.01)
        for _ in range(500):
            if seen:
                break
            await asyncio.sleep(0.01)
        await monitor.stop()

    asyncio.run(scenario())
    assert seen and seen[0].drifted and seen[0].model_version == "v1"


def test_embeddings_and_labels_are_used_only_when_every_observation_has_them(reference: DriftProfile) -> None:
    monitor = DriftMonitor()
    monitor.set_reference("v1", reference)
    monitor.observe("v1", "a", embedding=[0.0, 1.0], label="x")
    monitor.observe("v1", "b")
    window = monitor.window("v1")
    assert window.embeddings is None and window.labels is None
