"""Rate limits (requests and tokens per minute, per key and per deployment) over a sliding window.

The window is split into ``BUCKETS`` buckets; a request is admitted when, for every rule, the
amounts in the live buckets plus its own stay within the limit, and then it is counted in all of
them at once (all-or-nothing). ``MemoryRateLimiter`` serves one worker; ``RedisRateLimiter`` runs the
same algorithm as one Lua script, atomic across workers and gateways. When Redis is down the
configured fail mode decides: open (admit, counted in a metric) or closed (503).
Token limits are charged an estimate up front and corrected with ``adjust`` once usage is known.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from llmops.errors import Overloaded, RateLimited
from llmops.gateway.metrics import GatewayMetrics

BUCKETS = 60


class LimitExceeded(RateLimited):
    """429 naming the limit that was hit, with Retry-After."""

    def __init__(self, rule: LimitRule, retry_after: float) -> None:
        super().__init__(
            f"rate limit exceeded: {rule.description}; retry after {max(1, math.ceil(retry_after))}s",
            retry_after=retry_after,
            code="rate_limit_exceeded",
        )
        self.rule = rule

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "x-ratelimit-limit-name": self.rule.name}


@dataclass(frozen=True)
class LimitRule:
    """One limit to check: ``scope`` is the counter, ``name`` what the client sees (``key.rpm``)."""

    scope: str
    name: str
    limit: int
    amount: int
    description: str


@dataclass
class Admission:
    """What an admitted request was counted as; ``adjust`` corrects token estimates later."""

    bucket: int = 0
    counted: dict[str, int] = field(default_factory=dict)


class RateLimiter(ABC):
    @abstractmethod
    async def acquire(self, rules: Sequence[LimitRule]) -> Admission:
        """Admit (and count) the request under every rule, or raise ``LimitExceeded``."""

    @abstractmethod
    async def adjust(self, admission: Admission, scope: str, delta: int) -> None:
        """Correct what ``scope`` was charged (actual tokens minus the estimate)."""


def check_single(rules: Sequence[LimitRule], window_s: int) -> None:
    """A request larger than a limit can never be admitted: say so instead of a useless Retry-After."""
    for rule in rules:
        if rule.amount > rule.limit:
            raise RateLimited(
                f"this request needs {rule.amount} against {rule.description}, more than the whole limit; "
                "lower max_tokens or shorten the prompt",
                code="request_too_large_for_limit",
            )


class MemoryRateLimiter(RateLimiter):
    """Sliding-window limits of one worker process. Each counter keeps its live total; buckets that
    left the window are dropped once per bucket width, not on every request."""

    def __init__(self, window_s: int = 60) -> None:
        self.window_s = window_s
        self.width = window_s / BUCKETS
        self._counts: dict[str, dict[int, int]] = {}
        self._totals: dict[str, int] = {}
        self._pruned: dict[str, int] = {}  # the bucket each counter was last pruned at

    async def acquire(self, rules: Sequence[LimitRule]) -> Admission:
        check_single(rules, self.window_s)
        now = time.time()
        bucket = int(now / self.width)
        for rule in rules:
            total = self._live(rule.scope, bucket)
            if total + rule.amount > rule.limit:
                counts = self._counts[rule.scope]
                raise LimitExceeded(rule, self._retry_after(counts, total + rule.amount - rule.limit, now))
        for rule in rules:
            counts = self._counts[rule.scope]
            counts[bucket] = counts.get(bucket, 0) + rule.amount
            self._totals[rule.scope] += rule.amount
        return Admission(bucket, {rule.scope: rule.amount for rule in rules})

    async def adjust(self, admission: Admission, scope: str, delta: int) -> None:
        counts = self._counts.get(scope)
        if counts is not None and admission.bucket in counts:
            counts[admission.bucket] += delta
            self._totals[scope] += delta

    def _live(self, scope: str, bucket: int) -> int:
        """The counter's total over the buckets still in the window at ``bucket``."""
        if self._pruned.get(scope) == bucket:
            return self._totals[scope]
        counts = self._counts.setdefault(scope, {})
        for old in [b for b in counts if b <= bucket - BUCKETS]:
            del counts[old]
        self._pruned[scope] = bucket
        total = self._totals[scope] = sum(counts.values())
        return total

    def _retry_after(self, counts: dict[int, int], need: int, now: float) -> float:
        for bucket in sorted(counts):
            need -= counts[bucket]
            if need <= 0:
                return (bucket + BUCKETS) * self.width - now
        return float(self.window_s)


