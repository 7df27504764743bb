"""Request-log search, one request in full, and export, with feedback and online scores joined."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from llmops.errors import InvalidInput, NotFound
from llmops.monitor.request_export import export_requests, jsonl_rows, parquet_rows
from llmops.monitor.request_search import RequestFilter, get_request, parse_time, search_requests
from llmops.store.home import Home
from llmops.store.schema import GatewayRequest, OnlineEvalResult, RequestFeedback

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _request(index: int, **extra: Any) -> GatewayRequest:
    values: dict[str, Any] = {
        "id": f"req-{index}",
        "ts": T0 + timedelta(minutes=index),
        "key_id": "key_a",
        "user": None,
        "endpoint": "chat",
        "deployment": "support-bot",
        "model_version": "support-bot@1",
        "arm": "stable",
        "replica": "r1",
        "shadow_of": None,
        "stream": False,
        "prompt": f"question {index}",
        "completion": f"answer {index}",
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "ttft_ms": 20.0,
        "latency_ms": 220.0,
        "status": 200,
        "cost_usd": 0.001,
        "cache_hit": False,
        "error": None,
    }
    values.update(extra)
    return GatewayRequest(**values)


@pytest.fixture
def logged(home: Home) -> Home:
    with home.store.transaction() as session:
        session.add_all(
            [
                _request(0),
                _request(1, model_version="support-bot@2", arm="canary", user="alice", stream=True),
                _request(2, status=502, completion=None, error="replica broke off", ttft_ms=None),
                _request(3, prompt="Refund for order 100% late_delivery", deployment="billing"),
                _request(4, key_id="key_b", prompt="REFUND please"),
            ]
        )
        session.add_all(
            [
                RequestFeedback(
                    id="fb_1", request_id="req-1", model_version="support-bot@2", key_id="key_a",
                    score=None, thumbs="down", comment="wrong", corrected_output="the right answer",
                    created_at=T0 + timedelta(hours=1),
                ),
                RequestFeedback(
                    id="fb_2", request_id="req-1", model_version="support-bot@2", key_id="key_a",
                    score=0.25, thumbs=None, comment=None, corrected_output=None,
                    created_at=T0 + timedelta(hours=2),
                ),
            ]
        )  # fmt: skip
        session.add(
            OnlineEvalResult(
                request_id="req-1", metric="refusal", model_version="support-bot@2",
                value=1.0, raw_value=1.0, error=None, scored_at=T0,
            )
        )  # fmt: skip
    return home


def _ids(home: Home, **filters: Any) -> list[str]:
    return [view.id for view in search_requests(home.store, RequestFilter(**filters))]


def test_filters_narrow_the_search_newest_first(logged: Home) -> None:
    assert _ids(logged) == ["req-4", "req-3", "req-2", "req-1", "req-0"]
    assert _ids(logged, model_version="support-bot@2") == ["req-1"]
    assert _ids(logged, deployment="billing") == ["req-3"]
    assert _ids(logged, status=502) == ["req-2"]
    assert _ids(logged, user="alice") == ["req-1"]
    assert _ids(logged, key_id="key_b") == ["req-4"]
    assert _ids(logged, since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)) == [
        "req-2",
        "req-1",
    ]
    assert _ids(logged, text="refund") == ["req-4", "req-3"]  # case-insensitive, prompt or completion
    assert _ids(logged, text="answer 0") == ["req-0"]
    assert _ids(logged, text="100%") == ["req-3"] and _ids(logged, text="e_d") == ["req-3"]  # no wildcards
    assert _ids(logged, text="100%x") == []
    assert _ids(logged, limit=2) == ["req-4", "req-3"]


def test_before_id_pages_through_the_matches_newest_first(logged: Home) -> None:
    pages, before = [], None
    for _ in range(3):
        found = [v.id for v in search_requests(logged.store, RequestFilter(limit=2, before_id=before))]
        pages.append(found)
        before = found[-1]
    assert pages == [["req-4", "req-3"], ["req-2", "req-1"], ["req-0"]]
    assert search_requests(logged.store, RequestFilter(before_id="no-such-request")) == []


def test_feedback_joins_its_request(logged: Home) -> None:
    [view] = search_requests(logged.store, RequestFilter(model_version="support-bot@2"))
    assert [(f.id, f.thumbs, f.score) for f in view.feedback] == [
        ("fb_1", "down", None),
        ("fb_2", None, 0.25),
    ]
    assert view.feedback[0].corrected_output == "the right answer"
    assert view.ts == T0 + timedelta(minutes=1) and view.ts.tzinfo is not None
    others = search_requests(logged.store, RequestFilter(model_version="support-bot@1"))
    assert others and all(not v.feedback for v in others)


def test_show_returns_the_whole_record(logged: Home) -> None:
    detail = get_request(logged.store, "req-1")
    assert detail.prompt == "question 1" and detail.arm == "canary" and len(detail.feedback) == 2
    assert detail.timings["generation_ms"] == pytest.approx(200.0)
    assert detail.timings["completion_tokens_per_s"] == pytest.approx(20.0)
    assert [(s.metric, s.value) for s in detail.online_eval] == [("refusal", 1.0)]
    assert get_request(logged.store, "req-2").timings["generation_ms"] is None
    reported = get_request(logged.store, "req-0").timings  # whole answer: TTFT as the replica reported it
    assert reported["latency_ms"] == 220.0
    assert reported["ttft_ms"] == 20.0 and reported["generation_ms"] == pytest.approx(200.0)
    with pytest.raises(NotFound) as missing:
        get_request(logged.store, "nope")
    assert missing.value.param == "request_id"


def test_export_jsonl_and_parquet_round_trip(logged: Home, tmp_path: Path) -> None:
    wanted = RequestFilter(deployment="support-bot", limit=None)
    assert export_requests(logged.store, wanted, tmp_path / "r.jsonl") == 4
    assert export_requests(logged.store, wanted, tmp_path / "r.parquet") == 4
    lines, table = jsonl_rows(tmp_path / "r.jsonl"), parquet_rows(tmp_path / "r.parquet")
    assert (
        [row["id"] for row in lines] == [row["id"] for row in table] == ["req-4", "req-2", "req-1", "req-0"]
    )
    by_id = {row["id"]: row for row in table}
    assert [f["id"] for f in by_id["req-1"]["feedback"]] == ["fb_1", "fb_2"] and by_id["req-0"][
        "feedback"
    ] == []
    assert by_id["req-2"]["completion"] is None and by_id["req-2"]["status"] == 502
    empty = RequestFilter(deployment="nothing-here", limit=None)
    assert export_requests(logged.store, empty, tmp_path / "e.parquet") == 0
    assert parquet_rows(tmp_path / "e.parquet") == []
    with pytest.raises(InvalidInput) as bad:
        export_requests(logged.store, wanted, tmp_path / "r.csv")
    assert bad.value.param == "format" and not (tmp_path / "r.csv").exists()


def test_times_and_filters_are_checked() -> None:
    now = datetime(2025, 1, 2, tzinfo=UTC)
    assert parse_time("2h", param="since", now=now) == now - timedelta(hours=2)
    assert parse_time("7d", param="since", now=now) == now - timedelta(days=7)
    assert parse_time("2025-01-01T10:00:00", param="since") == datetime(2025, 1, 1, 10, tzinfo=UTC)
    with pytest.raises(InvalidInput) as bad:
        parse_time("yesterday", param="until")
    assert bad.value.param == "until" and "30m" in bad.value.message
    with pytest.raises(InvalidInput) as order:
        RequestFilter(since=now, until=now - timedelta(hours=1))
    assert order.value.param == "since"


def test_the_requests_cli_searches_and_exports(logged: Home, tmp_path: Path, cli: Any) -> None:
    found = cli("requests", "search", "--text", "refund", "--deployment", "support-bot")
    assert found.code == 0 and "req-4" in found.out and "req-3" not in found.out
    rated = cli("requests", "search", "--version", "support-bot@2")
    assert "+0/-1 score 0.25" in rated.out  # the feedback column
    exported = cli("requests", "export", str(tmp_path / "all.parquet"), "--since", "2025-03-01T12:02:00Z")
    assert exported.code == 0 and "wrote 3 requests" in exported.out
    assert [row["id"] for row in parquet_rows(tmp_path / "all.parquet")] == ["req-4", "req-3", "req-2"]
    bad = cli("requests", "search", "--since", "yesterday")
    assert bad.code == 2 and "since 'yesterday' is not a time" in bad.err
