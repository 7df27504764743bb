"""Rate limits and budgets: sliding windows, Retry-After, two workers on one Redis, fail modes."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest

from llmops.gateway.budgets import MemoryBudgetLedger
from llmops.gateway.limits import LimitRule, MemoryRateLimiter, RedisRateLimiter
from llmops.gateway.metrics import GatewayMetrics
from llmops.security.roles import Role
from llmops.store.home import Home

pytestmark = pytest.mark.anyio
REDIS = "redis://127.0.0.1:6379/0"


async def _post(client: Any, gw: Any, key: str, **extra: Any) -> Any:
    return await client.post("/v1/chat/completions", json=gw.chat_body(**extra), headers=gw.bearer(key))


async def test_memory_limiter_window_and_retry_after() -> None:
    limiter = MemoryRateLimiter(window_s=60)
    rules = [LimitRule("key:a:rpm", "key.rpm", 3, 1, "rpm=3 (test)")]
    for _ in range(3):
        await limiter.acquire(rules)
    with pytest.raises(Exception, match="rpm=3") as caught:
        await limiter.acquire(rules)
    retry = int(caught.value.headers()["Retry-After"])  # type: ignore[attr-defined]
    assert 1 <= retry <= 60 and caught.value.headers()["x-ratelimit-limit-name"] == "key.rpm"  # type: ignore[attr-defined]
    other = [LimitRule("key:b:rpm", "key.rpm", 3, 1, "rpm=3")]
    await limiter.acquire(other)  # scopes are separate
    both = [other[0], LimitRule("dep:x:tpm", "deployment.tpm", 10, 11, "tpm=10")]
    with pytest.raises(Exception, match="more than the whole limit"):
        await limiter.acquire(both)


async def test_memory_limiter_counts_corrections_and_forgets_buckets_that_left_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("llmops.gateway.limits.time.time", lambda: clock[0])
    limiter = MemoryRateLimiter(window_s=60)

    def tpm(amount: int) -> list[LimitRule]:
        return [LimitRule("key:t:tpm", "key.tpm", 100, amount, "tpm=100")]

    early = await limiter.acquire(tpm(80))
    await limiter.adjust(early, "key:t:tpm", -70)  # it used 10
    await limiter.acquire(tpm(90))  # 10 + 90: at the limit
    with pytest.raises(Exception, match="tpm=100"):
        await limiter.acquire(tpm(1))
    clock[0] = 1030.0
    with pytest.raises(Exception, match="tpm=100"):
        await limiter.acquire(tpm(1))
    clock[0] = 1060.5  # both left the window
    await limiter.acquire(tpm(100))
    await limiter.adjust(early, "key:t:tpm", -50)  # a late correction of a forgotten bucket: no effect
    with pytest.raises(Exception, match="tpm=100"):
        await limiter.acquire(tpm(1))
    clock[0] = 1121.0
    await limiter.acquire(tpm(100))


async def test_rpm_429_names_the_limit(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key(rpm=2)
    async with gw.client(home, gw.config(), gw.in_process(**{"support-bot": gw.MockUpstream("a")})) as (
        client,
        _,
    ):
        assert [(await _post(client, gw, key)).status_code for _ in range(2)] == [200, 200]
        refused = await _post(client, gw, key)
        assert refused.status_code == 429 and refused.headers["Retry-After"]
        assert (
            "rpm=2" in refused.json()["error"]["message"]
            and refused.headers["x-ratelimit-limit-name"] == "key.rpm"
        )


async def test_two_workers_sharing_redis_admit_at_most_the_limit(
    home: Home, make_key: Any, gw: Any, redis_prefix: str
) -> None:
    key = make_key(rpm=100)
    # failing closed, a Redis call that times out on a loaded machine answers 503 instead of
    # admitting one more request: the count of admissions stays a statement about the shared limit
    limits = {"backend": "redis", "fail_mode": "closed"}
    config = gw.config(redis_url=REDIS, redis_prefix=redis_prefix, limits=limits)
    async with AsyncExitStack() as stack:
        clients = [
            (
                await stack.enter_async_context(
                    gw.client(home, config, gw.in_process(**{"support-bot": gw.MockUpstream(n)}))
                )
            )[0]
            for n in ("w1", "w2")
        ]
        results = await asyncio.gather(*(_post(clients[i % 2], gw, key) for i in range(300)))
    statuses = [r.status_code for r in results]
    assert set(statuses) <= {200, 429, 503} and statuses.count(200) <= 100
    if 503 not in statuses:  # Redis answered every call: exactly the limit went through
        assert statuses.count(200) == 100 and statuses.count(429) == 200
    served_by = {r.json()["choices"][0]["message"]["content"][:2] for r in results if r.status_code == 200}
    assert served_by == {"w1", "w2"}


async def test_redis_down_limits_follow_fail_mode_and_budgets_fail_closed(
    home: Home, make_key: Any, gw: Any
) -> None:
    limited, budgeted = make_key(rpm=5), make_key(budget_usd=10.0)
    for mode, expected in (("open", 200), ("closed", 503)):
        config = gw.config(redis_url="redis://127.0.0.1:1/0", limits={"backend": "redis", "fail_mode": mode})
        async with gw.client(home, config, gw.in_process(**{"support-bot": gw.MockUpstream("a")})) as (
            client,
            gateway,
        ):
            answer = await _post(client, gw, limited)
            assert answer.status_code == expected, answer.text
            counted = gateway.metrics.fail_open.labels(limit="key.rpm")._value.get()
            assert counted == (1 if mode == "open" else 0)
            refused = await _post(client, gw, budgeted)
            assert refused.status_code == 503 and "budget store" in refused.json()["error"]["message"]


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_concurrent_requests_overshoot_a_budget_by_at_most_one_request(
    home: Home, make_key: Any, gw: Any, redis_prefix: str, backend: str
) -> None:
    budget = 0.5
    key = make_key(budget_usd=budget, name="small-budget")
    config = gw.config(redis_url=REDIS, redis_prefix=redis_prefix, limits={"backend": backend})
    one_request = (7 * 1.0 + 5 * 2.0) / 1000  # the mock's usage at the deployment's prices
    statuses: list[int] = []
    async with gw.client(
        home, config, gw.in_process(**{"support-bot": gw.MockUpstream("a", token_delay=0.002)})
    ) as (
        client,
        gateway,
    ):
        for _ in range(20):
            wave = await asyncio.gather(*(_post(client, gw, key) for _ in range(50)))
            statuses += [r.status_code for r in wave]
            refused = [r for r in wave if r.status_code == 429]
            assert all(r.json()["error"]["code"] == "budget_exceeded" for r in refused)
            if len(refused) == 50:
                break
        spent = await gateway.pipeline.budgets.spent(gateway.keys.list()[0].id)
    assert statuses.count(200) >= 20 and statuses.count(429) >= 50
    assert spent == pytest.approx(statuses.count(200) * one_request)
    assert spent <= budget + one_request


async def test_memory_budget_is_loaded_from_the_request_log(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key(budget_usd=1.0)
    async with gw.client(home, gw.config(), gw.in_process(**{"support-bot": gw.MockUpstream("a")})) as (
        client,
        gw1,
    ):
        assert (await _post(client, gw, key)).status_code == 200
    key_id = gw1.keys.list()[0].id
    ledger = MemoryBudgetLedger(__import__("llmops.gateway.service", fromlist=["x"]).spent_loader(home.store))
    assert await ledger.spent(key_id) == pytest.approx(0.017)


async def test_redis_limiter_adjusts_tokens(redis_prefix: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS)
    limiter = RedisRateLimiter(redis, redis_prefix, GatewayMetrics())
    rule = LimitRule("key:t:tpm", "key.tpm", 100, 80, "tpm=100")
    admission = await limiter.acquire([rule])
    await limiter.adjust(admission, "key:t:tpm", -70)  # actual usage was 10 tokens
    await limiter.acquire([LimitRule("key:t:tpm", "key.tpm", 100, 90, "tpm=100")])
    with pytest.raises(Exception, match="tpm=100"):
        await limiter.acquire([LimitRule("key:t:tpm", "key.tpm", 100, 1, "tpm=100")])
    await redis.aclose()
    assert Role.CONSUMER


async def test_redis_limits_and_budget_take_one_round_trip_to_admit_and_one_to_settle(
    home: Home, make_key: Any, gw: Any, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Limits (rpm, tpm) and a budget in Redis: one script admits and holds, one batch settles and
    corrects the token counters (five round trips before); what Redis holds afterwards is right."""
    from redis.asyncio.connection import AbstractConnection

    key = make_key(rpm=1000, tpm=1_000_000, budget_usd=10.0)
    config = gw.config(redis_url=REDIS, redis_prefix=redis_prefix, limits={"backend": "redis"})
    async with gw.client(home, config, gw.in_process(**{"support-bot": gw.MockUpstream("a")})) as (
        client,
        gateway,
    ):
        assert (await _post(client, gw, key)).status_code == 200  # scripts loaded into Redis
        sent: list[object] = []
        original = AbstractConnection.send_packed_command

        async def counted(self: Any, command: Any, check_health: bool = True) -> None:
            sent.append(command)
            await original(self, command, check_health)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
        answer = await _post(client, gw, key)
        monkeypatch.undo()
        assert answer.status_code == 200 and len(sent) == 2, sent
        ledger, key_id = gateway.pipeline.budgets, gateway.keys.lookup(key).id
        assert await ledger.spent(key_id) > 0  # both charged, nothing left on hold
        assert int(await gateway.redis.hget(ledger.keys(key_id)[0], "reserved")) == 0
        tpm = [k async for k in gateway.redis.scan_iter(redis_prefix + "rl:key:*:tpm")]
        counted_tokens = sum(int(v) for v in (await gateway.redis.hgetall(tpm[0])).values())
        usage = answer.json()["usage"]
        assert len(tpm) == 1 and counted_tokens == 2 * (usage["prompt_tokens"] + usage["completion_tokens"])
