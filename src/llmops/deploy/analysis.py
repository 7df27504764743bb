"""Canary analysis: is the candidate worse than stable over the same window? Pure: no store, no clock.

``analyse`` judges each metric of ``AnalysisThresholds`` (and the deployment's absolute ``SLO``) from
the two arms' ``ArmWindow``s and returns an ``AnalysisResult`` holding every number that decided it.
Rules, per metric:

* fewer than ``min_samples`` observations on either side: ``insufficient``, which fails the analysis;
  a threshold set to ``None`` is ``skipped`` (recorded, not judged);
* rates (error rate, guardrail block rate) are judged with a one-sided two-proportion test of
  "candidate − stable > allowed increase" (Agresti–Caffo adjusted Wald, so 0/n and n/n are testable);
  the metric fails when that test rejects at ``alpha``;
* quantile and mean ratios (p95 latency, p95 TTFT, cost per request) fail when the one-sided lower
  confidence bound (bootstrap over both arms, ``1 − alpha``) of candidate / stable exceeds the allowed
  ratio: a real slow-down, not one slow request;
* score drops (online evaluation, feedback; scores 0..1) are judged with a one-sided Welch t-test of
  "stable − candidate > allowed drop";
* absolute SLOs of the candidate: its error rate with a one-sided binomial test against the SLO, its
  p95 latency / TTFT by the lower bootstrap bound against the SLO.

Latency, TTFT and cost are read from the arm's successful answers (an error answered fast must not make
a broken candidate look fast); error and block rates from all of its answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats as scipy_stats

from llmops.deploy.policy import SLO, AnalysisThresholds

Status = Literal["pass", "fail", "insufficient", "skipped"]
Stage = Literal["shadow", "canary"]
_RESAMPLES = 2000


@dataclass(frozen=True)
class RequestSample:
    """One answered request of an arm, as the request log records it."""

    status: int
    latency_ms: float
    ttft_ms: float | None = None
    cost_usd: float = 0.0
    guardrail_blocked: bool = False

    @property
    def failed(self) -> bool:
        """Answered 5xx (replica error, timeout, broken stream) or not at all (status 0)."""
        return self.status >= 500 or self.status == 0


@dataclass(frozen=True)
class ArmWindow:
    """What one arm (a model version) did during the analysis window."""

    version: str
    requests: Sequence[RequestSample] = ()
    online_scores: Sequence[float] = ()
    feedback_scores: Sequence[float] = ()

    def ok(self) -> list[RequestSample]:
        return [r for r in self.requests if r.status == 200]


@dataclass(frozen=True)
class MetricVerdict:
    """One metric's judgement, with the numbers that decided it."""

    metric: str
    status: Status
    reason: str
    candidate: float | None = None
    stable: float | None = None
    observed: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    bound: float | None = None
    n_candidate: int = 0
    n_stable: int = 0

    @property
    def passed(self) -> bool:
        return self.status in ("pass", "skipped")


@dataclass(frozen=True)
class AnalysisResult:
    """All metrics of one analysis; it passes only when no metric failed or lacked samples."""

    stage: Stage
    candidate_version: str
    stable_version: str
    metrics: tuple[MetricVerdict, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.metrics)

    @property
    def failures(self) -> tuple[MetricVerdict, ...]:
        return tuple(m for m in self.metrics if not m.passed)

    def summary(self) -> str:
        if self.passed:
            judged = sum(1 for m in self.metrics if m.status == "pass")
            return f"analysis passed: {judged} metrics within thresholds"
        return "analysis failed: " + "; ".join(f"{m.metric}: {m.reason}" for m in self.failures)

    def numbers(self) -> dict[str, Any]:
        """JSON-ready: what the lifecycle transition and the audit event store."""
        return {
            "passed": self.passed,
            "stage": self.stage,
            "candidate_version": self.candidate_version,
            "stable_version": self.stable_version,
            "metrics": {
                m.metric: {k: v for k, v in asdict(m).items() if k != "metric"} for m in self.metrics
            },
        }


