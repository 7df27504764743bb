"""``Monitor``: drift, online evaluation, feedback and alerting wired together for one process.

The gateway builds one ``Monitor`` with its Prometheus registry (and its store, to keep results),
calls ``on_response`` after each answered request (cheap: an append and a hash; scoring and checks
run in the background), ``submit_feedback`` for ``POST /v1/feedback``, and awaits
``start()``/``stop()`` with its lifespan. Feedback text (comment, corrected output) is redacted and
encrypted by the ``PayloadProtection`` it is given (the gateway passes the request log's) before it
is stored. With a store, feedback, online-evaluation results, drift
reports and alert state changes are written as rows by a batched background writer, and alerts a
previous process left firing are adopted. Alert rules read the samples of the monitor's registry
and of any other registries handed over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import NotFound
from llmops.evals.metric_base import MetricResources
from llmops.monitor.alert_history import AlertHistory, AlertRecord
from llmops.monitor.alert_rules import AlertRuleSet
from llmops.monitor.alert_store import alert_row, firing_alerts
from llmops.monitor.alerts import AlertEvaluator, MetricSample, samples_from_registry
from llmops.monitor.drift import DriftReport
from llmops.monitor.drift_config import DriftConfig
from llmops.monitor.drift_monitor import DriftMonitor
from llmops.monitor.drift_store import report_row
from llmops.monitor.feedback import Feedback, FeedbackAggregator, parse_feedback
from llmops.monitor.feedback_store import (
    FeedbackReceipt,
    FeedbackTarget,
    RecentRequests,
    feedback_row,
    find_request,
    find_response,
    protect_text,
    receipt,
)
from llmops.monitor.metrics import MonitorMetrics
from llmops.monitor.online_eval import OnlineEvalConfig, OnlineEvalRow, OnlineEvaluator
from llmops.monitor.online_eval_queue import OnlineEvalQueue, ServedResponse
from llmops.monitor.store_writer import MonitorStoreWriter
from llmops.monitor.webhook import WebhookSender
from llmops.security.payload_protection import PayloadProtection
from llmops.store.database import Store
from llmops.store.schema import OnlineEvalResult

MayRate = Callable[[FeedbackTarget], bool]


class MonitorConfig(BaseModel):
    """Everything the monitor of one process needs (the ``monitor:`` section of a config file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    drift: DriftConfig = Field(default_factory=DriftConfig, description="Drift measurement and thresholds.")
    drift_window_size: int = Field(default=500, ge=1, description="Recent prompts kept per model version.")
    drift_max_age_s: float | None = Field(default=None, gt=0, description="Drop prompts older than this.")
    drift_interval_s: float = Field(
        default=300.0, gt=0, description="Seconds between scheduled drift checks."
    )
    online_eval: OnlineEvalConfig | None = Field(default=None, description="Online evaluation; off if unset.")
    online_eval_queue_max: int = Field(
        default=1000, ge=1, description="Sampled responses waiting to be scored."
    )
    alert_rules: AlertRuleSet = Field(default_factory=AlertRuleSet, description="In-process alert rules.")
    alert_interval_s: float = Field(default=30.0, gt=0, description="Seconds between alert evaluations.")
    alert_history_path: Path | None = Field(default=None, description="JSON-lines file of the alert history.")
    webhook_queue_max: int = Field(default=100, ge=1, description="Notifications waiting per webhook target.")
    recent_requests: int = Field(
        default=10_000, ge=1, description="Answered requests remembered for feedback before the log has them."
    )
    store_flush_interval_s: float = Field(
        default=0.5, gt=0, description="Longest a monitoring row waits in memory before it is written."
    )


class Monitor:
    """The monitoring components of one process, sharing one set of metrics."""

    def __init__(
        self,
        config: MonitorConfig | None = None,
        registry: CollectorRegistry | None = None,
        *,
        resources: MetricResources | None = None,
        alert_sources: Sequence[CollectorRegistry] = (),
        store: Store | None = None,
        protection: PayloadProtection | None = None,
    ) -> None:
        self.config = config = config or MonitorConfig()
        self.store = store
        # feedback text is stored like a completion: redacted and encrypted by the same step
        self.protection = protection or PayloadProtection.from_settings()
        self.metrics = MonitorMetrics(registry)
        self.writer: MonitorStoreWriter | None = None
        if store is not None:
            self.writer = MonitorStoreWriter(
                store, flush_interval_s=config.store_flush_interval_s, metrics=self.metrics
            )
        self.recent = RecentRequests(config.recent_requests)
        self.drift = DriftMonitor(
            config.drift,
            window_size=config.drift_window_size,
            max_age_s=config.drift_max_age_s,
            metrics=self.metrics,
        )
        self.drift.add_listener(self._store_report)
        self.feedback = FeedbackAggregator(self.metrics)
        self.online: OnlineEvalQueue | None = None
        if config.online_eval is not None:
            evaluator = OnlineEvaluator(config.online_eval, metrics=self.metrics, resources=resources)
            self.online = OnlineEvalQueue(
                evaluator, queue_max=config.online_eval_queue_max, on_rows=self._store_scores
            )
        self.webhooks = WebhookSender(queue_max=config.webhook_queue_max, metrics=self.metrics)
        history = AlertHistory(
            config.alert_history_path,
            initial=firing_alerts(store) if store is not None else (),
            listener=self._store_alert,
        )
        self.alerts = AlertEvaluator(
            config.alert_rules, sender=self.webhooks, history=history, metrics=self.metrics
        )
        self._registries = [self.metrics.registry]
        self._registries += [r for r in alert_sources if all(r is not seen for seen in self._registries)]

    def samples(self) -> list[MetricSample]:
        """Current samples of every registry the alert rules read."""
        return [sample for registry in self._registries for sample in samples_from_registry(registry)]

    def on_response(
        self,
        *,
        request_id: str,
        model_version: str,
        prompt: str,
        completion: str,
        embedding: Sequence[float] | None = None,
        label: str | None = None,
        token_count: int | None = None,
        key_id: str | None = None,
    ) -> None:
        """Feed one answered request to drift, feedback rate and (if sampled) online evaluation."""
        self.recent.add(FeedbackTarget(request_id, model_version, key_id))
        self.drift.observe(model_version, prompt, embedding=embedding, label=label, token_count=token_count)
        self.feedback.record_request(model_version)
        if self.online is not None:
            self.online.submit(ServedResponse(request_id, model_version, prompt, completion))

    def record_feedback(self, model_version: str, body: Mapping[str, Any]) -> Feedback:
        """Validate a feedback body (``InvalidInput`` names the field) and count it for the version."""
        feedback = parse_feedback(body)
        self.feedback.record(model_version, feedback)
        return feedback

    async def submit_feedback(
        self,
        body: Any,
        *,
        key_id: str | None,
        may_rate: MayRate | None = None,
        answered_as: str | None = None,
    ) -> FeedbackReceipt:
        """Validate, attach to its request, count and store one feedback (``POST /v1/feedback``).

        ``request_id`` is the request's id (the ``x-request-id`` header) or the answer's own id
        (``chatcmpl-...``), looked up in the request log so that any worker finds it;
        ``answered_as`` is the request id this worker remembers for that answer id, tried first (the
        row may not be written yet). ``InvalidInput`` names a malformed field; ``NotFound`` (on
        ``request_id``) when no request matches or ``may_rate(target)`` refuses every match
        (another key's request is reported as unknown, so ids of others cannot be probed).
        """
        feedback = parse_feedback(body)
        target = await self._feedback_target(feedback.request_id, answered_as, may_rate)
        if target is None:
            raise NotFound(
                f"no request {feedback.request_id!r} answered with this key; send the response's "
                "x-request-id header or its 'id' field",
                param="request_id",
            )
        feedback = feedback.model_copy(update={"request_id": target.request_id})
        stored = feedback
        if feedback.comment or feedback.corrected_output:
            stored = await asyncio.to_thread(protect_text, feedback, self.protection)
        row = feedback_row(stored, target, key_id=key_id)
        if target.model_version:
            self.feedback.record(target.model_version, feedback)
        if self.writer is not None:
            self.writer.submit(row)
        return receipt(row, feedback)

    async def _feedback_target(
        self, given: str, answered_as: str | None, may_rate: MayRate | None
    ) -> FeedbackTarget | None:
        """The request ``given`` names (by request id, then by answer id) that ``may_rate`` allows."""

        def allowed(target: FeedbackTarget | None) -> bool:
            return target is not None and (may_rate is None or may_rate(target))

        for request_id in (answered_as, given):
            if request_id is None:
                continue
            target = self.recent.get(request_id)
            if target is None and self.store is not None:
                target = await asyncio.to_thread(find_request, self.store, request_id)
            if allowed(target):
                return target
        if self.store is None:
            return None
        candidates = await asyncio.to_thread(find_response, self.store, given)
        return next((target for target in candidates if allowed(target)), None)

    async def start(self) -> None:
        """Start the store writer, scheduled drift checks and alert evaluation (on the serving loop)."""
        if self.writer is not None:
            await self.writer.start()
        self.drift.start(self.config.drift_interval_s)
        self.alerts.start(self.samples, self.config.alert_interval_s)

    async def flush(self) -> None:
        """Score what is queued for online evaluation and write every pending row now."""
        if self.online is not None:
            await self.online.drain()
        if self.writer is not None:
            await self.writer.flush()

    async def stop(self) -> None:
        await self.alerts.stop()
        await self.drift.stop()
        if self.online is not None:
            await self.online.close()
            self.online.evaluator.close()
        await self.webhooks.close()
        if self.writer is not None:
            await self.writer.close()

    def _store_report(self, report: DriftReport) -> None:
        if self.writer is not None:
            self.writer.submit(report_row(report))

    def _store_scores(self, rows: list[OnlineEvalRow]) -> None:
        if self.writer is None:
            return
        for row in rows:
            self.writer.submit(
                OnlineEvalResult(
                    request_id=row.request_id,
                    metric=row.metric[:100],
                    model_version=row.model_version,
                    value=row.value,
                    raw_value=row.raw_value,
                    error=row.error,
                    scored_at=row.scored_at,
                )
            )

    def _store_alert(self, record: AlertRecord) -> None:
        if self.writer is not None:
            self.writer.submit(alert_row(record))
