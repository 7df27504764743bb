"""Gates: min/max/no-regression with the numbers that decided them, and failing closed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from llmops.evals.gates import GateInputs, evaluate_gates
from llmops.evals.metric_specs import ExactMatchSpec, LatencyTtftSpec
from llmops.evals.metrics import build_metric
from llmops.evals.results import RunResults
from llmops.evals.suite import GateSpec, StatisticsConfig
from llmops.evals.summary import summarize_run

RunFactory = Callable[..., RunResults]
EXACT = build_metric(ExactMatchSpec(name="exact_match"))
TTFT = build_metric(LatencyTtftSpec(name="latency_ttft"))
METRICS = [EXACT, TTFT]
FAST_STATS = StatisticsConfig(resamples=500, seed=0)


def gate(**data: object) -> GateSpec:
    return GateSpec.model_validate(data)


def inputs(run: RunResults, baselines: dict[str, RunResults] | None = None) -> GateInputs:
    summary = summarize_run(run, METRICS, FAST_STATS)
    return GateInputs(
        summary=summary, metrics=METRICS, candidate=run, baselines=baselines, statistics=FAST_STATS
    )


def test_min_and_max_gates_report_observed_and_threshold(make_run: RunFactory) -> None:
    run = make_run("m", {"exact_match": [1.0, 1.0, 1.0, 0.0], "latency_ttft": [0.1, 0.2, 0.3, 0.2]})
    report = evaluate_gates(
        [
            gate(metric="exact_match", min=0.7),
            gate(metric="exact_match", min=0.8),
            gate(metric="latency_ttft", max=0.25),
            gate(metric="latency_ttft", max=0.1, name="snappy"),
        ],
        inputs(run),
    )
    passing_min, failing_min, passing_max, failing_max = report.results
    assert passing_min.passed and passing_min.observed == 0.75 and passing_min.threshold == 0.7
    assert passing_min.interval is not None and passing_min.interval.low <= 0.75 <= passing_min.interval.high
    assert not failing_min.passed and failing_min.reason == "exact_match = 0.75 < 0.8"
    assert passing_max.passed and passing_max.observed == pytest.approx(0.2)
    assert not failing_max.passed and failing_max.name == "snappy" and "> 0.1" in failing_max.reason
    assert not report.passed and report.exit_code() == 1 and len(report.failures) == 2


def test_all_passing_gates_exit_zero(make_run: RunFactory) -> None:
    run = make_run("m", {"exact_match": [1.0, 1.0], "latency_ttft": [0.1, 0.1]})
    report = evaluate_gates([gate(metric="exact_match", min=1.0)], inputs(run))
    assert report.passed and report.exit_code() == 0
    assert evaluate_gates([], inputs(run)).passed


def test_errored_metric_fails_closed_with_reason(make_run: RunFactory) -> None:
    run = make_run("m", {"exact_match": [1.0, None, 1.0], "latency_ttft": [None, None, None]})
    report = evaluate_gates(
        [gate(metric="exact_match", min=0.0), gate(metric="latency_ttft", max=100.0)], inputs(run)
    )
    partial, total = report.results
    assert not partial.passed and "errored on 1 of 3 examples" in partial.reason
    assert "judge endpoint unreachable" in partial.reason
    assert not total.passed and total.observed is None
    assert report.exit_code() == 1


def test_gate_on_metric_missing_from_results_fails(make_run: RunFactory) -> None:
    run = make_run("m", {"exact_match": [1.0], "latency_ttft": [0.1]})
    summary = summarize_run(run, [EXACT], FAST_STATS)
    report = evaluate_gates([gate(metric="latency_ttft", max=1.0)], GateInputs(summary=summary))
    assert not report.passed and "not in the run's results" in report.results[0].reason


def _pair(n: int, cand_rate: float, base_rate: float, seed: int) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    return (rng.random(n) < cand_rate).astype(float).tolist(), (rng.random(n) < base_rate).astype(
        float
    ).tolist()


def test_no_regression_passes_for_identical_and_better(make_run: RunFactory) -> None:
    same, _ = _pair(200, 0.7, 0.7, seed=1)
    ttft = [0.2] * 200
    candidate = make_run("cand", {"exact_match": same, "latency_ttft": ttft})
    baseline = make_run("prod", {"exact_match": same, "latency_ttft": ttft})
    spec = gate(metric="exact_match", no_regression_vs="production", tolerance=0.0)
    result = evaluate_gates([spec], inputs(candidate, {"production": baseline})).results[0]
    assert result.passed and result.observed == 0.0 and result.threshold == -0.0
    assert result.interval is not None and result.interval.low == 0.0 and result.baseline == "production"


def test_no_regression_fails_for_clear_regression_with_numbers(make_run: RunFactory) -> None:
    worse, better = _pair(200, 0.5, 0.8, seed=2)
    ttft = [0.2] * 200
    candidate = make_run("cand", {"exact_match": worse, "latency_ttft": ttft})
    baseline = make_run("prod", {"exact_match": better, "latency_ttft": ttft})
    spec = gate(metric="exact_match", no_regression_vs="production", tolerance=0.05, confidence=0.9)
    result = evaluate_gates([spec], inputs(candidate, {"production": baseline})).results[0]
    assert not result.passed
    assert result.observed is not None and result.observed < -0.2
    assert result.interval is not None and result.interval.high < -0.05 and result.interval.confidence == 0.9
    assert result.threshold == -0.05 and "90% CI lower bound" in result.reason


def test_no_regression_tolerance_decides_small_drop(make_run: RunFactory) -> None:
    base = [1.0] * 200
    cand = [1.0] * 196 + [0.0] * 4  # a 2-point drop
    ttft = [0.2] * 200
    candidate = make_run("c", {"exact_match": cand, "latency_ttft": ttft})
    baselines = {"prod": make_run("p", {"exact_match": base, "latency_ttft": ttft})}
    strict = gate(metric="exact_match", no_regression_vs="prod", tolerance=0.0)
    lenient = gate(metric="exact_match", no_regression_vs="prod", tolerance=0.05)
    report = evaluate_gates([strict, lenient], inputs(candidate, baselines))
    assert [r.passed for r in report.results] == [False, True]


def test_no_regression_respects_lower_is_better(make_run: RunFactory) -> None:
    rng = np.random.default_rng(4)
    base_ttft = rng.uniform(0.2, 0.3, 100)
    ones = [1.0] * 100
    baselines = {"prod": make_run("p", {"exact_match": ones, "latency_ttft": base_ttft.tolist()})}
    slower = make_run("c", {"exact_match": ones, "latency_ttft": (base_ttft * 1.5).tolist()})
    faster = make_run("c", {"exact_match": ones, "latency_ttft": (base_ttft * 0.5).tolist()})
    spec = gate(metric="latency_ttft", no_regression_vs="prod", tolerance=0.01)
    slow_result = evaluate_gates([spec], inputs(slower, baselines)).results[0]
    fast_result = evaluate_gates([spec], inputs(faster, baselines)).results[0]
    assert not slow_result.passed and slow_result.observed is not None and slow_result.observed < 0
    assert fast_result.passed and fast_result.observed is not None and fast_result.observed > 0


def test_no_regression_fails_closed_without_baseline_or_with_errors(make_run: RunFactory) -> None:
    candidate = make_run("c", {"exact_match": [1.0, 1.0], "latency_ttft": [0.1, 0.1]})
    spec = gate(metric="exact_match", no_regression_vs="production")
    missing = evaluate_gates([spec], inputs(candidate, {})).results[0]
    assert not missing.passed and "no baseline run for alias 'production'" in missing.reason
    errored_baseline = make_run("p", {"exact_match": [1.0, None], "latency_ttft": [0.1, 0.1]})
    errored = evaluate_gates([spec], inputs(candidate, {"production": errored_baseline})).results[0]
    assert not errored.passed and "errored on 1 paired examples" in errored.reason
