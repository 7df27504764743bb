"""The Monitor facade end to end: traffic in, drift found, alert fired through a real webhook."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge
from tests.monitor.conftest import Receiver

from llmops.data.synth import generate
from llmops.monitor.alert_history import list_alerts
from llmops.monitor.alert_rules import parse_alert_rules
from llmops.monitor.drift_features import DriftSample, build_profile
from llmops.monitor.online_eval import OnlineEvalConfig
from llmops.monitor.service import Monitor, MonitorConfig


def test_shifted_traffic_raises_a_drift_alert(webhook_receiver: Receiver, tmp_path: Path) -> None:
    rules = parse_alert_rules(
        {
            "webhooks": {"ops": {"url": webhook_receiver.url}},
            "rules": [
                {
                    "name": "prompt-drift",
                    "metric": "llmops_drift_detected",
                    "match": {"feature": "overall"},
                    "op": ">=",
                    "threshold": 1,
                    "webhook": "ops",
                },
                {"name": "queue-backlog", "metric": "gateway_queue", "op": ">", "threshold": 10},
            ],
        }
    )
    config = MonitorConfig(
        alert_rules=rules,
        alert_history_path=tmp_path / "alerts.jsonl",
        online_eval=OnlineEvalConfig(sample_rate=0.5),
    )
    gateway_registry = CollectorRegistry()
    Gauge("gateway_queue", "rows waiting", registry=gateway_registry).set(50)
    reference = build_profile(DriftSample.of([r["prompt"] for r in generate("intent", 200, seed=0)]))

    async def scenario() -> Monitor:
        monitor = Monitor(config, alert_sources=[gateway_registry])
        monitor.drift.set_reference("v2", reference)
        for index, row in enumerate(generate("intent", 120, seed=1, domain="shifted")):
            monitor.on_response(
                request_id=f"r{index}", model_version="v2", prompt=row["prompt"], completion="ok"
            )
        monitor.record_feedback("v2", {"request_id": "r1", "thumbs": "down"})
        report = await monitor.drift.check_async("v2")
        assert report.drifted
        fired = monitor.alerts.evaluate(monitor.samples())
        assert sorted(record.rule for record in fired) == ["prompt-drift", "queue-backlog"]
        assert monitor.online is not None
        await monitor.online.drain()
        assert await monitor.webhooks.drain(timeout_s=10)
        await monitor.stop()
        return monitor

    monitor = asyncio.run(scenario())
    assert [body["commonLabels"]["alertname"] for body in webhook_receiver.bodies] == ["prompt-drift"]
    assert {record.rule for record in list_alerts(tmp_path / "alerts.jsonl", status="firing")} == {
        "prompt-drift",
        "queue-backlog",
    }
    [rate] = monitor.feedback.rates()
    assert (rate.requests, rate.feedback, rate.negative) == (120, 1, 1)
    [aggregate] = monitor.online.evaluator.aggregates() if monitor.online else []
    assert 30 < aggregate.count < 90 and aggregate.mean == 1.0  # "ok" is not a refusal


def test_start_and_stop_run_the_schedules() -> None:
    async def scenario() -> bool:
        monitor = Monitor(MonitorConfig(drift_interval_s=0.01, alert_interval_s=0.01))
        await monitor.start()
        await asyncio.sleep(0.05)
        running = monitor.drift._task is not None and not monitor.drift._task.done()
        await monitor.stop()
        return running and monitor.drift._task is None

    assert asyncio.run(scenario())
