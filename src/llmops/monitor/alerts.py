"""Alert evaluation: firing and resolved state per rule and label set, notified once each.

``AlertEvaluator.evaluate(samples)`` checks every rule against the current metric samples. A
label set whose condition holds becomes pending, and fires once it has held for the rule's ``for``;
firing sends one notification (nothing more while it keeps firing) and a sample that no longer
meets the condition, or has disappeared, resolves it with a second notification. Notifications go
through a ``WebhookSender`` (queued, never awaited here) as an Alertmanager-style JSON body, and
every alert is kept in an ``AlertHistory``. ``samples_from_registry`` turns a Prometheus registry
into samples, so rules can read any exported metric; ``start`` evaluates on a schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict

from llmops.errors import InvalidInput
from llmops.monitor.alert_history import AlertHistory, AlertRecord
from llmops.monitor.alert_rules import AlertRule, AlertRuleSet
from llmops.monitor.metrics import MonitorMetrics
from llmops.monitor.webhook import WebhookSender

log = logging.getLogger(__name__)
_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not resolved yet"


@dataclass(frozen=True)
class MetricSample:
    """One value of one series: a sample name, its labels, its value."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


SampleSource = Callable[[], Iterable[MetricSample]]


def samples_from_registry(registry: CollectorRegistry) -> list[MetricSample]:
    """Every sample of ``registry`` (counters as ``*_total``, histograms as ``*_bucket`` ...)."""
    samples = []
    for family in registry.collect():
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                samples.append(MetricSample(sample.name, float(sample.value), dict(sample.labels)))
    return samples


class AlertPayloadAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: str
    endsAt: str
    generatorURL: str = ""
    fingerprint: str


class AlertPayload(BaseModel):
    """The webhook body: the shape of Alertmanager's webhook (version 4), one alert per message."""

    model_config = ConfigDict(extra="forbid")

    version: str = "4"
    groupKey: str
    truncatedAlerts: int = 0
    status: str
    receiver: str
    groupLabels: dict[str, str]
    commonLabels: dict[str, str]
    commonAnnotations: dict[str, str]
    externalURL: str = ""
    alerts: list[AlertPayloadAlert]


def alert_payload(record: AlertRecord, receiver: str) -> AlertPayload:
    """The notification for ``record``'s current state."""
    ends = record.resolved_at.isoformat() if record.resolved_at is not None else _ZERO_TIME
    alert = AlertPayloadAlert(
        status=record.status,
        labels=record.labels,
        annotations=record.annotations,
        startsAt=record.started_at.isoformat(),
        endsAt=ends,
        fingerprint=record.fingerprint,
    )
    return AlertPayload(
        groupKey=record.fingerprint,
        status=record.status,
        receiver=receiver,
        groupLabels={"alertname": record.rule},
        commonLabels=record.labels,
        commonAnnotations=record.annotations,
        alerts=[alert],
    )


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """A stable id of one rule's series: the rule name and the sample's sorted labels."""
    text = "\x1f".join([rule, *(f"{key}={labels[key]}" for key in sorted(labels))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class _Series:
    rule: str
    pending_since: float
    record: AlertRecord | None = None  # set once it fires


class AlertEvaluator:
    """Evaluates alert rules over metric samples and notifies state changes."""

    def __init__(
        self,
        rules: AlertRuleSet,
        *,
        sender: WebhookSender | None = None,
        history: AlertHistory | None = None,
        metrics: MonitorMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = rules
        self.sender = sender
        self.history = history if history is not None else AlertHistory()
        self.metrics = metrics
        self.clock = clock
        self._series: dict[str, _Series] = {}
        self._task: asyncio.Task[None] | None = None
        for record in self.history.firing():  # adopt alerts a previous process left firing
            self._series[record.fingerprint] = _Series(record.rule, record.started_at.timestamp(), record)

    def evaluate(self, samples: Iterable[MetricSample]) -> list[AlertRecord]:
        """Apply every rule to ``samples``; returns the alerts that fired or resolved in this round."""
        now = self.clock()
        holding: dict[str, tuple[AlertRule, MetricSample]] = {}
        sample_list = list(samples)
        for rule in self.rules.rules:
            for sample in sample_list:
                labels = dict(sample.labels)
                if rule.matches(sample.name, labels) and rule.holds(sample.value):
                    holding[fingerprint(rule.name, labels)] = (rule, sample)
        changes = [self._resolve(key, now) for key in list(self._series) if key not in holding]
        for key, (rule, sample) in holding.items():
            fired = self._advance(key, rule, sample, now)
            if fired is not None:
                changes.append(fired)
        self._export()
        return [change for change in changes if change is not None]

    def firing(self) -> list[AlertRecord]:
        """Alerts firing now."""
        return [series.record for series in self._series.values() if series.record is not None]

    def start(self, source: SampleSource, interval_s: float) -> None:
        """Evaluate ``source()`` every ``interval_s`` seconds in a task of the running loop."""
        if interval_s <= 0:
            raise InvalidInput("the alert evaluation interval must be positive", param="interval_s")
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(source, interval_s))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, source: SampleSource, interval_s: float) -> None:
        while True:
            try:
                self.evaluate(source())
            except Exception:  # a failing source must not end the schedule
                log.exception("alert evaluation failed")
            await asyncio.sleep(interval_s)

    def _advance(self, key: str, rule: AlertRule, sample: MetricSample, now: float) -> AlertRecord | None:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(rule.name, now)
        if series.record is not None:
            series.record = series.record.model_copy(update={"value": sample.value})
            return None
        if now - series.pending_since < rule.for_s:
            return None
        series.record = _new_record(key, rule, sample, now)
        self._changed(series.record)
        return series.record

    def _resolve(self, key: str, now: float) -> AlertRecord | None:
        series = self._series.pop(key)
        if series.record is None:  # pending only: it never fired, nothing to tell
            return None
        resolved = series.record.model_copy(
            update={"status": "resolved", "resolved_at": datetime.fromtimestamp(now, UTC)}
        )
        self._changed(resolved)
        return resolved

    def _changed(self, record: AlertRecord) -> None:
        self.history.record(record)
        if self.metrics is not None:
            self.metrics.alert_notifications.labels(alertname=record.rule, status=record.status).inc()
        target = self.rules.webhooks.get(record.webhook) if record.webhook is not None else None
        if target is None or self.sender is None or record.webhook is None:
            return
        payload = alert_payload(record, record.webhook).model_dump(mode="json")
        self.sender.submit(target, payload, key=f"{record.id}:{record.status}")

    def _export(self) -> None:
        if self.metrics is None:
            return
        counts = {rule.name: 0 for rule in self.rules.rules}
        for record in self.firing():
            counts[record.rule] = counts.get(record.rule, 0) + 1
        for name, count in counts.items():
            self.metrics.alerts_firing.labels(alertname=name).set(count)


def _new_record(key: str, rule: AlertRule, sample: MetricSample, now: float) -> AlertRecord:
    labels = {"alertname": rule.name, **sample.labels, **rule.labels}
    summary = f"{rule.metric} {rule.op} {rule.threshold:g} (value {sample.value:.4g})"
    return AlertRecord(
        id=uuid.uuid4().hex,
        fingerprint=key,
        rule=rule.name,
        status="firing",
        metric=rule.metric,
        op=rule.op,
        threshold=rule.threshold,
        value=sample.value,
        labels=labels,
        annotations={"summary": summary, **rule.annotations},
        webhook=rule.webhook,
        started_at=datetime.fromtimestamp(now, UTC),
    )
