"""Statistics: bootstrap confidence intervals and paired comparisons of two runs.

Intervals are percentile bootstraps with a seeded generator, so a report is reproducible. A
candidate is compared with a baseline example by example (paired): for pass/fail metrics McNemar's
exact test (a binomial test on the discordant pairs), for continuous scores the Wilcoxon signed-rank
test; for both, a paired bootstrap interval of candidate − baseline. The verdict comes from that
interval: ``better`` or ``worse`` when it excludes zero (direction from the metric), otherwise
``no_detectable_difference``; the p-value is reported alongside.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as scipy_stats

from llmops.errors import InvalidInput
from llmops.evals.metric_base import Metric
from llmops.evals.results import (
    Comparison,
    ExampleOutcome,
    Interval,
    MetricComparison,
    MetricInfo,
    RunResults,
    TestName,
    Verdict,
)

Statistic = Callable[[NDArray[np.float64]], float]
# Bound the (resamples x n) index matrix held at once: ~4M indices is ~32 MB.
_MAX_INDICES_PER_CHUNK = 4_000_000


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise InvalidInput(f"confidence must be between 0 and 1, got {confidence}", param="confidence")


def _resample_chunks(n: int, resamples: int, seed: int) -> list[NDArray[np.int64]]:
    """Bootstrap index matrices (each ``(chunk, n)``) covering ``resamples`` resamples."""
    if n <= 0:
        raise InvalidInput("cannot bootstrap an empty set of examples", param="examples")
    if resamples < 1:
        raise InvalidInput(f"resamples must be at least 1, got {resamples}", param="resamples")
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _MAX_INDICES_PER_CHUNK // n)
    chunks = []
    for start in range(0, resamples, per_chunk):
        size = min(per_chunk, resamples - start)
        chunks.append(rng.integers(0, n, size=(size, n)))
    return chunks


def percentile_interval(samples: ArrayLike, confidence: float) -> Interval:
    """The central ``confidence`` interval of bootstrap ``samples``."""
    _check_confidence(confidence)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.asarray(samples, dtype=np.float64), [alpha, 1.0 - alpha])
    return Interval(low=float(low), high=float(high), confidence=confidence)


def bootstrap_mean_ci(
    values: ArrayLike, *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile bootstrap interval of the mean of ``values``."""
    data = np.asarray(values, dtype=np.float64)
    chunks = _resample_chunks(data.size, resamples, seed)
    means = np.concatenate([data[idx].mean(axis=1) for idx in chunks])
    return percentile_interval(means, confidence)


