"""Online evaluation: score a deterministic share of live responses with reference-free metrics.

A request is sampled when the hash of its id (salted) falls under ``sample_rate``, so the same
request is always in or out, whichever worker sees it, and the share over many ids is the rate.
Sampled responses are scored by the evals package's metrics that need no reference (JSON
validity, JSON Schema, regex/format checks, refusal, secret leaks, and LLM-as-judge when a judge
is configured). Every score is normalised to 0..1 (a judge's ``min..max`` scale is mapped onto it)
so one threshold fits all metrics. Results are typed rows, running aggregates per model version
and metric, and ``llmops_online_eval_*`` Prometheus metrics. ``score`` blocks (a judge makes an HTTP
call): on an event loop use ``OnlineEvalQueue``, which scores in a worker thread.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmops.errors import InvalidInput
from llmops.evals.metric_base import EvalExample, Metric, MetricResources
from llmops.evals.metric_specs import JudgeSpec, MetricSpec, MetricSpecBase, RefusalSpec, SecretLeakSpec
from llmops.evals.metrics import build_metrics
from llmops.monitor.metrics import MonitorMetrics

ONLINE_METRIC_KINDS = ("json_valid", "json_schema", "regex", "refusal", "secret_leak", "judge")


def sampled(request_id: str, rate: float, salt: str = "") -> bool:
    """Whether ``request_id`` is in the ``rate`` share of traffic (deterministic, by sha256)."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.sha256(f"{salt}\x1f{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < rate * 2.0**64


def _default_metrics() -> list[MetricSpec]:
    """Over-refusal: 1.0 when the model answered, so the mean is the compliance rate."""
    return [RefusalSpec(name="refusal", expect="comply")]


class OnlineEvalConfig(BaseModel):
    """Which share of traffic is scored, and by which reference-free metrics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: float = Field(default=0.05, ge=0.0, le=1.0, description="Share of requests scored (0..1).")
    salt: str = Field(default="", description="Changes which requests are picked (not how many).")
    metrics: list[MetricSpec] = Field(
        default_factory=_default_metrics,
        min_length=1,
        description="Reference-free metrics (json_valid, json_schema, regex, refusal, secret_leak, judge).",
    )

    @field_validator("metrics")
    @classmethod
    def _reference_free(cls, metrics: list[MetricSpecBase]) -> list[MetricSpecBase]:
        for spec in metrics:
            if spec.kind not in ONLINE_METRIC_KINDS:
                raise ValueError(
                    f"metric {spec.kind!r} needs a reference or runner measurements; online evaluation "
                    f"can use: {', '.join(ONLINE_METRIC_KINDS)}"
                )
            if isinstance(spec, SecretLeakSpec) and spec.secret_field is not None:
                raise ValueError(
                    "secret_leak online needs a fixed 'secret'; live traffic has no secret_field"
                )
        ids = [spec.metric_id for spec in metrics]
        if len(set(ids)) != len(ids):
            raise ValueError("two metrics have the same id; give one a distinct 'id'")
        return metrics


@dataclass(frozen=True)
class OnlineEvalRow:
    """One metric on one sampled response. ``value`` is 0..1, None when scoring failed (``error``)."""

    request_id: str
    model_version: str
    metric: str
    value: float | None
    raw_value: float | None
    error: str | None
    scored_at: datetime


@dataclass(frozen=True)
class OnlineAggregate:
    """Running aggregate of one metric for one model version."""

    model_version: str
    metric: str
    count: int
    mean: float
    errors: int


@dataclass
class _Running:
    count: int = 0
    total: float = 0.0
    errors: int = 0


class OnlineEvaluator:
    """Scores sampled responses and keeps aggregates; thread-safe for aggregates and rows."""

    def __init__(
        self,
        config: OnlineEvalConfig | None = None,
        *,
        metrics: MonitorMetrics | None = None,
        resources: MetricResources | None = None,
        recent_rows: int = 1000,
    ) -> None:
        self.config = config or OnlineEvalConfig()
        self.prometheus = metrics
        self._specs = {spec.metric_id: spec for spec in self.config.metrics}
        self._metrics: list[Metric] = build_metrics(self.config.metrics, resources)
        self._running: dict[tuple[str, str], _Running] = {}
        self._rows: deque[OnlineEvalRow] = deque(maxlen=recent_rows)
        self._lock = threading.Lock()

    def should_score(self, request_id: str) -> bool:
        return sampled(request_id, self.config.sample_rate, self.config.salt)

    def score(self, request_id: str, model_version: str, prompt: str, completion: str) -> list[OnlineEvalRow]:
        """Score one response with every metric (blocking); records rows, aggregates and metrics."""
        if not request_id:
            raise InvalidInput("request_id must not be empty", param="request_id")
        example = EvalExample(example_id=request_id, prompt=prompt)
        rows = []
        for metric in self._metrics:
            result = metric.score(completion, None, example)
            raw = result.value
            value = None if raw is None else self._normalise(metric.metric_id, raw)
            rows.append(
                OnlineEvalRow(
                    request_id, model_version, metric.metric_id, value, raw, result.error, datetime.now(UTC)
                )
            )
        self._record(rows)
        return rows

    def aggregates(self) -> list[OnlineAggregate]:
        """Count, mean and errors per (model version, metric), sorted."""
        with self._lock:
            items = sorted(self._running.items())
            return [
                OnlineAggregate(version, metric, r.count, r.total / r.count if r.count else 0.0, r.errors)
                for (version, metric), r in items
            ]

    def rows(self) -> list[OnlineEvalRow]:
        """The most recent rows, oldest first."""
        with self._lock:
            return list(self._rows)

    def close(self) -> None:
        for metric in self._metrics:
            metric.close()

    def _normalise(self, metric_id: str, raw: float) -> float:
        spec = self._specs[metric_id]
        if isinstance(spec, JudgeSpec):
            return (raw - spec.min_score) / (spec.max_score - spec.min_score)
        return raw

    def _record(self, rows: list[OnlineEvalRow]) -> None:
        with self._lock:
            for row in rows:
                running = self._running.setdefault((row.model_version, row.metric), _Running())
                if row.value is None:
                    running.errors += 1
                else:
                    running.count += 1
                    running.total += row.value
                self._rows.append(row)
                self._export(row, running)

    def _export(self, row: OnlineEvalRow, running: _Running) -> None:
        if self.prometheus is None:
            return
        labels = {"model_version": row.model_version, "metric": row.metric}
        if row.value is None:
            self.prometheus.online_errors.labels(**labels).inc()
            return
        self.prometheus.online_score.labels(**labels).observe(row.value)
        self.prometheus.online_mean.labels(**labels).set(running.total / running.count)
