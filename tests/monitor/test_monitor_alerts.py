"""Alerting: rules from YAML, firing once and resolving through a real webhook, retries, history."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.monitor.conftest import Receiver

from llmops.errors import InvalidInput
from llmops.monitor.alert_history import AlertHistory, list_alerts
from llmops.monitor.alert_rules import (
    AlertRuleSet,
    WebhookTarget,
    load_alert_rules,
    parse_alert_rules,
    parse_duration,
)
from llmops.monitor.alerts import AlertEvaluator, MetricSample, samples_from_registry
from llmops.monitor.metrics import MonitorMetrics
from llmops.monitor.webhook import WebhookSender

RULES = """
webhooks:
  ops: {{url: "{url}", max_attempts: 3, backoff_s: 0.01}}
rules:
  - name: vocabulary-drift
    metric: llmops_drift_score
    match: {{feature: vocabulary}}
    op: ">"
    threshold: 0.2
    for: 10s
    labels: {{severity: warning}}
    webhook: ops
"""


def _drift(value: float, version: str = "v1") -> list[MetricSample]:
    return [
        MetricSample("llmops_drift_score", value, {"model_version": version, "feature": "vocabulary"}),
        MetricSample("llmops_drift_score", 5.0, {"model_version": version, "feature": "prompt_length"}),
    ]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_alert_fires_once_while_it_holds_and_then_resolves(webhook_receiver: Receiver) -> None:
    rules = load_alert_rules(RULES.format(url=webhook_receiver.url))
    clock, metrics = Clock(), MonitorMetrics()

    async def scenario() -> list[int]:
        sender = WebhookSender(metrics=metrics)
        evaluator = AlertEvaluator(rules, sender=sender, metrics=metrics, clock=clock)
        transitions = []
        for value in (0.5, 0.6, 0.7, 0.9, 0.8, 0.1, 0.1):  # pending, pending, fires, holds x2, resolves
            transitions.append(len(evaluator.evaluate(_drift(value))))
            clock.now += 5
        assert await sender.drain(timeout_s=10)
        await sender.close()
        return transitions

    assert asyncio.run(scenario()) == [0, 0, 1, 0, 0, 1, 0]
    assert [body["status"] for body in webhook_receiver.bodies] == ["firing", "resolved"]
    firing, resolved = webhook_receiver.bodies
    alert = firing["alerts"][0]
    assert alert["labels"] == {
        "alertname": "vocabulary-drift",
        "model_version": "v1",
        "feature": "vocabulary",
        "severity": "warning",
    }
    assert alert["fingerprint"] == resolved["alerts"][0]["fingerprint"]
    assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    assert (
        metrics.registry.get_sample_value("llmops_alert_webhook_deliveries_total", {"outcome": "delivered"})
        == 2.0
    )


def test_each_label_set_is_its_own_alert() -> None:
    rules = load_alert_rules(RULES.format(url="http://127.0.0.1:1/hook").replace("for: 10s", "for: 0"))
    evaluator = AlertEvaluator(rules)
    fired = evaluator.evaluate([*_drift(0.9, "v1"), *_drift(0.9, "v2"), *_drift(0.1, "v3")])
    assert sorted(record.labels["model_version"] for record in fired) == ["v1", "v2"]
    assert len(evaluator.firing()) == 2
    resolved = evaluator.evaluate(_drift(0.9, "v1"))  # v2's series disappeared: it resolves
    assert [(r.labels["model_version"], r.status) for r in resolved] == [("v2", "resolved")]


def test_a_condition_that_stops_before_for_never_fires() -> None:
    rules = load_alert_rules(RULES.format(url="http://127.0.0.1:1/hook"))
    clock = Clock()
    evaluator = AlertEvaluator(rules, clock=clock)
    assert evaluator.evaluate(_drift(0.9)) == []
    clock.now += 9
    assert evaluator.evaluate(_drift(0.0)) == []
    clock.now += 9
    assert evaluator.evaluate(_drift(0.9)) == []  # pending starts again from here
    assert evaluator.history.records() == []


def test_a_down_webhook_is_retried_with_backoff_and_never_blocks(
    closed_port_url: str, webhook_receiver: Receiver
) -> None:
    rules = AlertRuleSet.model_validate(
        {
            "webhooks": {
                "down": {"url": closed_port_url, "max_attempts": 3, "backoff_s": 0.01},
                "up": {"url": webhook_receiver.url},
            },
            "rules": [
                {"name": "to-down", "metric": "m", "op": ">", "threshold": 0, "webhook": "down"},
                {"name": "to-up", "metric": "m", "op": ">", "threshold": 0, "webhook": "up"},
            ],
        }
    )
    delays: list[float] = []

    async def record_sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(seconds)

    async def scenario() -> WebhookSender:
        sender = WebhookSender(sleep=record_sleep)
        evaluator = AlertEvaluator(rules, sender=sender)
        fired = evaluator.evaluate([MetricSample("m", 1.0)])
        # evaluate returned with both notifications only queued: no attempt has been made yet.
        assert len(fired) == 2 and sender.pending == 2 and sender.deliveries() == []
        assert await sender.drain(timeout_s=20)
        await sender.close()
        return sender

    sender = asyncio.run(scenario())
    outcomes = {record.url: record for record in sender.deliveries()}
    assert outcomes[webhook_receiver.url].outcome == "delivered"
    down = outcomes[closed_port_url]
    assert (down.outcome, down.attempts) == ("failed", 3)
    assert down.error is not None and "Connect" in down.error
    assert delays == [0.01, 0.02]  # exponential backoff between the three attempts
    assert len(webhook_receiver.bodies) == 1


def test_a_4xx_answer_fails_without_retry(webhook_receiver: Receiver) -> None:
    webhook_receiver.status = 404
    target = WebhookTarget(url=webhook_receiver.url, max_attempts=4, backoff_s=0.01)

    async def scenario() -> WebhookSender:
        sender = WebhookSender()
        sender.submit(target, {"status": "firing"})
        await sender.drain(timeout_s=10)
        await sender.close()
        return sender

    [record] = asyncio.run(scenario()).deliveries()
    assert (record.outcome, record.attempts) == ("failed", 1)
    assert record.error is not None and record.error.startswith("HTTP 404")


def test_a_full_queue_drops_and_records(closed_port_url: str) -> None:
    target = WebhookTarget(url=closed_port_url, max_attempts=1)

    async def scenario() -> tuple[list[bool], WebhookSender]:
        sender = WebhookSender(queue_max=2)
        accepted = [sender.submit(target, {"n": n}) for n in range(5)]
        await sender.drain(timeout_s=10)
        await sender.close()
        return accepted, sender

    accepted, sender = asyncio.run(scenario())
    assert accepted == [True, True, False, False, False]
    assert [r.outcome for r in sender.deliveries()].count("dropped") == 3


def test_history_persists_and_a_restart_does_not_notify_twice(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    rules = load_alert_rules(RULES.format(url="http://127.0.0.1:1/hook").replace("for: 10s", "for: 0"))
    first = AlertEvaluator(rules, history=AlertHistory(path))
    assert len(first.evaluate(_drift(0.9))) == 1
    assert [r.status for r in list_alerts(path)] == ["firing"]

    second = AlertEvaluator(rules, history=AlertHistory(path))  # a new process adopts the firing alert
    assert second.evaluate(_drift(0.9)) == []
    [resolved] = second.evaluate(_drift(0.0))
    assert resolved.status == "resolved"
    stored = list_alerts(path)
    assert [(r.id, r.status) for r in stored] == [(resolved.id, "resolved")]
    assert list_alerts(path, status="firing") == []


def test_history_keeps_the_last_records_and_compacts_its_file(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    rules = load_alert_rules(RULES.format(url="http://127.0.0.1:1/hook").replace("for: 10s", "for: 0"))
    evaluator = AlertEvaluator(rules, history=AlertHistory(path, max_records=3))
    for _ in range(6):
        evaluator.evaluate(_drift(0.9))
        evaluator.evaluate(_drift(0.0))
    assert len(list_alerts(path)) == 3
    assert len(path.read_text().splitlines()) <= 6


def test_rules_can_read_an_exported_registry() -> None:
    metrics = MonitorMetrics()
    metrics.drift_score.labels(model_version="v1", feature="vocabulary").set(0.7)
    rules = load_alert_rules(RULES.format(url="http://127.0.0.1:1/hook").replace("for: 10s", "for: 0"))
    [fired] = AlertEvaluator(rules).evaluate(samples_from_registry(metrics.registry))
    assert fired.value == 0.7 and fired.labels["model_version"] == "v1"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (('op: ">"', 'op: "=>"'), "rules.0.op"),
        (("for: 10s", "for: soon"), "rules.0.for"),
        (("webhook: ops", "webhook: pager"), "rules.0.webhook"),
        (("labels:", "colour: red\n    labels:"), "rules.0.colour"),
        (("threshold: 0.2", "threshold: high"), "rules.0.threshold"),
    ],
)
def test_rule_errors_name_the_field(change: tuple[str, str], field: str) -> None:
    text = RULES.format(url="http://127.0.0.1:1/hook").replace(*change)
    with pytest.raises(InvalidInput) as info:
        load_alert_rules(text)
    assert info.value.param == field


def test_duplicate_rule_names_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="'a' is used twice") as info:
        parse_alert_rules({"rules": [{"name": "a", "metric": "m", "op": ">", "threshold": 1}] * 2})
    assert info.value.param == "rules.1.name"


def test_durations() -> None:
    assert parse_duration("1h30m") == 5400 and parse_duration("90s") == 90 and parse_duration(15) == 15
    with pytest.raises(ValueError):
        parse_duration("5 minutes")
