"""The registry of metric kinds: which spec configures which implementation, and how to build it.

Adding a metric kind means writing its spec (``metric_specs``), its ``Metric`` class, and one
``MetricKind`` line below; suites, validation, aggregation and reports pick it up from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llmops.errors import InvalidInput
from llmops.evals import metric_specs as specs
from llmops.evals.judge import JudgeMetric
from llmops.evals.metric_base import Metric, MetricResources
from llmops.evals.metrics_runtime import LatencyTtft, Perplexity, TokensPerSecond
from llmops.evals.metrics_safety import Refusal, SecretLeak
from llmops.evals.metrics_structured import F1, Accuracy, JsonSchema, JsonValid
from llmops.evals.metrics_text import Bleu, Chrf, Contains, ExactMatch, Numeric, Regex, Rouge


@dataclass(frozen=True)
class MetricKind:
    """One registered kind: its spec model, its implementation, and how to build one from a spec."""

    spec_type: type[specs.MetricSpecBase]
    metric_type: type[Metric]
    build: Callable[[Any, MetricResources], Metric]

    @property
    def kind(self) -> str:
        return self.metric_type.kind


def _simple(metric_type: Callable[[Any], Metric]) -> Callable[[Any, MetricResources], Metric]:
    return lambda spec, _resources: metric_type(spec)


_KINDS: tuple[MetricKind, ...] = (
    MetricKind(specs.ExactMatchSpec, ExactMatch, _simple(ExactMatch)),
    MetricKind(specs.ContainsSpec, Contains, _simple(Contains)),
    MetricKind(specs.RegexSpec, Regex, _simple(Regex)),
    MetricKind(specs.NumericSpec, Numeric, _simple(Numeric)),
    MetricKind(specs.JsonValidSpec, JsonValid, _simple(JsonValid)),
    MetricKind(specs.JsonSchemaSpec, JsonSchema, _simple(JsonSchema)),
    MetricKind(specs.RougeSpec, Rouge, _simple(Rouge)),
    MetricKind(specs.BleuSpec, Bleu, _simple(Bleu)),
    MetricKind(specs.ChrfSpec, Chrf, _simple(Chrf)),
    MetricKind(specs.AccuracySpec, Accuracy, _simple(Accuracy)),
    MetricKind(specs.F1Spec, F1, _simple(F1)),
    MetricKind(specs.RefusalSpec, Refusal, _simple(Refusal)),
    MetricKind(specs.SecretLeakSpec, SecretLeak, _simple(SecretLeak)),
    MetricKind(specs.PerplexitySpec, Perplexity, _simple(Perplexity)),
    MetricKind(specs.LatencyTtftSpec, LatencyTtft, _simple(LatencyTtft)),
    MetricKind(specs.TokensPerSecondSpec, TokensPerSecond, _simple(TokensPerSecond)),
    MetricKind(specs.JudgeSpec, JudgeMetric, JudgeMetric),
)
METRIC_KINDS: dict[str, MetricKind] = {entry.kind: entry for entry in _KINDS}


def metric_kinds() -> tuple[str, ...]:
    """The names of every registered metric kind, sorted."""
    return tuple(sorted(METRIC_KINDS))


def metric_kind(kind: str) -> MetricKind:
    """The registered kind ``kind``, or ``InvalidInput`` naming it and the known kinds."""
    entry = METRIC_KINDS.get(kind)
    if entry is None:
        raise InvalidInput(
            f"unknown metric {kind!r}; known metrics: {', '.join(metric_kinds())}", param="metrics.name"
        )
    return entry


def build_metric(spec: specs.MetricSpecBase, resources: MetricResources | None = None) -> Metric:
    """The metric a spec configures."""
    entry = metric_kind(spec.kind)
    if not isinstance(spec, entry.spec_type):
        raise InvalidInput(f"metric {spec.kind!r} got a {type(spec).__name__} spec", param="metrics")
    return entry.build(spec, resources or MetricResources())


def build_metrics(
    metric_specs: Sequence[specs.MetricSpecBase], resources: MetricResources | None = None
) -> list[Metric]:
    """Every metric of a suite; duplicate ids are an error. Call ``close()`` on each when done."""
    seen: set[str] = set()
    built: list[Metric] = []
    try:
        for spec in metric_specs:
            if spec.metric_id in seen:
                raise InvalidInput(
                    f"two metrics are named {spec.metric_id!r}; give one a distinct 'id'", param="metrics.id"
                )
            seen.add(spec.metric_id)
            built.append(build_metric(spec, resources))
    except Exception:
        for metric in built:
            metric.close()
        raise
    return built
