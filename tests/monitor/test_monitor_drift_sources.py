"""Drift inputs: prompts of dataset rows and of the request log, profiles as artifacts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from llmops.errors import InvalidInput, NotFound
from llmops.monitor.drift_features import DriftSample, build_profile
from llmops.monitor.drift_sources import load_profile, logged_prompts, prompts_from_rows, save_profile
from llmops.store.home import Home
from llmops.store.schema import GatewayRequest


def test_prompts_of_each_row_schema() -> None:
    rows = [
        {"prompt": "Where is my lamp?", "completion": "..."},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello"}]},
        {"text": "plain text"},
        {"other": 1},
    ]  # fmt: skip
    assert prompts_from_rows(rows) == ["Where is my lamp?", "Be brief.\nHi", "plain text"]


def _request(
    n: int, ts: datetime, version: str, prompt: str | None, shadow: str | None = None
) -> GatewayRequest:
    return GatewayRequest(
        id=f"req-{n}", ts=ts, endpoint="chat.completions", model_version=version, shadow_of=shadow,
        stream=False, prompt=prompt, completion="x", prompt_tokens=3, completion_tokens=1,
        latency_ms=10.0, status=200, cost_usd=0.0, cache_hit=False,
    )  # fmt: skip


def test_logged_prompts_of_one_version_in_a_time_range(home: Home) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with home.store.transaction() as session:
        for n in range(6):
            session.add(_request(n, start + timedelta(minutes=n), "v1", f"prompt {n}"))
        session.add(_request(10, start + timedelta(minutes=2), "v2", "other version"))
        session.add(_request(11, start + timedelta(minutes=3), "v1", None))
        session.add(_request(12, start + timedelta(minutes=3), "v1", "mirrored", shadow="req-3"))
    prompts = logged_prompts(
        home.store,
        model_version="v1",
        since=start + timedelta(minutes=1),
        until=start + timedelta(minutes=5),
    )
    assert prompts == ["prompt 1", "prompt 2", "prompt 3", "prompt 4"]
    assert logged_prompts(home.store, model_version="v1", since=start, limit=2) == [
        "prompt 4",
        "prompt 5",
    ]
    with pytest.raises(InvalidInput):
        logged_prompts(home.store, model_version="v1", since=start, limit=0)


def test_profiles_are_stored_as_content_addressed_artifacts(sqlite_home: Home) -> None:
    profile = build_profile(DriftSample.of([f"prompt number {n % 7}" for n in range(120)]), source="test")
    digest = save_profile(sqlite_home.artifacts, profile)
    assert save_profile(sqlite_home.artifacts, profile) == digest
    assert load_profile(sqlite_home.artifacts, digest) == profile
    with pytest.raises(NotFound):
        load_profile(sqlite_home.artifacts, "0" * 64)