# acquire_limits(keys, n, width, ttl, argv, first): the limit and amount of keys[i] are
# argv[first + 2i - 2] and argv[first + 2i - 1]; returns {failed rule index or 0, wait, bucket}
ACQUIRE_FUNCTION = """
local function acquire_limits(keys, n, width, ttl, argv, first)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local bucket = math.floor(now / width)
  for i, key in ipairs(keys) do
    local limit = tonumber(argv[first + 2 * i - 2])
    local amount = tonumber(argv[first + 2 * i - 1])
    local flat = redis.call('HGETALL', key)
    local live = {}
    local sum = 0
    for j = 1, #flat, 2 do
      local b = tonumber(flat[j])
      if b <= bucket - n then
        redis.call('HDEL', key, flat[j])
      else
        local c = tonumber(flat[j + 1])
        sum = sum + c
        table.insert(live, {b, c})
      end
    end
    if sum + amount > limit then
      table.sort(live, function(x, y) return x[1] < y[1] end)
      local need = sum + amount - limit
      local wait = n * width
      for _, e in ipairs(live) do
        need = need - e[2]
        if need <= 0 then
          wait = (e[1] + n) * width - now
          break
        end
      end
      return {i, tostring(wait), bucket}
    end
  end
  for i, key in ipairs(keys) do
    redis.call('HINCRBY', key, bucket, tonumber(argv[first + 2 * i - 1]))
    redis.call('EXPIRE', key, ttl)
  end
  return {0, '0', bucket}
end
"""
# KEYS: the counters; ARGV: buckets, bucket width, ttl, then limit and amount of each counter
ACQUIRE_LUA = (
    ACQUIRE_FUNCTION
    + "return acquire_limits(KEYS, tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV, 4)\n"
)


class RedisRateLimiter(RateLimiter):
    """Sliding-window limits shared by every worker and gateway on one Redis."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        metrics: GatewayMetrics,
        *,
        window_s: int = 60,
        fail_mode: Literal["open", "closed"] = "open",
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.metrics = metrics
        self.window_s = window_s
        self.fail_mode = fail_mode
        self._script: Any = redis.register_script(ACQUIRE_LUA)

    async def acquire(self, rules: Sequence[LimitRule]) -> Admission:
        check_single(rules, self.window_s)
        if not rules:
            return Admission()
        try:
            result = await self._script(keys=self.keys(rules), args=self.args(rules))
        except (RedisError, OSError) as exc:
            return self.unavailable(rules, exc)
        return admitted(rules, *result)

    def keys(self, rules: Sequence[LimitRule]) -> list[str]:
        """The counters of ``rules`` (``ACQUIRE_FUNCTION``'s keys)."""
        return [self.counter(rule.scope) for rule in rules]

    def counter(self, scope: str) -> str:
        return self.prefix + "rl:" + scope

    def args(self, rules: Sequence[LimitRule]) -> list[Any]:
        """``ACQUIRE_FUNCTION``'s window and, for each rule, its limit and amount."""
        args: list[Any] = [BUCKETS, self.window_s / BUCKETS, self.window_s * 2]
        for rule in rules:
            args += [rule.limit, rule.amount]
        return args

    async def adjust(self, admission: Admission, scope: str, delta: int) -> None:
        if scope not in admission.counted or delta == 0:
            return
        try:
            await self.redis.hincrby(self.counter(scope), str(admission.bucket), delta)
        except (RedisError, OSError):
            return  # a lost correction only skews one window's token count

    def unavailable(self, rules: Sequence[LimitRule], exc: Exception) -> Admission:
        """Redis did not answer: 503 when limits fail closed, else admitted uncounted (counted in
        ``llmops_gateway_ratelimit_fail_open``)."""
        if self.fail_mode == "closed":
            raise Overloaded(
                "the rate-limit store (Redis) is unavailable and limits fail closed; retry shortly",
                retry_after=1,
                code="limits_unavailable",
            ) from exc
        for rule in rules:
            self.metrics.fail_open.labels(limit=rule.name).inc()
        return Admission()


def admitted(rules: Sequence[LimitRule], failed: Any, wait: Any, bucket: Any) -> Admission:
    """The admission ``ACQUIRE_FUNCTION`` answered, or the ``LimitExceeded`` it reported."""
    if int(failed):
        raise LimitExceeded(rules[int(failed) - 1], float(wait))
    return Admission(int(bucket), {rule.scope: rule.amount for rule in rules})
