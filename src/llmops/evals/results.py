"""Typed results that flow between the evaluation layers.

The runner turns each dataset row into an ``ExampleOutcome`` (prediction plus one ``MetricResult``
per metric); ``summary`` turns a ``RunResults`` into a ``RunSummary``; ``stats`` pairs two runs into a
``Comparison``; ``gates`` and ``report`` read those. Everything here is a frozen dataclass so a
result can be stored, compared and rendered without loose dicts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["better", "worse", "no_detectable_difference"]
TestName = Literal["mcnemar_exact", "wilcoxon_signed_rank"]


@dataclass(frozen=True)
class JudgeTrace:
    """What an LLM judge was asked and what it answered, kept for audit and debugging."""

    prompt: str
    raw_verdict: str | None
    score: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class MetricResult:
    """One metric on one example.

    ``value`` is ``None`` exactly when the metric could not be computed, and then ``error`` says
    why (judge down, runner gave no latency, ...): an errored example is never a silent pass.
    ``stats`` holds per-example sufficient statistics for corpus-level metrics (BLEU n-gram
    counts, label pairs, log-likelihood sums); it is empty for metrics aggregated by the mean.
    """

    value: float | None
    error: str | None = None
    stats: tuple[float, ...] = ()
    judge: JudgeTrace | None = None

    def __post_init__(self) -> None:
        if (self.value is None) == (self.error is None):
            raise ValueError("a metric result has either a value or an error, not both or neither")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"a metric value must be finite, got {self.value}")

    @classmethod
    def ok(cls, value: float, stats: tuple[float, ...] = ()) -> MetricResult:
        return cls(value=float(value), stats=stats)

    @classmethod
    def failed(cls, reason: str, judge: JudgeTrace | None = None) -> MetricResult:
        return cls(value=None, error=reason, judge=judge)

    @property
    def errored(self) -> bool:
        return self.value is None


@dataclass(frozen=True)
class ExampleOutcome:
    """One dataset row after generation and scoring; ``example_id`` pairs it across runs."""

    example_id: str
    prompt: str
    prediction: str
    reference: str | None
    scores: Mapping[str, MetricResult] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResults:
    """All outcomes of one model on one suite. ``model`` is a display label (a version or alias)."""

    suite: str
    model: str
    outcomes: tuple[ExampleOutcome, ...]

    def metric_results(self, metric_id: str) -> list[MetricResult]:
        """The results of one metric in example order; a row without that metric counts as errored."""
        missing = MetricResult.failed(f"no result recorded for metric {metric_id!r}")
        return [outcome.scores.get(metric_id, missing) for outcome in self.outcomes]


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval at ``confidence`` (e.g. 0.95)."""

    low: float
    high: float
    confidence: float

    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


@dataclass(frozen=True)
class MetricInfo:
    """What aggregation, comparison and gates need to know about a metric."""

    metric_id: str
    kind: str
    binary: bool
    higher_is_better: bool
    corpus_level: bool


@dataclass(frozen=True)
class MetricSummary:
    """One metric over a run: its score (mean, or corpus score), a bootstrap CI, and its errors.

    ``score`` and ``interval`` are computed over the examples that did not error; ``n_errors`` and
    ``first_error`` tell gates to fail closed.
    """

    info: MetricInfo
    n: int
    n_errors: int
    score: float | None
    interval: Interval | None
    first_error: str | None = None

    @property
    def errored(self) -> bool:
        return self.n_errors > 0 or self.score is None


@dataclass(frozen=True)
class RunSummary:
    """Every metric of one run, in suite order."""

    suite: str
    model: str
    n_examples: int
    metrics: tuple[MetricSummary, ...]

    def get(self, metric_id: str) -> MetricSummary | None:
        return next((m for m in self.metrics if m.info.metric_id == metric_id), None)


@dataclass(frozen=True)
class MetricComparison:
    """Candidate vs baseline on one metric over the examples both runs scored.

    ``difference`` and ``interval`` are candidate − baseline in the metric's own units (not
    re-signed for lower-is-better metrics; the verdict accounts for direction). ``verdict`` is
    ``None`` only when the metric could not be compared, and then ``error`` says why.
    """

    info: MetricInfo
    n_pairs: int
    candidate: float | None
    baseline: float | None
    difference: float | None
    interval: Interval | None
    p_value: float | None
    test: TestName
    verdict: Verdict | None
    candidate_only_wins: int | None = None
    baseline_only_wins: int | None = None
    n_errors: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Comparison:
    """A candidate run against a baseline run, metric by metric."""

    suite: str
    candidate: str
    baseline: str
    n_paired_examples: int
    n_unpaired_examples: int
    metrics: tuple[MetricComparison, ...]

    def get(self, metric_id: str) -> MetricComparison | None:
        return next((m for m in self.metrics if m.info.metric_id == metric_id), None)
