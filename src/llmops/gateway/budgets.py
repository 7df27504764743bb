"""Budgets in USD per key: the worst-case cost is reserved before forwarding and settled after.

A request is admitted only when ``spent + reserved + worst case <= budget``; ``settle`` charges the
actual cost (never more than the reservation, by construction of the worst case) and frees the
rest, and a failed or disconnected request settles at what it actually consumed (often zero). So
however many requests race, spending never passes the budget by more than one request's cost.
Amounts are kept in integer micro-dollars. ``MemoryBudgetLedger`` serves one worker (seeded from
the request log on a key's first use); ``RedisBudgetLedger`` is shared and atomic (Lua), and fails
closed: while Redis is down, requests of keys with a budget get 503.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from llmops.errors import Overloaded, RateLimited

MICRO = 1_000_000
SpentLoader = Callable[[str], float]


def to_micro(usd: float) -> int:
    return math.ceil(round(usd * MICRO, 6))


class BudgetExceeded(RateLimited):
    """429 naming the budget: no Retry-After, a budget does not refill by waiting."""

    def __init__(self, key_name: str, budget: float, spent: float, reserved: float, worst: float) -> None:
        super().__init__(
            f"budget exhausted for key {key_name!r}: budget ${budget:.6g}, spent ${spent:.6g}, "
            f"${reserved:.6g} reserved by requests in flight, and this request may cost up to ${worst:.6g}; "
            "lower max_tokens or ask an admin to raise the key's budget",
            code="budget_exceeded",
        )

    def headers(self) -> dict[str, str]:
        return {"x-ratelimit-limit-name": "key.budget_usd"}


class ReservationIds:
    """Ids unique across workers and gateways sharing a ledger: a random prefix per process and
    ledger, then a counter (cheaper per request than a uuid4)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


@dataclass(frozen=True)
class Reservation:
    key_id: str
    id: str
    amount: int


class BudgetLedger(ABC):
    @abstractmethod
    async def reserve(self, key_id: str, key_name: str, budget_usd: float, worst_usd: float) -> Reservation:
        """Hold ``worst_usd`` against the key's budget, or raise ``BudgetExceeded``."""

    @abstractmethod
    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Charge the actual cost and release the reservation (call exactly once, also on failure)."""

    @abstractmethod
    async def spent(self, key_id: str) -> float: ...


class MemoryBudgetLedger(BudgetLedger):
    """Budgets of one worker; a key's spending is loaded from ``load_spent`` on its first use."""

    def __init__(self, load_spent: SpentLoader | None = None) -> None:
        self._spent: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        self._open: dict[str, int] = {}
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._load_spent = load_spent
        self._ids = ReservationIds()

    async def _ensure_loaded(self, key_id: str) -> None:
        if key_id in self._spent:
            return
        if key_id in self._loading:
            await self._loading[key_id]
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loading[key_id] = future
        try:
            spent = await asyncio.to_thread(self._load_spent, key_id) if self._load_spent else 0.0
            self._spent.setdefault(key_id, to_micro(spent))
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise Overloaded("could not load the key's spending; retry", retry_after=1) from exc
        finally:
            del self._loading[key_id]

    async def reserve(self, key_id: str, key_name: str, budget_usd: float, worst_usd: float) -> Reservation:
        await self._ensure_loaded(key_id)
        worst = to_micro(worst_usd)
        spent, reserved = self._spent[key_id], self._reserved.get(key_id, 0)
        if spent + reserved + worst > to_micro(budget_usd):
            raise BudgetExceeded(key_name, budget_usd, spent / MICRO, reserved / MICRO, worst_usd)
        reservation = Reservation(key_id, self._ids.next(), worst)
        self._reserved[key_id] = reserved + worst
        self._open[reservation.id] = worst
        return reservation

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        if self._open.pop(reservation.id, None) is None:
            return
        self._reserved[reservation.key_id] -= reservation.amount
        self._spent[reservation.key_id] = self._spent.get(reservation.key_id, 0) + to_micro(actual_usd)

    async def spent(self, key_id: str) -> float:
        await self._ensure_loaded(key_id)
        return self._spent[key_id] / MICRO