def analyse(
    candidate: ArmWindow,
    stable: ArmWindow,
    thresholds: AnalysisThresholds,
    *,
    slo: SLO | None = None,
    stage: Stage = "canary",
) -> AnalysisResult:
    """Judge every metric; the shadow stage judges only what a mirrored request can show.

    A mirrored answer is never returned, scored online, rated by a user or checked by output
    guardrails, and is fetched whole (no TTFT): in the shadow stage those metrics are ``skipped``.
    """
    t = thresholds
    verdicts = [
        error_rate(candidate, stable, t.max_error_rate_increase, t.min_samples, t.alpha),
        quantile_ratio("p95_latency_ratio", candidate, stable, _latencies, t.max_p95_latency_ratio, t),
        mean_ratio("cost_per_request_ratio", candidate, stable, t.max_cost_per_request_ratio, t),
    ]
    if stage == "canary":
        verdicts += [
            quantile_ratio("p95_ttft_ratio", candidate, stable, _ttfts, t.max_p95_ttft_ratio, t),
            score_drop(
                "online_eval_drop", candidate.online_scores, stable.online_scores, t.max_online_eval_drop, t
            ),
            score_drop(
                "feedback_drop", candidate.feedback_scores, stable.feedback_scores, t.max_feedback_drop, t
            ),
            guardrail_block_rate(
                candidate, stable, t.max_guardrail_block_rate_increase, t.min_samples, t.alpha
            ),
        ]
    if slo is not None:
        verdicts += slo_verdicts(candidate, slo, t, stage)
    return AnalysisResult(stage, candidate.version, stable.version, tuple(verdicts))


# ---- rates --------------------------------------------------------------------------------------


def two_proportion_p_value(x_c: int, n_c: int, x_s: int, n_s: int, margin: float) -> float:
    """One-sided p-value of H1: p_candidate − p_stable > margin (Agresti–Caffo adjusted Wald)."""
    p_c, p_s = (x_c + 1) / (n_c + 2), (x_s + 1) / (n_s + 2)
    se = math.sqrt(p_c * (1 - p_c) / (n_c + 2) + p_s * (1 - p_s) / (n_s + 2))
    return float(scipy_stats.norm.sf((p_c - p_s - margin) / se))


def _rate_verdict(
    metric: str,
    flags_c: list[bool],
    flags_s: list[bool],
    margin: float | None,
    min_samples: int,
    alpha: float,
) -> MetricVerdict:
    n_c, n_s = len(flags_c), len(flags_s)
    if margin is None:
        return MetricVerdict(metric, "skipped", "no threshold set", n_candidate=n_c, n_stable=n_s)
    if n_c < min_samples or n_s < min_samples:
        return _too_few(metric, n_c, n_s, min_samples, margin)
    x_c, x_s = sum(flags_c), sum(flags_s)
    rate_c, rate_s = x_c / n_c, x_s / n_s
    p_value = two_proportion_p_value(x_c, n_c, x_s, n_s, margin)
    failed = p_value < alpha
    relation = "significantly more than" if failed else "not significantly more than"
    reason = (
        f"candidate {rate_c:.2%} ({x_c}/{n_c}) vs stable {rate_s:.2%} ({x_s}/{n_s}): increase "
        f"{rate_c - rate_s:+.2%}, {relation} the allowed {margin:.2%} (p={p_value:.3g}, alpha={alpha:g})"
    )
    return MetricVerdict(
        metric, "fail" if failed else "pass", reason, rate_c, rate_s, rate_c - rate_s, margin, p_value,
        n_candidate=n_c, n_stable=n_s,
    )  # fmt: skip


def error_rate(
    candidate: ArmWindow, stable: ArmWindow, margin: float | None, min_samples: int, alpha: float
) -> MetricVerdict:
    flags = ([r.failed for r in candidate.requests], [r.failed for r in stable.requests])
    return _rate_verdict("error_rate_increase", *flags, margin, min_samples, alpha)


def guardrail_block_rate(
    candidate: ArmWindow, stable: ArmWindow, margin: float | None, min_samples: int, alpha: float
) -> MetricVerdict:
    flags = (
        [r.guardrail_blocked for r in candidate.requests],
        [r.guardrail_blocked for r in stable.requests],
    )
    return _rate_verdict("guardrail_block_rate_increase", *flags, margin, min_samples, alpha)


# ---- ratios -------------------------------------------------------------------------------------


def _latencies(window: ArmWindow) -> list[float]:
    return [r.latency_ms for r in window.ok()]


