"""Routing: canary split and stickiness, least outstanding, affinity, circuit breaker, shadow, cache."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
from sqlalchemy import select

from llmops.gateway.routing import Replica, choose_arm, pick_replica
from llmops.gateway.upstreams import AsgiUpstream
from llmops.store.home import Home
from llmops.store.schema import GatewayRequest

pytestmark = pytest.mark.anyio


def _replicas(*names: str) -> list[Replica]:
    return [Replica(AsgiUpstream(object(), name=n, lifespan=False)) for n in names]


def test_canary_split_lands_within_3_points_and_is_sticky() -> None:
    for weights in ([90, 10], [50, 50], [70, 20, 10]):
        counts = [0] * len(weights)
        for user in range(2000):
            counts[choose_arm(weights, f"user-{user}", salt="support-bot")] += 1
        for count, weight in zip(counts, weights, strict=True):
            assert abs(count / 2000 - weight / sum(weights)) < 0.03, (weights, counts)
    assert {choose_arm([90, 10], "user-7", salt="d") for _ in range(50)} == {
        choose_arm([90, 10], "user-7", salt="d")
    }
    rng = random.Random(1)
    anonymous = [choose_arm([80, 20], None, rng=rng) for _ in range(2000)]
    assert abs(anonymous.count(1) / 2000 - 0.2) < 0.03
    assert choose_arm([0, 5], "u") == 1


def test_least_outstanding_affinity_and_breaker() -> None:
    a, b, c = _replicas("a", "b", "c")
    a.outstanding, b.outstanding, c.outstanding = 3, 1, 2
    assert pick_replica([a, b, c]) is b
    assert pick_replica([a, b, c], exclude=[b]) is c
    b.outstanding = 0
    prefs = {pick_replica([a, b, c], affinity_key="system prompt X") for _ in range(20)}
    assert len(prefs) == 1  # the same prefix goes to the same replica while it is not overloaded
    preferred = prefs.pop()
    preferred.outstanding = 50
    assert pick_replica([a, b, c], affinity_key="system prompt X") is not preferred
    for _ in range(3):
        b.record_failure("boom", threshold=3, cooldown_s=0.2)
    assert not b.available() and pick_replica([b]) is None
    time.sleep(0.25)
    assert b.available()
    b.record_success()
    assert b.failures == 0
    c.healthy = False
    assert pick_replica([c]) is None


async def test_canary_arms_and_shadow_answers_never_reach_the_client(
    home: Home, make_key: Any, gw: Any
) -> None:
    key = make_key()
    stable, canary, shadow = gw.MockUpstream("stable"), gw.MockUpstream("canary"), gw.MockUpstream("shadow")
    spec = gw.deployment(
        "support-bot",
        arms=[
            {"name": "stable", "weight": 80},
            {"name": "canary", "weight": 20, "model": "support-bot@candidate"},
        ],
        shadow={"arm": {"name": "shadow"}, "sample_rate": 1.0},
    )
    mocks = gw.in_process(support_bot__stable=stable, support_bot__canary=canary, support_bot__shadow=shadow)
    mocks = {k.replace("support_bot", "support-bot"): v for k, v in mocks.items()}
    async with gw.client(home, gw.config(spec), mocks) as (client, gateway):
        answers = await asyncio.gather(
            *(
                client.post("/v1/chat/completions", json=gw.chat_body(user=f"u{i}"), headers=gw.bearer(key))
                for i in range(200)
            )
        )
        again = await client.post(
            "/v1/chat/completions", json=gw.chat_body(user="u3"), headers=gw.bearer(key)
        )
        deadline = time.monotonic() + 20
        while gateway.pipeline.shadow._tasks and time.monotonic() < deadline:  # mirrors run in background
            await asyncio.sleep(0.02)
    texts = [a.json()["choices"][0]["message"]["content"] for a in answers]
    assert not any("shadow" in t for t in texts) and len(shadow.calls) == 201
    assert 10 <= sum(t.startswith("canary") for t in texts) <= 70
    assert again.json()["choices"][0]["message"]["content"] == texts[3]
    with home.store.read() as session:
        rows = list(session.execute(select(GatewayRequest)).scalars())
    mirrored = [r for r in rows if r.shadow_of]
    primaries = {r.id: r for r in rows if not r.shadow_of}
    assert len(mirrored) == 201 and len(primaries) == 201
    assert all(r.completion.startswith("shadow") and r.shadow_of in primaries for r in mirrored)
    assert {r.arm for r in primaries.values()} == {"stable", "canary"}
    assert {r.model_version for r in primaries.values() if r.arm == "canary"} == {"support-bot@candidate"}


async def test_cache_hits_only_deterministic_requests_per_key(home: Home, make_key: Any, gw: Any) -> None:
    first, second = make_key(), make_key()
    mock = gw.MockUpstream("a")
    async with gw.client(
        home, gw.config(cache={"enabled": True}), gw.in_process(**{"support-bot": mock})
    ) as (client, _):
        for key in (first, first, second):
            answer = await client.post(
                "/v1/chat/completions", json=gw.chat_body(temperature=0), headers=gw.bearer(key)
            )
            assert answer.status_code == 200
        assert len(mock.calls) == 2  # the second call of the first key was a hit; keys do not share
        hit = await client.post(
            "/v1/chat/completions", json=gw.chat_body(temperature=0, user="x"), headers=gw.bearer(first)
        )
        assert hit.headers.get("x-llmops-cache") == "hit" and len(mock.calls) == 2
        for _ in range(2):
            await client.post(
                "/v1/chat/completions", json=gw.chat_body(temperature=0.7), headers=gw.bearer(first)
            )
        assert len(mock.calls) == 4
        await client.post(
            "/v1/chat/completions", json=gw.chat_body(temperature=0.7, seed=3), headers=gw.bearer(first)
        )
        await client.post(
            "/v1/chat/completions", json=gw.chat_body(temperature=0.7, seed=3), headers=gw.bearer(first)
        )
        assert len(mock.calls) == 5
    with home.store.read() as session:
        hits = list(
            session.execute(select(GatewayRequest).where(GatewayRequest.cache_hit.is_(True))).scalars()
        )
    assert len(hits) == 3 and all(r.cost_usd == 0 for r in hits)


async def test_a_request_its_arm_could_not_serve_is_logged_against_that_arm_s_version(
    home: Home, make_key: Any, gw: Any
) -> None:
    """A canary whose every replica fails (or is ejected) must count its failures, not vanish."""
    key = make_key()
    stable, canary = gw.MockUpstream("stable"), gw.MockUpstream("canary", fail_status=500)
    spec = gw.deployment(
        "support-bot",
        max_retries=0,
        arms=[
            {"name": "stable", "weight": 50, "model": "support-bot@1"},
            {"name": "canary", "weight": 50, "model": "support-bot@2"},
        ],
    )
    mocks = gw.in_process(support_bot__stable=stable, support_bot__canary=canary)
    mocks = {k.replace("support_bot", "support-bot"): v for k, v in mocks.items()}
    async with gw.client(home, gw.config(spec), mocks) as (client, _):
        answers = [
            await client.post("/v1/chat/completions", json=gw.chat_body(user=f"u{i}"), headers=gw.bearer(key))
            for i in range(30)
        ]
    failed = [a for a in answers if a.status_code != 200]
    assert failed and len(failed) < 30
    with home.store.read() as session:
        rows = list(session.execute(select(GatewayRequest)).scalars())
    assert len(rows) == 30
    unserved = [r for r in rows if r.status != 200]
    assert len(unserved) == len(failed)
    assert {(r.arm, r.model_version) for r in unserved} == {("canary", "support-bot@2")}, (
        "failed while ejected, too"
    )


async def test_a_mirrored_request_is_logged_with_the_version_it_started_on(
    home: Home, make_key: Any, gw: Any
) -> None:
    key = make_key()
    shadow = gw.MockUpstream("shadow", first_delay=0.5)
    spec = gw.deployment("support-bot", shadow={"arm": {"name": "shadow"}, "sample_rate": 1.0})
    mocks = gw.in_process(support_bot=gw.MockUpstream("stable"), support_bot__shadow=shadow)
    mocks = {k.replace("support_bot", "support-bot"): v for k, v in mocks.items()}
    async with gw.client(home, gw.config(spec), mocks) as (client, gateway):
        arm = gateway.table.get("support-bot").shadow
        started_on = arm.model_version
        answer = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
        assert answer.status_code == 200
        arm.model_version = "support-bot@moved"  # what an alias move does to the arm meanwhile
        deadline = time.monotonic() + 20
        while gateway.pipeline.shadow._tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    with home.store.read() as session:
        (mirrored,) = session.execute(
            select(GatewayRequest).where(GatewayRequest.shadow_of.is_not(None))
        ).scalars()
    assert mirrored.status == 200 and mirrored.model_version == started_on != "support-bot@moved"
