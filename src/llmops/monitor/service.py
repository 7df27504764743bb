"""``Monitor``: drift, online evaluation, feedback and alerting wired together for one process.

The gateway builds one ``Monitor`` with its Prometheus registry, calls ``on_response`` after each
answered request (cheap: an append and a hash; scoring and checks run in the background) and
``record_feedback`` for ``POST /v1/feedback``, and awaits ``start()``/``stop()`` with its lifespan.
Alert rules read the samples of the monitor's registry and of any other registries handed over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field

from llmops.evals.metric_base import MetricResources
from llmops.monitor.alert_history import AlertHistory
from llmops.monitor.alert_rules import AlertRuleSet
from llmops.monitor.alerts import AlertEvaluator, MetricSample, samples_from_registry
from llmops.monitor.drift_config import DriftConfig
from llmops.monitor.drift_monitor import DriftMonitor
from llmops.monitor.feedback import Feedback, FeedbackAggregator, parse_feedback
from llmops.monitor.metrics import MonitorMetrics
from llmops.monitor.online_eval import OnlineEvalConfig, OnlineEvaluator
from llmops.monitor.online_eval_queue import OnlineEvalQueue, ServedResponse
from llmops.monitor.webhook import WebhookSender


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


class Monitor:
    """The monitoring components of one process, sharing one set of metrics."""

    def __init__(
        self,
        config: MonitorConfig | None = None,
        registry: CollectorRegistry | None = None,
        *,
        resources: MetricResources | None = None,
        alert_sources: Sequence[CollectorRegistry] = (),
    ) -> None:
        self.config = config = config or MonitorConfig()
        self.metrics = MonitorMetrics(registry)
        self.drift = DriftMonitor(
            config.drift,
            window_size=config.drift_window_size,
            max_age_s=config.drift_max_age_s,
            metrics=self.metrics,
        )
        self.feedback = FeedbackAggregator(self.metrics)
        self.online: OnlineEvalQueue | None = None
        if config.online_eval is not None:
            evaluator = OnlineEvaluator(config.online_eval, metrics=self.metrics, resources=resources)
            self.online = OnlineEvalQueue(evaluator, queue_max=config.online_eval_queue_max)
        self.webhooks = WebhookSender(queue_max=config.webhook_queue_max, metrics=self.metrics)
        self.alerts = AlertEvaluator(
            config.alert_rules,
            sender=self.webhooks,
            history=AlertHistory(config.alert_history_path),
            metrics=self.metrics,
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
    ) -> None:
        """Feed one answered request to drift, feedback rate and (if sampled) online evaluation."""
        self.drift.observe(model_version, prompt, embedding=embedding, label=label, token_count=token_count)
        self.feedback.record_request(model_version)
        if self.online is not None:
            self.online.submit(ServedResponse(request_id, model_version, prompt, completion))

    def record_feedback(self, model_version: str, body: Mapping[str, Any]) -> Feedback:
        """Validate a feedback body (``InvalidInput`` names the field) and count it for the version."""
        feedback = parse_feedback(body)
        self.feedback.record(model_version, feedback)
        return feedback

    async def start(self) -> None:
        """Start the scheduled drift checks and alert evaluation (call on the serving loop)."""
        self.drift.start(self.config.drift_interval_s)
        self.alerts.start(self.samples, self.config.alert_interval_s)

    async def stop(self) -> None:
        await self.alerts.stop()
        await self.drift.stop()
        if self.online is not None:
            await self.online.close()
            self.online.evaluator.close()
        await self.webhooks.close()
