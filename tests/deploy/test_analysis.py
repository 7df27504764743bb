"""Canary analysis: each metric passes a like-for-like candidate, fails a worse one, and fails on too
few samples (never passes by default)."""

from __future__ import annotations

import json
import random

import pytest

from llmops.deploy.analysis import (
    ArmWindow,
    RequestSample,
    analyse,
    two_proportion_p_value,
)
from llmops.deploy.policy import SLO, AnalysisThresholds

THRESHOLDS = AnalysisThresholds(
    max_error_rate_increase=0.01,
    max_p95_latency_ratio=1.5,
    max_p95_ttft_ratio=1.5,
    max_online_eval_drop=0.05,
    max_feedback_drop=0.1,
    max_guardrail_block_rate_increase=0.02,
    max_cost_per_request_ratio=1.5,
    min_samples=20,
)


def _requests(
    n: int, *, seed: int, latency: float = 100.0, errors: int = 0, blocked: int = 0, cost: float = 1e-4
):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        status = 502 if i < errors else (400 if i < errors + blocked else 200)
        value = latency * rng.uniform(0.8, 1.2)
        out.append(
            RequestSample(
                status, value, value / 4, cost if status == 200 else 0.0, errors <= i < errors + blocked
            )
        )
    return out


def _arm(version: str, n: int = 60, seed: int = 1, scores: float = 0.9, **kwargs: float) -> ArmWindow:
    rng = random.Random(seed)
    online = [min(1.0, max(0.0, scores + rng.uniform(-0.05, 0.05))) for _ in range(n)]
    feedback = [1.0 if rng.random() < scores else 0.0 for _ in range(n)]
    return ArmWindow(version, _requests(n, seed=seed, **kwargs), online, feedback)  # type: ignore[arg-type]


def _by_name(result):
    return {m.metric: m for m in result.metrics}


def test_an_equal_candidate_passes_every_metric_with_its_numbers() -> None:
    result = analyse(_arm("bot@2", seed=1), _arm("bot@1", seed=2), THRESHOLDS)
    assert result.passed, result.summary()
    metrics = _by_name(result)
    assert set(metrics) == {
        "error_rate_increase",
        "p95_latency_ratio",
        "p95_ttft_ratio",
        "online_eval_drop",
        "feedback_drop",
        "guardrail_block_rate_increase",
        "cost_per_request_ratio",
    }
    latency = metrics["p95_latency_ratio"]
    assert latency.n_candidate == 60 and latency.n_stable == 60
    assert 0.7 < latency.observed < 1.4 and latency.bound is not None and latency.threshold == 1.5
    numbers = json.loads(json.dumps(result.numbers()))  # storable as JSON as it is
    assert numbers["passed"] is True and numbers["metrics"]["error_rate_increase"]["p_value"] > 0.05


def test_an_erroring_candidate_fails_the_error_rate_with_a_significant_test() -> None:
    result = analyse(_arm("bot@2", errors=20), _arm("bot@1", seed=2), THRESHOLDS)
    verdict = _by_name(result)["error_rate_increase"]
    assert verdict.status == "fail" and verdict.p_value is not None and verdict.p_value < 0.05
    assert verdict.candidate == pytest.approx(20 / 60) and verdict.stable == 0.0
    assert not result.passed and "error_rate_increase" in result.summary()


def test_one_error_in_sixty_is_not_enough_evidence_to_roll_back() -> None:
    result = analyse(_arm("bot@2", errors=1), _arm("bot@1", seed=2), THRESHOLDS)
    assert _by_name(result)["error_rate_increase"].status == "pass"


def test_a_slow_candidate_fails_latency_and_ttft() -> None:
    metrics = _by_name(analyse(_arm("bot@2", latency=400.0), _arm("bot@1", seed=2), THRESHOLDS))
    assert metrics["p95_latency_ratio"].status == "fail"
    assert metrics["p95_latency_ratio"].bound > 1.5
    assert metrics["p95_ttft_ratio"].status == "fail"


def test_a_wrong_candidate_fails_online_eval_and_feedback_drops() -> None:
    metrics = _by_name(analyse(_arm("bot@2", scores=0.3), _arm("bot@1", seed=2, scores=0.9), THRESHOLDS))
    assert metrics["online_eval_drop"].status == "fail"
    assert metrics["online_eval_drop"].observed == pytest.approx(0.6, abs=0.05)
    assert metrics["feedback_drop"].status == "fail"


def test_guardrail_blocks_and_cost_are_judged_relative_to_stable() -> None:
    metrics = _by_name(analyse(_arm("bot@2", blocked=15, cost=5e-4), _arm("bot@1", seed=2), THRESHOLDS))
    assert metrics["guardrail_block_rate_increase"].status == "fail"
    assert metrics["cost_per_request_ratio"].status == "fail"
    assert metrics["cost_per_request_ratio"].observed == pytest.approx(5.0)


def test_too_few_samples_fail_and_never_pass() -> None:
    result = analyse(_arm("bot@2", n=5), _arm("bot@1", seed=2), THRESHOLDS)
    assert not result.passed
    assert {m.status for m in result.metrics} == {"insufficient"}
    assert "too few samples (candidate 5, stable 60" in _by_name(result)["p95_latency_ratio"].reason


def test_no_online_scores_fails_unless_the_threshold_is_unset() -> None:
    candidate = ArmWindow("bot@2", _requests(60, seed=1), (), [1.0] * 60)
    stable = ArmWindow("bot@1", _requests(60, seed=2), (), [1.0] * 60)
    assert _by_name(analyse(candidate, stable, THRESHOLDS))["online_eval_drop"].status == "insufficient"
    unset = THRESHOLDS.model_copy(update={"max_online_eval_drop": None})
    result = analyse(candidate, stable, unset)
    assert _by_name(result)["online_eval_drop"].status == "skipped" and result.passed


def test_the_shadow_stage_judges_only_what_a_mirrored_request_shows() -> None:
    candidate = ArmWindow("bot@2", _requests(60, seed=1))  # no scores, no feedback: never returned
    result = analyse(candidate, ArmWindow("bot@1", _requests(60, seed=2)), THRESHOLDS, stage="shadow")
    assert result.passed, result.summary()
    assert set(_by_name(result)) == {"error_rate_increase", "p95_latency_ratio", "cost_per_request_ratio"}


def test_slos_judge_the_candidate_in_absolute_terms() -> None:
    slo = SLO(max_error_rate=0.01, p95_latency_ms=200.0, p95_ttft_ms=20.0)
    metrics = _by_name(analyse(_arm("bot@2"), _arm("bot@1", seed=2), THRESHOLDS, slo=slo))
    assert metrics["slo_error_rate"].status == "pass"
    assert metrics["slo_p95_latency_ms"].status == "pass"
    assert metrics["slo_p95_ttft_ms"].status == "fail"  # ttft ~25 ms > 20 ms


def test_two_proportion_test_is_one_sided_and_handles_zero_counts() -> None:
    assert two_proportion_p_value(20, 20, 0, 20, 0.01) < 1e-6
    assert two_proportion_p_value(0, 20, 20, 20, 0.01) > 0.999
    assert 0.05 < two_proportion_p_value(0, 20, 0, 20, 0.0) < 0.95