# reserve_budget(...): {1 if held else 0, spent, reserved} (micro-dollars, before this hold)
RESERVE_FUNCTION = """
local function reserve_budget(base, holds, amounts, budget, amount, id, hold_s)
  local now = tonumber(redis.call('TIME')[1])
  local stale = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  for _, sid in ipairs(stale) do
    local a = tonumber(redis.call('HGET', amounts, sid) or '0')
    redis.call('HINCRBY', base, 'reserved', -a)
    redis.call('HDEL', amounts, sid)
    redis.call('ZREM', holds, sid)
  end
  local spent = tonumber(redis.call('HGET', base, 'spent') or '0')
  local reserved = tonumber(redis.call('HGET', base, 'reserved') or '0')
  if spent + reserved + amount > budget then
    return {0, spent, reserved}
  end
  redis.call('HINCRBY', base, 'reserved', amount)
  redis.call('ZADD', holds, now + hold_s, id)
  redis.call('HSET', amounts, id, amount)
  return {1, spent, reserved}
end
"""
# KEYS: the key's budget hash, holds and amounts; ARGV: budget, amount, reservation id, hold seconds
RESERVE_LUA = RESERVE_FUNCTION + (
    "return reserve_budget(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], "
    "tonumber(ARGV[4]))\n"
)

# KEYS: as RESERVE_LUA's; ARGV: reservation id, actual cost
SETTLE_LUA = """
local a = redis.call('HGET', KEYS[3], ARGV[1])
if not a then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(a))
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'spent', tonumber(ARGV[2]))
return 1
"""


class RedisBudgetLedger(BudgetLedger):
    """Budgets shared by every worker; reservations of a crashed worker expire after ``hold_s``."""

    def __init__(self, redis: Redis, prefix: str, *, hold_s: float = 900.0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.hold_s = hold_s
        self._reserve: Any = redis.register_script(RESERVE_LUA)
        self._settle: Any = redis.register_script(SETTLE_LUA)
        self._ids = ReservationIds()

    def keys(self, key_id: str) -> list[str]:
        """The key's budget hash, its holds and their amounts (``RESERVE_FUNCTION``'s keys)."""
        base = f"{self.prefix}budget:{key_id}"
        return [base, base + ":holds", base + ":amounts"]

    def hold(self, key_id: str, budget_usd: float, worst_usd: float) -> tuple[Reservation, list[Any]]:
        """A new reservation of ``worst_usd`` and ``RESERVE_FUNCTION``'s arguments to hold it."""
        reservation = Reservation(key_id, self._ids.next(), to_micro(worst_usd))
        return reservation, [to_micro(budget_usd), reservation.amount, reservation.id, math.ceil(self.hold_s)]

    async def reserve(self, key_id: str, key_name: str, budget_usd: float, worst_usd: float) -> Reservation:
        reservation, args = self.hold(key_id, budget_usd, worst_usd)
        try:
            result = await self._reserve(keys=self.keys(key_id), args=args)
        except (RedisError, OSError) as exc:
            raise budgets_unavailable() from exc
        return held(reservation, key_name, budget_usd, worst_usd, *result)

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        args = [reservation.id, to_micro(actual_usd)]
        for attempt in range(3):
            try:
                await self._settle(keys=self.keys(reservation.key_id), args=args)
                return
            except (RedisError, OSError):
                await asyncio.sleep(0.05 * (attempt + 1))
        # Still down: the hold expires after hold_s; the charge is in the request log.

    async def spent(self, key_id: str) -> float:
        try:
            value = await self.redis.hget(self.keys(key_id)[0], "spent")
        except (RedisError, OSError) as exc:
            raise budgets_unavailable() from exc
        return int(value or 0) / MICRO


def held(
    reservation: Reservation,
    key_name: str,
    budget_usd: float,
    worst_usd: float,
    ok: Any,
    spent: Any,
    reserved: Any,
) -> Reservation:
    """The reservation ``RESERVE_FUNCTION`` held, or the ``BudgetExceeded`` it reported."""
    if not int(ok):
        raise BudgetExceeded(key_name, budget_usd, int(spent) / MICRO, int(reserved) / MICRO, worst_usd)
    return reservation


def budgets_unavailable() -> Overloaded:
    return Overloaded(
        "the budget store (Redis) is unavailable; keys with a budget are refused until it is back",
        retry_after=1,
        code="budgets_unavailable",
    )
