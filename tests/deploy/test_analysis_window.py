"""Reading both arms of a window from the request log, online evaluation and feedback."""

from __future__ import annotations

from datetime import timedelta

from tests.deploy.rollout_fakes import traffic

from llmops.deploy.analysis_window import read_windows
from llmops.store.home import Home
from llmops.store.schema import GatewayRequest, RequestFeedback, utcnow


def test_arms_are_read_by_served_version_within_the_window(sqlite_home: Home) -> None:
    now = utcnow()
    traffic(sqlite_home, "bot@2", 10, now, arm="canary", errors=2, online_score=0.25)
    traffic(sqlite_home, "bot@1", 12, now, arm="stable", online_score=0.75)
    traffic(sqlite_home, "bot@2", 5, now - timedelta(hours=1), arm="canary")  # before the window
    with sqlite_home.store.transaction() as session:
        ids = [r.id for r in session.query(GatewayRequest).filter_by(model_version="bot@1").limit(2)]
        for i, request_id in enumerate(ids):
            session.add(
                RequestFeedback(id=f"fb{i}", request_id=request_id, model_version="bot@1", thumbs="up")
            )
    candidate, stable = read_windows(
        sqlite_home.store,
        "bot",
        candidate_version="bot@2",
        stable_version="bot@1",
        since=now - timedelta(seconds=1),
        until=now + timedelta(seconds=1),
    )
    assert len(candidate.requests) == 10 and sum(r.failed for r in candidate.requests) == 2
    assert len(stable.requests) == 12
    assert list(candidate.online_scores) == [0.25] * 8 and list(stable.online_scores) == [0.75] * 12
    assert list(stable.feedback_scores) == [1.0, 1.0] and list(candidate.feedback_scores) == []
