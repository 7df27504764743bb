"""Metrics whose values the runner measures: perplexity, time to first token, decode throughput.

These read ``EvalExample.measurements``; a missing measurement is an errored result (so a gate on
it fails closed), never a zero. Perplexity and TTFT are lower-is-better. The run perplexity is
token-weighted, exp(total negative log-likelihood / total tokens), not a mean of per-row values.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from llmops.evals.metric_base import EvalExample, Metric
from llmops.evals.metric_specs import LatencyTtftSpec, PerplexitySpec, TokensPerSecondSpec
from llmops.evals.results import MetricResult


class Perplexity(Metric):
    kind = "perplexity"
    higher_is_better = False
    corpus_level = True
    needs_reference = True

    def __init__(self, spec: PerplexitySpec) -> None:
        super().__init__(spec.metric_id)

    def score(self, prediction: str, reference: str | None, example: EvalExample) -> MetricResult:
        logprobs = example.measurements.reference_token_logprobs
        if not logprobs:
            return MetricResult.failed("the runner provided no reference token log-probabilities")
        if any(not math.isfinite(lp) or lp > 0.0 for lp in logprobs):
            return MetricResult.failed("reference token log-probabilities must be finite and <= 0")
        nll = -float(sum(logprobs))
        return MetricResult.ok(math.exp(nll / len(logprobs)), stats=(nll, float(len(logprobs))))

    def corpus_score(self, stats: NDArray[np.float64]) -> float:
        nll, tokens = np.asarray(stats, dtype=np.float64).sum(axis=0)
        return math.exp(nll / tokens)


class LatencyTtft(Metric):
    kind = "latency_ttft"
    higher_is_better = False
    needs_reference = False

    def __init__(self, spec: LatencyTtftSpec) -> None:
        super().__init__(spec.metric_id)

    def score(self, prediction: str, reference: str | None, example: EvalExample) -> MetricResult:
        ttft = example.measurements.ttft_s
        if ttft is None or not math.isfinite(ttft) or ttft < 0:
            return MetricResult.failed("the runner provided no time to first token")
        return MetricResult.ok(ttft)


class TokensPerSecond(Metric):
    kind = "tokens_per_s"
    needs_reference = False

    def __init__(self, spec: TokensPerSecondSpec) -> None:
        super().__init__(spec.metric_id)

    def score(self, prediction: str, reference: str | None, example: EvalExample) -> MetricResult:
        rate = example.measurements.tokens_per_s
        if rate is None or not math.isfinite(rate) or rate < 0:
            return MetricResult.failed("the runner provided no decode throughput")
        return MetricResult.ok(rate)
