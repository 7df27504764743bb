"""Gates: declarative pass/fail checks over a run, each reporting the numbers that decided it.

* ``min`` / ``max``: the metric's run score is >= / <= the threshold.
* ``no_regression_vs: <alias>``: the candidate must not be worse than the baseline run of that
  registry alias by more than ``tolerance``: with ``improvement`` = candidate − baseline (sign flipped
  for lower-is-better metrics such as latency and perplexity), the gate fails when the lower bound
  of the paired bootstrap interval of the improvement, at the gate's confidence, is below
  −tolerance.

Every gate fails closed: a metric with errored examples, a metric missing from the results, or a
baseline alias with no run all fail with the reason, never pass by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llmops.evals.metric_base import Metric
from llmops.evals.results import Interval, MetricComparison, RunResults, RunSummary
from llmops.evals.stats import compare_metric, paired_scores
from llmops.evals.suite import GateKind, GateSpec, StatisticsConfig


@dataclass(frozen=True)
class GateResult:
    """One gate's outcome. For ``no_regression`` gates ``observed`` and ``interval`` are the
    improvement (candidate − baseline, re-signed so higher is better) and ``threshold`` is −tolerance.
    """

    name: str
    kind: GateKind
    metric: str
    passed: bool
    reason: str
    observed: float | None = None
    threshold: float | None = None
    interval: Interval | None = None
    baseline: str | None = None


@dataclass(frozen=True)
class GateReport:
    """All gates of a run; it passes only when every gate passes."""

    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> tuple[GateResult, ...]:
        return tuple(result for result in self.results if not result.passed)

    def exit_code(self) -> int:
        """0 when every gate passed, 1 otherwise (for CI jobs)."""
        return 0 if self.passed else 1


@dataclass(frozen=True)
class GateInputs:
    """What gates read: the candidate's summary, and for ``no_regression`` gates the paired data."""

    summary: RunSummary
    metrics: Sequence[Metric] = ()
    candidate: RunResults | None = None
    baselines: Mapping[str, RunResults] | None = None
    statistics: StatisticsConfig | None = None


def evaluate_gates(gates: Sequence[GateSpec], inputs: GateInputs) -> GateReport:
    """Evaluate every gate in order."""
    return GateReport(results=tuple(_evaluate(gate, inputs) for gate in gates))


def _evaluate(gate: GateSpec, inputs: GateInputs) -> GateResult:
    summary = inputs.summary.get(gate.metric)
    if summary is None:
        return _failure(gate, f"metric {gate.metric!r} is not in the run's results")
    if summary.errored:
        total = summary.n + summary.n_errors
        return _failure(
            gate,
            f"metric {gate.metric!r} errored on {summary.n_errors} of {total} examples: "
            f"{summary.first_error}",
        )
    assert summary.score is not None  # errored covers a missing score
    if gate.kind == "no_regression":
        return _no_regression(gate, inputs)
    threshold = gate.min if gate.kind == "min" else gate.max
    assert threshold is not None  # GateSpec guarantees the field of its kind
    passed = summary.score >= threshold if gate.kind == "min" else summary.score <= threshold
    relation = (">=" if passed else "<") if gate.kind == "min" else ("<=" if passed else ">")
    return GateResult(
        name=gate.display_name,
        kind=gate.kind,
        metric=gate.metric,
        passed=passed,
        reason=f"{gate.metric} = {summary.score:.4g} {relation} {threshold:g}",
        observed=summary.score,
        threshold=threshold,
        interval=summary.interval,
    )


def _failure(gate: GateSpec, reason: str) -> GateResult:
    return GateResult(
        name=gate.display_name,
        kind=gate.kind,
        metric=gate.metric,
        passed=False,
        reason=reason,
        baseline=gate.no_regression_vs,
    )


def _no_regression(gate: GateSpec, inputs: GateInputs) -> GateResult:
    alias = gate.no_regression_vs
    assert alias is not None
    baseline = (inputs.baselines or {}).get(alias)
    if baseline is None:
        return _failure(
            gate, f"no baseline run for alias {alias!r}; evaluate the {alias!r} model on this suite first"
        )
    metric = next((m for m in inputs.metrics if m.metric_id == gate.metric), None)
    if metric is None or inputs.candidate is None:
        return _failure(
            gate, f"gate needs the candidate's example results and metric {gate.metric!r} to pair runs"
        )
    pairs = paired_scores(metric, inputs.candidate, baseline)
    if pairs.n_errors:
        return _failure(
            gate,
            f"metric {gate.metric!r} errored on {pairs.n_errors} paired examples "
            f"of the candidate or {alias!r}",
        )
    stats_config = inputs.statistics or StatisticsConfig()
    comparison = compare_metric(
        pairs,
        corpus_score=metric.corpus_score if metric.corpus_level else None,
        resamples=stats_config.resamples,
        confidence=gate.confidence,
        seed=stats_config.seed,
    )
    if comparison.interval is None or comparison.difference is None:
        return _failure(
            gate, comparison.error or f"metric {gate.metric!r} could not be compared with {alias!r}"
        )
    return _improvement_result(gate, comparison, higher_is_better=metric.higher_is_better)


def _improvement_result(
    gate: GateSpec, comparison: MetricComparison, *, higher_is_better: bool
) -> GateResult:
    """Decide a no-regression gate from candidate − baseline, re-signed so that higher is better."""
    assert comparison.interval is not None and comparison.difference is not None
    sign = 1.0 if higher_is_better else -1.0
    low, high = sorted((sign * comparison.interval.low, sign * comparison.interval.high))
    improvement = Interval(low=low, high=high, confidence=gate.confidence)
    passed = improvement.low >= -gate.tolerance
    relation = ">=" if passed else "<"
    return GateResult(
        name=gate.display_name,
        kind=gate.kind,
        metric=gate.metric,
        passed=passed,
        reason=(
            f"improvement vs {gate.no_regression_vs}: {sign * comparison.difference:+.4g}, "
            f"{gate.confidence:.0%} CI lower bound {improvement.low:+.4g} {relation} -{gate.tolerance:g} "
            f"(n={comparison.n_pairs})"
        ),
        observed=sign * comparison.difference,
        threshold=-gate.tolerance,
        interval=improvement,
        baseline=gate.no_regression_vs,
    )