def bootstrap_statistic_ci(
    rows: ArrayLike, statistic: Statistic, *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over resampled rows (a corpus-level score)."""
    data = np.asarray(rows, dtype=np.float64)
    chunks = _resample_chunks(len(data), resamples, seed)
    samples = [statistic(data[row]) for idx in chunks for row in idx]
    return percentile_interval(samples, confidence)


def paired_bootstrap_difference_ci(
    candidate: ArrayLike,
    baseline: ArrayLike,
    *,
    statistic: Statistic | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Interval of score(candidate) − score(baseline), resampling the same examples for both.

    Without ``statistic`` the score is the mean of per-example values; with it, ``candidate`` and
    ``baseline`` are per-example stats rows and the score is ``statistic`` of the resampled rows.
    """
    cand = np.asarray(candidate, dtype=np.float64)
    base = np.asarray(baseline, dtype=np.float64)
    if cand.shape != base.shape:
        raise InvalidInput("paired samples must have the same shape", param="baseline")
    chunks = _resample_chunks(len(cand), resamples, seed)
    if statistic is None:
        diff = cand - base
        samples = np.concatenate([diff[idx].mean(axis=1) for idx in chunks])
    else:
        samples = np.array([statistic(cand[row]) - statistic(base[row]) for idx in chunks for row in idx])
    return percentile_interval(samples, confidence)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's exact test on paired pass/fail outcomes."""

    p_value: float
    candidate_only_wins: int
    baseline_only_wins: int


def mcnemar_exact(candidate: ArrayLike, baseline: ArrayLike) -> McNemarResult:
    """Binomial test (p = 0.5) on the discordant pairs; no discordant pair gives p = 1."""
    cand = np.asarray(candidate, dtype=np.float64)
    base = np.asarray(baseline, dtype=np.float64)
    if not (np.isin(cand, (0.0, 1.0)).all() and np.isin(base, (0.0, 1.0)).all()):
        raise InvalidInput("McNemar's test needs pass/fail values of 0 or 1", param="values")
    wins = int(np.sum((cand == 1.0) & (base == 0.0)))
    losses = int(np.sum((cand == 0.0) & (base == 1.0)))
    if wins + losses == 0:
        return McNemarResult(p_value=1.0, candidate_only_wins=0, baseline_only_wins=0)
    p_value = float(scipy_stats.binomtest(wins, wins + losses, 0.5).pvalue)
    return McNemarResult(p_value=p_value, candidate_only_wins=wins, baseline_only_wins=losses)


def wilcoxon_p_value(candidate: ArrayLike, baseline: ArrayLike) -> float:
    """Two-sided Wilcoxon signed-rank p-value; all-zero differences give p = 1."""
    diff = np.asarray(candidate, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if not np.any(diff != 0.0):
        return 1.0
    p_value = float(scipy_stats.wilcoxon(diff, zero_method="wilcox").pvalue)
    return p_value if math.isfinite(p_value) else 1.0


def verdict_of(interval: Interval, *, higher_is_better: bool) -> Verdict:
    """``better``/``worse`` when the candidate − baseline interval excludes zero, by direction."""
    if not interval.excludes_zero():
        return "no_detectable_difference"
    improved = interval.low > 0.0 if higher_is_better else interval.high < 0.0
    return "better" if improved else "worse"


@dataclass(frozen=True)
class PairedScores:
    """One metric's per-example values (and stats) on the examples both runs scored."""

    info: MetricInfo
    candidate: NDArray[np.float64]
    baseline: NDArray[np.float64]
    candidate_stats: NDArray[np.float64]
    baseline_stats: NDArray[np.float64]
    n_errors: int


def compare_metric(
    pairs: PairedScores,
    *,
    corpus_score: Statistic | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> MetricComparison:
    """Candidate vs baseline on one metric; ``corpus_score`` is set for corpus-level metrics."""
    test: TestName = "mcnemar_exact" if pairs.info.binary else "wilcoxon_signed_rank"
    n_pairs = len(pairs.candidate)
    if n_pairs == 0:
        return _not_comparable(pairs, test)
    if corpus_score is not None:
        cand_score, base_score = corpus_score(pairs.candidate_stats), corpus_score(pairs.baseline_stats)
        cand_rows, base_rows = pairs.candidate_stats, pairs.baseline_stats
    else:
        cand_score, base_score = float(pairs.candidate.mean()), float(pairs.baseline.mean())
        cand_rows, base_rows = pairs.candidate, pairs.baseline
    interval = paired_bootstrap_difference_ci(
        cand_rows, base_rows, statistic=corpus_score, resamples=resamples, confidence=confidence, seed=seed
    )
    wins: int | None = None
    losses: int | None = None
    if pairs.info.binary:
        mcnemar = mcnemar_exact(pairs.candidate, pairs.baseline)
        p_value, wins, losses = mcnemar.p_value, mcnemar.candidate_only_wins, mcnemar.baseline_only_wins
    else:
        p_value = wilcoxon_p_value(pairs.candidate, pairs.baseline)
    return MetricComparison(
        info=pairs.info,
        n_pairs=n_pairs,
        candidate=cand_score,
        baseline=base_score,
        difference=cand_score - base_score,
        interval=interval,
        p_value=p_value,
        test=test,
        verdict=verdict_of(interval, higher_is_better=pairs.info.higher_is_better),
        candidate_only_wins=wins,
        baseline_only_wins=losses,
        n_errors=pairs.n_errors,
    )


def _not_comparable(pairs: PairedScores, test: TestName) -> MetricComparison:
    return MetricComparison(
        info=pairs.info,
        n_pairs=0,
        candidate=None,
        baseline=None,
        difference=None,
        interval=None,
        p_value=None,
        test=test,
        verdict=None,
        n_errors=pairs.n_errors,
        error="no example has a value for this metric in both runs",
    )


def paired_scores(metric: Metric, candidate: RunResults, baseline: RunResults) -> PairedScores:
    """One metric's values on the examples present in both runs and valid in both."""
    base_by_id = _index_by_id(baseline)
    cand_values, base_values, cand_stats, base_stats = [], [], [], []
    n_errors = 0
    for outcome in candidate.outcomes:
        base_outcome = base_by_id.get(outcome.example_id)
        if base_outcome is None:
            continue
        cand_result = outcome.scores.get(metric.metric_id)
        base_result = base_outcome.scores.get(metric.metric_id)
        if (
            cand_result is None
            or base_result is None
            or cand_result.value is None
            or base_result.value is None
        ):
            n_errors += 1
            continue
        cand_values.append(cand_result.value)
        base_values.append(base_result.value)
        cand_stats.append(cand_result.stats)
        base_stats.append(base_result.stats)
    return PairedScores(
        info=metric.info,
        candidate=np.asarray(cand_values, dtype=np.float64),
        baseline=np.asarray(base_values, dtype=np.float64),
        candidate_stats=np.asarray(cand_stats, dtype=np.float64),
        baseline_stats=np.asarray(base_stats, dtype=np.float64),
        n_errors=n_errors,
    )


def compare_runs(
    candidate: RunResults,
    baseline: RunResults,
    metrics: Sequence[Metric],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Pair two runs by ``example_id`` and compare every metric."""
    cand_ids = set(_index_by_id(candidate))
    shared = cand_ids & set(_index_by_id(baseline))
    if not shared:
        raise InvalidInput(
            "candidate and baseline share no example ids; were they run on the same dataset?",
            param="baseline",
        )
    compared = []
    for metric in metrics:
        corpus = metric.corpus_score if metric.corpus_level else None
        pairs = paired_scores(metric, candidate, baseline)
        compared.append(
            compare_metric(pairs, corpus_score=corpus, resamples=resamples, confidence=confidence, seed=seed)
        )
    unpaired = len(cand_ids - shared) + len(set(_index_by_id(baseline)) - shared)
    return Comparison(
        suite=candidate.suite,
        candidate=candidate.model,
        baseline=baseline.model,
        n_paired_examples=len(shared),
        n_unpaired_examples=unpaired,
        metrics=tuple(compared),
    )


def _index_by_id(run: RunResults) -> dict[str, ExampleOutcome]:
    index: dict[str, ExampleOutcome] = {}
    for outcome in run.outcomes:
        if outcome.example_id in index:
            raise InvalidInput(
                f"run of {run.model!r} has example id {outcome.example_id!r} twice; ids must be unique",
                param="example_id",
            )
        index[outcome.example_id] = outcome
    return index
