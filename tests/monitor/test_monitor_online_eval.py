"""Online evaluation: deterministic sampling, reference-free scoring, aggregates, metrics, the queue."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from pydantic import ValidationError

from llmops.evals.metric_base import MetricResources
from llmops.monitor.metrics import MonitorMetrics
from llmops.monitor.online_eval import OnlineEvalConfig, OnlineEvaluator, sampled
from llmops.monitor.online_eval_queue import OnlineEvalQueue, ServedResponse

IDS = [f"chatcmpl-{n:06d}" for n in range(2000)]


def _config(rate: float = 1.0, **extra: object) -> OnlineEvalConfig:
    return OnlineEvalConfig.model_validate(
        {
            "sample_rate": rate,
            "metrics": [
                {"name": "json_valid"},
                {"name": "regex", "id": "has_order_id", "pattern": r"ORD-\d{4}"},
                {"name": "refusal", "expect": "comply"},
            ],
            **extra,
        }
    )


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_sampling_is_deterministic_and_close_to_the_share(rate: float) -> None:
    picked = [request_id for request_id in IDS if sampled(request_id, rate)]
    assert picked == [request_id for request_id in IDS if sampled(request_id, rate)]
    sd = (rate * (1 - rate) / len(IDS)) ** 0.5
    assert abs(len(picked) / len(IDS) - rate) < 4 * sd


def test_sampling_nests_and_the_salt_changes_the_set() -> None:
    small = {i for i in IDS if sampled(i, 0.1)}
    large = {i for i in IDS if sampled(i, 0.3)}
    assert small < large  # raising the rate only adds requests
    assert small != {i for i in IDS if sampled(i, 0.1, salt="other")}
    assert all(sampled(i, 1.0) for i in IDS[:50]) and not any(sampled(i, 0.0) for i in IDS[:50])


def test_scores_aggregates_and_prometheus_per_version() -> None:
    metrics = MonitorMetrics()
    evaluator = OnlineEvaluator(_config(), metrics=metrics)
    evaluator.score("r1", "v1", "status?", '{"order": "ORD-1234"}')
    evaluator.score("r2", "v1", "status?", "I'm sorry, I can't help with that.")
    rows = evaluator.score("r3", "v2", "status?", "ORD-9999 ships today")
    assert {(row.metric, row.value) for row in rows} == {
        ("json_valid", 0.0),
        ("has_order_id", 1.0),
        ("refusal", 1.0),
    }
    means = {(a.model_version, a.metric): (a.count, a.mean) for a in evaluator.aggregates()}
    assert means[("v1", "json_valid")] == (2, 0.5)
    assert means[("v1", "refusal")] == (2, 0.5)
    assert means[("v2", "has_order_id")] == (1, 1.0)
    labels = {"model_version": "v1", "metric": "json_valid"}
    assert metrics.registry.get_sample_value("llmops_online_eval_score_count", labels) == 2.0
    assert metrics.registry.get_sample_value("llmops_online_eval_score_sum", labels) == 1.0
    assert metrics.registry.get_sample_value("llmops_online_eval_score_mean", labels) == 0.5
    assert len(evaluator.rows()) == 9


def _judge_transport(score: int) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if score < 0:
            return httpx.Response(400, text="bad request")
        content = json.dumps({"score": score, "reason": "ok"})
        return httpx.Response(200, json={"choices": [{"message": {"content": content}}]})

    return httpx.MockTransport(answer)


def test_a_judge_score_is_normalised_and_a_broken_judge_is_an_error_row() -> None:
    judge = {
        "name": "judge",
        "base_url": "http://judge.local/v1",
        "model": "j",
        "rubric": "helpful",
        "retries": 0,
    }
    config = OnlineEvalConfig.model_validate({"sample_rate": 1.0, "metrics": [judge]})
    metrics = MonitorMetrics()
    good = OnlineEvaluator(
        config, metrics=metrics, resources=MetricResources(http_transport=_judge_transport(4))
    )
    [row] = good.score("r1", "v1", "hi", "hello!")
    assert (row.raw_value, row.value) == (4.0, 0.75)  # 1..5 mapped onto 0..1
    broken = OnlineEvaluator(
        config, metrics=metrics, resources=MetricResources(http_transport=_judge_transport(-1))
    )
    [row] = broken.score("r2", "v1", "hi", "hello!")
    assert row.value is None and row.error is not None and "400" in row.error
    assert (
        metrics.registry.get_sample_value(
            "llmops_online_eval_errors_total", {"model_version": "v1", "metric": "judge"}
        )
        == 1.0
    )
    good.close()
    broken.close()


@pytest.mark.parametrize(
    "metrics",
    [
        [{"name": "exact_match"}],
        [{"name": "latency_ttft"}],
        [{"name": "secret_leak", "secret_field": "s"}],
        [],
    ],
)
def test_metrics_that_need_a_reference_are_rejected(metrics: list[dict[str, str]]) -> None:
    with pytest.raises(ValidationError) as info:
        OnlineEvalConfig.model_validate({"metrics": metrics})
    assert info.value.errors()[0]["loc"][0] == "metrics"


def test_the_queue_scores_only_sampled_responses_in_the_background() -> None:
    metrics = MonitorMetrics()
    evaluator = OnlineEvaluator(_config(rate=0.25), metrics=metrics)
    received: list[str] = []

    async def scenario() -> int:
        queue = OnlineEvalQueue(evaluator, on_rows=lambda rows: received.append(rows[0].request_id))
        accepted = sum(queue.submit(ServedResponse(i, "v1", "p", '{"a": 1}')) for i in IDS[:400])
        await queue.drain()
        await queue.close()
        return accepted

    accepted = asyncio.run(scenario())
    expected = [i for i in IDS[:400] if sampled(i, 0.25)]
    assert accepted == len(expected) and sorted(received) == sorted(expected)
    assert metrics.registry.get_sample_value(
        "llmops_online_eval_sampled_total", {"model_version": "v1"}
    ) == len(expected)
