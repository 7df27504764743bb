"""Prometheus metrics of the monitoring package, in a registry the caller hands over.

``MonitorMetrics(registry)`` creates every ``llmops_drift_*``, ``llmops_online_eval_*``,
``llmops_feedback_*``, ``llmops_alert*``, ``llmops_key_budget_*`` and ``llmops_monitor_store_*``
metric in that registry (the gateway passes its own, so one ``/metrics`` shows both); with no
registry it makes a private one.
The components of this package update these through small typed methods, so a metric name lives
in exactly one place.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Summary, generate_latest


class MonitorMetrics:
    """Drift, online-evaluation, feedback, alerting and budget metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._add_drift(self.registry)
        self._add_online_eval(self.registry)
        self._add_feedback(self.registry)
        self._add_alerting(self.registry)
        self._add_budget(self.registry)
        self._add_store(self.registry)

    def _add_drift(self, r: CollectorRegistry) -> None:
        self.drift_score = Gauge(
            "llmops_drift_score", "Drift effect size of a feature in the last check (PSI or mean shift).",
            ["model_version", "feature"], registry=r,
        )  # fmt: skip
        self.drift_p_value = Gauge(
            "llmops_drift_p_value", "p-value of a feature's drift test in the last check.",
            ["model_version", "feature"], registry=r,
        )  # fmt: skip
        self.drift_detected = Gauge(
            "llmops_drift_detected", "1 when the last check found drift (feature='overall': the verdict).",
            ["model_version", "feature"], registry=r,
        )  # fmt: skip
        self.drift_window = Gauge(
            "llmops_drift_window_prompts",
            "Prompts in the current drift window.",
            ["model_version"],
            registry=r,
        )
        self.drift_checks = Counter(
            "llmops_drift_checks", "Drift checks by outcome (ok, drifted, insufficient).",
            ["model_version", "outcome"], registry=r,
        )  # fmt: skip

    def _add_online_eval(self, r: CollectorRegistry) -> None:
        self.online_score = Summary(
            "llmops_online_eval_score", "Scores (0..1) of sampled live responses (windowed mean: sum/count).",
            ["model_version", "metric"], registry=r,
        )  # fmt: skip
        self.online_mean = Gauge(
            "llmops_online_eval_score_mean", "Running mean (0..1) of online-evaluation scores since start.",
            ["model_version", "metric"], registry=r,
        )  # fmt: skip
        self.online_errors = Counter(
            "llmops_online_eval_errors", "Online evaluations that produced no score (judge down, ...).",
            ["model_version", "metric"], registry=r,
        )  # fmt: skip
        self.online_sampled = Counter(
            "llmops_online_eval_sampled",
            "Responses picked for online evaluation.",
            ["model_version"],
            registry=r,
        )
        self.online_dropped = Counter(
            "llmops_online_eval_dropped", "Sampled responses dropped because the scoring queue was full.",
            registry=r,
        )  # fmt: skip

    def _add_feedback(self, r: CollectorRegistry) -> None:
        self.feedback = Counter(
            "llmops_feedback", "Feedback received, by rating (positive, negative, neutral, unrated).",
            ["model_version", "rating"], registry=r,
        )  # fmt: skip
        self.feedback_score = Summary(
            "llmops_feedback_score",
            "Feedback scores (0..1; thumbs up = 1, down = 0).",
            ["model_version"],
            registry=r,
        )
        self.feedback_rate = Gauge(
            "llmops_feedback_rate", "Feedback received per request served by this process, by version.",
            ["model_version"], registry=r,
        )  # fmt: skip

    def _add_alerting(self, r: CollectorRegistry) -> None:
        self.alerts_firing = Gauge(
            "llmops_alerts_firing", "Alerts firing now, by rule.", ["alertname"], registry=r
        )
        self.alert_notifications = Counter(
            "llmops_alert_notifications", "Alert state changes notified (firing, resolved).",
            ["alertname", "status"], registry=r,
        )  # fmt: skip
        self.webhook_deliveries = Counter(
            "llmops_alert_webhook_deliveries", "Webhook deliveries by outcome (delivered, failed, dropped).",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.webhook_attempts = Counter(
            "llmops_alert_webhook_attempts", "Webhook POST attempts by result (ok, retry, error).",
            ["result"], registry=r,
        )  # fmt: skip

    def _add_budget(self, r: CollectorRegistry) -> None:
        self.budget_usd = Gauge(
            "llmops_key_budget_usd", "Budget of an API key in USD.", ["key_id"], registry=r
        )
        self.budget_spent_usd = Gauge(
            "llmops_key_budget_spent_usd",
            "USD an API key has spent against its budget.",
            ["key_id"],
            registry=r,
        )

    def _add_store(self, r: CollectorRegistry) -> None:
        self.store_written = Counter(
            "llmops_monitor_store_written", "Monitoring rows (feedback, scores, alerts, drift) written.",
            registry=r,
        )  # fmt: skip
        self.store_dropped = Counter(
            "llmops_monitor_store_dropped", "Monitoring rows dropped because the write queue was full.",
            registry=r,
        )  # fmt: skip

    def set_key_budget(self, key_id: str, budget_usd: float, spent_usd: float) -> None:
        """Record a key's budget and spend (the gateway calls this after settling a request)."""
        self.budget_usd.labels(key_id=key_id).set(budget_usd)
        self.budget_spent_usd.labels(key_id=key_id).set(spent_usd)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
