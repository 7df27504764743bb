"""Feedback: validation errors name the field; per-version rates and metrics."""

from __future__ import annotations

from typing import Any

import pytest

from llmops.errors import InvalidInput
from llmops.monitor.feedback import FeedbackAggregator, aggregate_feedback, parse_feedback
from llmops.monitor.metrics import MonitorMetrics


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"score": 1.0}, "request_id"),
        ({"request_id": "", "score": 1.0}, "request_id"),
        ({"request_id": "has space", "score": 1.0}, "request_id"),
        ({"request_id": "r1", "score": 1.5}, "score"),
        ({"request_id": "r1", "score": "nan"}, "score"),
        ({"request_id": "r1", "score": True}, "score"),
        ({"request_id": "r1", "thumbs": "sideways"}, "thumbs"),
        ({"request_id": "r1", "comment": "x" * 4001}, "comment"),
        ({"request_id": "r1", "thumbs": "up", "rating": 5}, "rating"),
        ({"request_id": "r1"}, "body"),
    ],
)
def test_invalid_feedback_names_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_feedback(body)
    assert info.value.param == field
    assert info.value.status_code == 400
    if field != "body":
        assert field in info.value.message


def test_a_body_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="JSON object"):
        parse_feedback(["r1", "up"])


def test_valid_feedback_and_its_rating() -> None:
    assert parse_feedback({"request_id": "r1", "thumbs": "up"}).rating == "positive"
    assert parse_feedback({"request_id": "r1", "score": 0.2}).rating == "negative"
    corrected = parse_feedback({"request_id": "chatcmpl-1", "corrected_output": "The answer is 4."})
    assert corrected.rating == "unrated" and corrected.value is None


def test_rates_per_version() -> None:
    metrics = MonitorMetrics()
    aggregator = FeedbackAggregator(metrics)
    for _ in range(10):
        aggregator.record_request("v1")
    for _ in range(4):
        aggregator.record_request("v2")
    aggregator.record("v1", parse_feedback({"request_id": "a", "thumbs": "up"}))
    aggregator.record("v1", parse_feedback({"request_id": "b", "thumbs": "down"}))
    aggregator.record("v1", parse_feedback({"request_id": "c", "score": 0.9}))
    aggregator.record("v2", parse_feedback({"request_id": "d", "comment": "slow"}))
    rates = {rate.model_version: rate for rate in aggregator.rates()}
    assert rates["v1"].rate == pytest.approx(0.3)
    assert (rates["v1"].positive, rates["v1"].negative) == (2, 1)
    assert rates["v1"].mean_score == pytest.approx(1.9 / 3)
    assert rates["v2"].rate == pytest.approx(0.25) and rates["v2"].positive_share is None
    assert (
        metrics.registry.get_sample_value(
            "llmops_feedback_total", {"model_version": "v1", "rating": "negative"}
        )
        == 1.0
    )


def test_aggregate_feedback_from_stored_pairs() -> None:
    items = [("v1", parse_feedback({"request_id": "a", "thumbs": "down"}))]
    [only_requests, rated] = sorted(
        aggregate_feedback(items, {"v0": 5, "v1": 2}), key=lambda r: r.model_version
    )
    assert (only_requests.feedback, only_requests.rate) == (0, 0.0)
    assert (rated.rate, rated.positive_share) == (0.5, 0.0)
