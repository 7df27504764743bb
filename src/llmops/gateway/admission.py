"""Rate limits and budgets in Redis at one round trip a request: admit together, settle in batches.

Admitting: ``admit`` runs the rate-limit script and the budget reserve as one Lua script
(``ADMIT_LUA``: ``limits.ACQUIRE_FUNCTION`` then ``budgets.RESERVE_FUNCTION``), with the same
outcomes as calling ``RedisRateLimiter.acquire`` then ``RedisBudgetLedger.reserve``: a limit that
is hit counts nothing and holds nothing; a budget that is exhausted leaves the limits counted (as
the two calls did). The pipeline admits this way only when nothing ran between the two calls
(no input guardrails and no cache lookup for the request); otherwise it makes the two calls.
When Redis does not answer, the limits' fail mode decides first (closed: 503), then budgets fail
closed (503), as before.

Settling: ``settle`` charges the reservation and corrects the token counters; the commands of
requests finishing together go to Redis in one pipeline (``RedisBatch``: the first one waiting
starts a flush on the next turn of the loop, and those that queue while it is in flight go in the
next one), and each request still waits until its own commands were sent. A settle that fails is
retried like ``RedisBudgetLedger.settle`` (the hold expires otherwise); a lost token correction
only skews one window's count, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from llmops.gateway.budgets import (
    RESERVE_FUNCTION,
    SETTLE_LUA,
    BudgetExceeded,
    RedisBudgetLedger,
    Reservation,
    budgets_unavailable,
    held,
    to_micro,
)
from llmops.gateway.limits import (
    ACQUIRE_FUNCTION,
    Admission,
    LimitRule,
    RedisRateLimiter,
    admitted,
    check_single,
)

# KEYS: the limits' counters, then the budget's three keys. ARGV: the number of counters, the
# window (buckets, width, ttl), limit and amount of each counter, then the budget's arguments.
ADMIT_LUA = (
    ACQUIRE_FUNCTION
    + RESERVE_FUNCTION
    + """
local nl = tonumber(ARGV[1])
local counters = {}
for i = 1, nl do
  counters[i] = KEYS[i]
end
local limited = acquire_limits(counters, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV, 5)
if limited[1] ~= 0 then
  return {limited[1], limited[2], limited[3], 0, 0, 0}
end
local b = 5 + 2 * nl
local held = reserve_budget(KEYS[nl + 1], KEYS[nl + 2], KEYS[nl + 3], tonumber(ARGV[b]),
  tonumber(ARGV[b + 1]), ARGV[b + 2], tonumber(ARGV[b + 3]))
return {0, limited[2], limited[3], held[1], held[2], held[3]}
"""
)
SETTLE_ATTEMPTS = 3

Fill = Callable[[Pipeline], None]


class RedisBatch:
    """Commands of requests finishing together, sent to Redis in one pipeline round trip."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._queued: list[tuple[Fill, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def send(self, fill: Fill) -> None:
        """Add ``fill``'s commands to the next flush; return once it was sent (or raise its error)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queued.append((fill, done))
        if self._flushing is None:
            self._flushing = loop.create_task(self._flush_all(), name="redis-settle-batch")
        await done

    async def _flush_all(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                error: BaseException | None = None
                try:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for fill, _ in batch:
                            fill(pipe)
                        await pipe.execute()
                except (RedisError, OSError) as exc:
                    error = exc
                for _, done in batch:
                    if done.done():
                        continue
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
                        done.exception()  # retrieved: a waiter that went away does not warn
        finally:
            self._flushing = None


class RedisAdmission:
    """Admit (limits + budget hold) in one script, settle (charge + corrections) in batches."""

    def __init__(self, redis: Redis, limiter: RedisRateLimiter, ledger: RedisBudgetLedger) -> None:
        self.limiter = limiter
        self.ledger = ledger
        self.batch = RedisBatch(redis)
        self._admit: Any = redis.register_script(ADMIT_LUA)

    async def admit(
        self, rules: Sequence[LimitRule], key_id: str, key_name: str, budget_usd: float, worst_usd: float
    ) -> tuple[Admission, Reservation | BudgetExceeded]:
        """Count ``rules`` and hold ``worst_usd`` of the key's budget. A limit that refuses is
        raised; a budget that refuses is returned with the admission (its limits stay counted, to
        be corrected when the request finishes)."""
        check_single(rules, self.limiter.window_s)
        reservation, hold_args = self.ledger.hold(key_id, budget_usd, worst_usd)
        keys = self.limiter.keys(rules) + self.ledger.keys(key_id)
        args = [len(rules), *self.limiter.args(rules), *hold_args]
        try:
            failed, wait, bucket, ok, spent, reserved = await self._admit(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            if rules:  # without rules the limiter would not have asked Redis
                self.limiter.unavailable(rules, exc)  # closed: 503; open: counted, then the budget's 503
            raise budgets_unavailable() from exc
        admission = admitted(rules, failed, wait, bucket)
        try:
            return admission, held(reservation, key_name, budget_usd, worst_usd, ok, spent, reserved)
        except BudgetExceeded as exc:
            return admission, exc

    async def settle(
        self,
        reservation: Reservation | None,
        actual_usd: float,
        corrections: Sequence[tuple[Admission, str, int]],
    ) -> None:
        """Charge ``actual_usd`` to ``reservation`` (if any) and correct the token counters
        (``(admission, scope, delta)``), in the next batch."""
        fixes = [
            (self.limiter.counter(scope), str(admission.bucket), delta)
            for admission, scope, delta in corrections
            if delta and scope in admission.counted
        ]
        settle_args: list[str | int] | None = (
            [reservation.id, to_micro(actual_usd)] if reservation is not None else None
        )
        budget_keys = self.ledger.keys(reservation.key_id) if reservation is not None else []
        for attempt in range(SETTLE_ATTEMPTS):

            def fill(pipe: Pipeline, fixes: list[tuple[str, str, int]] = fixes) -> None:
                if settle_args is not None:
                    pipe.eval(SETTLE_LUA, 3, *budget_keys, *settle_args)
                for counter, bucket, delta in fixes:
                    pipe.hincrby(counter, bucket, delta)

            if settle_args is None and not fixes:
                return
            try:
                await self.batch.send(fill)
                return
            except (RedisError, OSError):
                fixes = []  # corrections are not repeated: a half-sent batch may have applied them
                await asyncio.sleep(0.05 * (attempt + 1))
        # Still down: the hold expires after hold_s; the charge is in the request log.
