"""The response cache: exact matches of deterministic requests, per tenant (key), with a TTL.

Only requests whose answer is determined by their input are cached: temperature 0 or a fixed
seed, not streamed. The cache key is the SHA-256 of the key id, the deployment, the endpoint (a
chat answer is never a text completion's) and the request body normalised (sorted JSON without
fields that do not change the answer). Values are JSON, never pickled. ``MemoryResponseCache`` is
bounded (LRU); ``RedisResponseCache`` is shared.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

IGNORED_FIELDS = frozenset({"stream", "stream_options", "user", "metadata"})


def is_deterministic(body: dict[str, Any]) -> bool:
    if body.get("stream"):
        return False
    if body.get("n") not in (None, 1):
        return False
    temperature = body.get("temperature", 1.0)
    return temperature == 0 or body.get("seed") is not None


def cache_key(key_id: str, deployment: str, endpoint: str, body: dict[str, Any]) -> str:
    normalised = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    canonical = json.dumps([key_id, deployment, endpoint, normalised], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResponseCache(ABC):
    @abstractmethod
    async def get(self, key: str) -> dict[str, Any] | None: ...

    @abstractmethod
    async def put(self, key: str, value: dict[str, Any]) -> None: ...


class MemoryResponseCache(ResponseCache):
    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def get(self, key: str) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        loaded: dict[str, Any] = json.loads(value)
        return loaded

    async def put(self, key: str, value: dict[str, Any]) -> None:
        self._entries[key] = (time.monotonic() + self.ttl_s, json.dumps(value))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class RedisResponseCache(ResponseCache):
    """Shared cache; a Redis outage turns into cache misses, never into failed requests."""

    def __init__(self, redis: Redis, prefix: str, ttl_s: float) -> None:
        self.redis = redis
        self.prefix = prefix + "cache:"
        self.ttl_ms = int(ttl_s * 1000)

    async def get(self, key: str) -> dict[str, Any] | None:
        try:
            value = await self.redis.get(self.prefix + key)
        except (RedisError, OSError):
            return None
        if value is None:
            return None
        loaded: dict[str, Any] = json.loads(value)
        return loaded

    async def put(self, key: str, value: dict[str, Any]) -> None:
        try:
            await self.redis.set(self.prefix + key, json.dumps(value), px=self.ttl_ms)
        except (RedisError, OSError):
            return