def _ttfts(window: ArmWindow) -> list[float]:
    return [r.ttft_ms for r in window.ok() if r.ttft_ms is not None]


def _p95(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(np.percentile(matrix, 95, axis=-1), dtype=np.float64)


def _mean(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(matrix.mean(axis=-1), dtype=np.float64)


Reducer = Callable[[NDArray[np.float64]], NDArray[np.float64]]


def bootstrap_ratio_lower_bound(
    candidate: Sequence[float], stable: Sequence[float], statistic: Reducer, alpha: float, seed: int = 0
) -> float:
    """One-sided ``1 − alpha`` lower bound of statistic(candidate) / statistic(stable), resampling each
    arm independently (the arms are different requests, not pairs)."""
    rng = np.random.default_rng(seed)
    c, s = np.asarray(candidate, dtype=np.float64), np.asarray(stable, dtype=np.float64)
    c_stat = statistic(c[rng.integers(0, c.size, size=(_RESAMPLES, c.size))])
    s_stat = statistic(s[rng.integers(0, s.size, size=(_RESAMPLES, s.size))])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(s_stat > 0, c_stat / s_stat, np.where(c_stat > 0, np.inf, 1.0))
    return float(np.quantile(ratios, alpha))


def _ratio(candidate_value: float, stable_value: float) -> float:
    if stable_value > 0:
        return candidate_value / stable_value
    return math.inf if candidate_value > 0 else 1.0


def _ratio_verdict(
    metric: str,
    values_c: list[float],
    values_s: list[float],
    statistic: Reducer,
    limit: float | None,
    t: AnalysisThresholds,
) -> MetricVerdict:
    n_c, n_s = len(values_c), len(values_s)
    if limit is None:
        return MetricVerdict(metric, "skipped", "no threshold set", n_candidate=n_c, n_stable=n_s)
    if n_c < t.min_samples or n_s < t.min_samples:
        return _too_few(metric, n_c, n_s, t.min_samples, limit)
    value_c = float(statistic(np.asarray(values_c, dtype=np.float64)))
    value_s = float(statistic(np.asarray(values_s, dtype=np.float64)))
    ratio = _ratio(value_c, value_s)
    bound = bootstrap_ratio_lower_bound(values_c, values_s, statistic, t.alpha)
    failed = bound > limit
    relation = ">" if failed else "<="
    reason = (
        f"candidate {value_c:.4g} vs stable {value_s:.4g}: ratio {ratio:.3g}, "
        f"{1 - t.alpha:.0%} lower bound {bound:.3g} {relation} {limit:g}"
    )
    return MetricVerdict(
        metric, "fail" if failed else "pass", reason, value_c, value_s, _finite(ratio), limit,
        bound=_finite(bound), n_candidate=n_c, n_stable=n_s,
    )  # fmt: skip


def quantile_ratio(
    metric: str,
    candidate: ArmWindow,
    stable: ArmWindow,
    values: Callable[[ArmWindow], list[float]],
    limit: float | None,
    t: AnalysisThresholds,
) -> MetricVerdict:
    return _ratio_verdict(metric, values(candidate), values(stable), _p95, limit, t)


def mean_ratio(
    metric: str, candidate: ArmWindow, stable: ArmWindow, limit: float | None, t: AnalysisThresholds
) -> MetricVerdict:
    costs = ([r.cost_usd for r in candidate.ok()], [r.cost_usd for r in stable.ok()])
    return _ratio_verdict(metric, *costs, _mean, limit, t)


# ---- score drops --------------------------------------------------------------------------------


def score_drop(
    metric: str,
    candidate: Sequence[float],
    stable: Sequence[float],
    max_drop: float | None,
    t: AnalysisThresholds,
) -> MetricVerdict:
    """Stable mean − candidate mean against ``max_drop``, by a one-sided Welch t-test."""
    n_c, n_s = len(candidate), len(stable)
    if max_drop is None:
        return MetricVerdict(metric, "skipped", "no threshold set", n_candidate=n_c, n_stable=n_s)
    if n_c < t.min_samples or n_s < t.min_samples:
        return _too_few(metric, n_c, n_s, t.min_samples, max_drop)
    c, s = np.asarray(candidate, dtype=np.float64), np.asarray(stable, dtype=np.float64)
    mean_c, mean_s = float(c.mean()), float(s.mean())
    drop = mean_s - mean_c
    if c.var() == 0 and s.var() == 0:
        p_value = 0.0 if drop > max_drop else 1.0  # no spread: the observed drop is exact
    else:
        test = scipy_stats.ttest_ind(s, c + max_drop, equal_var=False, alternative="greater")
        p_value = float(test.pvalue)
    failed = p_value < t.alpha
    relation = "significantly more than" if failed else "not significantly more than"
    reason = (
        f"candidate mean {mean_c:.3f} vs stable {mean_s:.3f}: drop {drop:+.3f}, {relation} the "
        f"allowed {max_drop:g} (p={p_value:.3g}, alpha={t.alpha:g})"
    )
    return MetricVerdict(
        metric, "fail" if failed else "pass", reason, mean_c, mean_s, drop, max_drop, p_value,
        n_candidate=n_c, n_stable=n_s,
    )  # fmt: skip


# ---- absolute SLOs ------------------------------------------------------------------------------


def slo_verdicts(candidate: ArmWindow, slo: SLO, t: AnalysisThresholds, stage: Stage) -> list[MetricVerdict]:
    verdicts = [_slo_error_rate(candidate, slo.max_error_rate, t)]
    verdicts.append(_slo_quantile("slo_p95_latency_ms", _latencies(candidate), slo.p95_latency_ms, t))
    if stage == "canary":
        verdicts.append(_slo_quantile("slo_p95_ttft_ms", _ttfts(candidate), slo.p95_ttft_ms, t))
    return verdicts


def _slo_error_rate(candidate: ArmWindow, limit: float, t: AnalysisThresholds) -> MetricVerdict:
    n = len(candidate.requests)
    if n < t.min_samples:
        return _too_few("slo_error_rate", n, None, t.min_samples, limit)
    errors = sum(r.failed for r in candidate.requests)
    p_value = (
        float(scipy_stats.binomtest(errors, n, limit, alternative="greater").pvalue) if limit < 1 else 1.0
    )
    failed = p_value < t.alpha
    rate = errors / n
    relation = "significantly above" if failed else "not significantly above"
    reason = f"candidate {rate:.2%} ({errors}/{n}) {relation} the SLO {limit:.2%} (p={p_value:.3g})"
    return MetricVerdict(
        "slo_error_rate",
        "fail" if failed else "pass",
        reason,
        rate,
        None,
        rate,
        limit,
        p_value,
        n_candidate=n,
    )


def _slo_quantile(
    metric: str, values: list[float], limit: float | None, t: AnalysisThresholds
) -> MetricVerdict:
    n = len(values)
    if limit is None:
        return MetricVerdict(metric, "skipped", "no SLO set", n_candidate=n)
    if n < t.min_samples:
        return _too_few(metric, n, None, t.min_samples, limit)
    data = np.asarray(values, dtype=np.float64)
    value = float(np.percentile(data, 95))
    rng = np.random.default_rng(0)
    resampled = _p95(data[rng.integers(0, n, size=(_RESAMPLES, n))])
    bound = float(np.quantile(resampled, t.alpha))
    failed = bound > limit
    relation = ">" if failed else "<="
    reason = f"candidate p95 {value:.4g} ms, {1 - t.alpha:.0%} lower bound {bound:.4g} {relation} {limit:g}"
    return MetricVerdict(
        metric, "fail" if failed else "pass", reason, value, None, value, limit, bound=bound, n_candidate=n
    )


# ---- shared -------------------------------------------------------------------------------------


def _too_few(metric: str, n_c: int, n_s: int | None, needed: int, threshold: float) -> MetricVerdict:
    sides = f"candidate {n_c}" + (f", stable {n_s}" if n_s is not None else "")
    return MetricVerdict(
        metric,
        "insufficient",
        f"too few samples ({sides}; need {needed} on each side): missing data fails the analysis",
        threshold=threshold,
        n_candidate=n_c,
        n_stable=n_s or 0,
    )


def _finite(value: float) -> float | None:
    """JSON has no infinity: an unbounded ratio is stored as None (the reason text says 'inf')."""
    return value if math.isfinite(value) else None
