"""Run summaries: each metric's run score with a bootstrap interval and its error count.

The run score is the mean of example values, or the metric's corpus score (BLEU, chrF, macro F1,
perplexity). Errored examples are left out of the score and counted, so a gate can fail closed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmops.errors import InvalidInput
from llmops.evals.metric_base import Metric, mean_of
from llmops.evals.results import MetricResult, MetricSummary, RunResults, RunSummary
from llmops.evals.stats import bootstrap_mean_ci, bootstrap_statistic_ci
from llmops.evals.suite import StatisticsConfig


def aggregate(metric: Metric, results: Sequence[MetricResult]) -> float:
    """The run score of ``metric`` over the non-errored ``results``; none at all is ``InvalidInput``."""
    valid = [result for result in results if result.value is not None]
    if not valid:
        raise InvalidInput(
            f"cannot aggregate metric {metric.metric_id!r} over an empty set of scored examples",
            param=metric.metric_id,
        )
    if metric.corpus_level:
        return metric.corpus_score(np.asarray([result.stats for result in valid], dtype=np.float64))
    return mean_of(np.asarray([result.value for result in valid], dtype=np.float64), metric.metric_id)


def summarize_metric(
    metric: Metric, results: Sequence[MetricResult], config: StatisticsConfig | None = None
) -> MetricSummary:
    """Score, interval and errors of one metric; all-errored gives ``score=None`` (not an exception)."""
    config = config or StatisticsConfig()
    valid = [result for result in results if result.value is not None]
    errored = [result for result in results if result.value is None]
    first_error = errored[0].error if errored else None
    if not valid:
        return MetricSummary(
            info=metric.info, n=0, n_errors=len(errored), score=None, interval=None, first_error=first_error
        )
    resamples, confidence, seed = config.resamples, config.confidence, config.seed
    if metric.corpus_level:
        rows = np.asarray([result.stats for result in valid], dtype=np.float64)
        interval = bootstrap_statistic_ci(
            rows, metric.corpus_score, resamples=resamples, confidence=confidence, seed=seed
        )
    else:
        values = np.asarray([result.value for result in valid], dtype=np.float64)
        interval = bootstrap_mean_ci(values, resamples=resamples, confidence=confidence, seed=seed)
    return MetricSummary(
        info=metric.info,
        n=len(valid),
        n_errors=len(errored),
        score=aggregate(metric, valid),
        interval=interval,
        first_error=first_error,
    )


def summarize_run(
    run: RunResults, metrics: Sequence[Metric], config: StatisticsConfig | None = None
) -> RunSummary:
    """Every metric of a run, in the order given."""
    if not run.outcomes:
        raise InvalidInput(
            f"run of {run.model!r} on {run.suite!r} has no examples to summarize", param="outcomes"
        )
    return RunSummary(
        suite=run.suite,
        model=run.model,
        n_examples=len(run.outcomes),
        metrics=tuple(
            summarize_metric(metric, run.metric_results(metric.metric_id), config) for metric in metrics
        ),
    )
