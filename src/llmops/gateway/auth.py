"""Authentication: the presented API key → its record, through a TTL cache in front of the store.

The key is read from ``Authorization: Bearer`` (what OpenAI clients send) or ``x-api-key``. Records
are cached for ``key_cache_ttl_s`` under a keyed BLAKE2b hash of the key (keyed with random bytes
of this process, never stored: a few times cheaper per request than the HMAC-SHA256 the store is
searched by, which is computed on a miss only; the raw key is never kept), so a revocation
reaches every worker within that TTL; unknown keys are remembered for ``negative_cache_ttl_s`` so
garbage keys cannot hammer the database. While the store is unreachable, a key read from it within
the last ``stale_if_error_s`` keeps its last record (the store is asked again every
``negative_cache_ttl_s``), so the gateway keeps serving known keys through a database outage, as
its relaxed request log does; a revocation made meanwhile takes effect once the store answers
again. Store reads run in a thread, never on the event loop. Error messages never echo the presented key.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from llmops.errors import Forbidden, StoreUnavailable, Unauthorized
from llmops.gateway.config import AuthConfig
from llmops.security.keys import KeyRecord, KeyStore, looks_like_key
from llmops.security.roles import Role


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's record (its id and policy), never the key itself."""

    key: KeyRecord

    @property
    def key_id(self) -> str:
        return self.key.id

    def require(self, role: Role) -> None:
        if not self.key.role.allows(role):
            raise Forbidden(
                f"this key's role {self.key.role.label!r} may not do this; it needs {role.label!r} or higher",
                code="role_too_low",
            )


def presented_key(headers: Mapping[str, str]) -> str:
    """The key in the request headers, or ``Unauthorized`` saying how to send one."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    token = headers.get("x-api-key", "").strip()
    if token:
        return token
    raise Unauthorized(
        "no API key: send `Authorization: Bearer <key>` (the api_key of OpenAI clients)", code="missing_key"
    )


class KeyCache:
    """Key hash → (record or None, expiry, when read from the store); bounded, oldest evicted first."""

    def __init__(self, keys: KeyStore, config: AuthConfig) -> None:
        self.keys = keys
        self.config = config
        self._entries: OrderedDict[bytes, tuple[KeyRecord | None, float, float]] = OrderedDict()
        self._hash_key = os.urandom(32)

    async def authenticate(self, raw: str) -> Principal:
        if not looks_like_key(raw):
            raise Unauthorized("invalid API key", code="invalid_key")
        digest = hashlib.blake2b(raw.encode(), key=self._hash_key, digest_size=32).digest()
        now = time.monotonic()
        cached = self._entries.get(digest)
        if cached is not None and cached[1] > now:
            record = cached[0]
        else:
            try:
                record = await asyncio.to_thread(self.keys.lookup_digest, self.keys.digest(raw))
            except StoreUnavailable:
                if cached is None or cached[0] is None or now - cached[2] > self.config.stale_if_error_s:
                    raise
                record = cached[0]
                self._remember(digest, record, now + self.config.negative_cache_ttl_s, cached[2])
            else:
                ttl = self.config.key_cache_ttl_s if record else self.config.negative_cache_ttl_s
                self._remember(digest, record, now + ttl, now)
        if record is None:
            raise Unauthorized("invalid API key", code="invalid_key")
        record.check_usable()
        return Principal(record)

    def _remember(self, digest: bytes, record: KeyRecord | None, expires: float, read_at: float) -> None:
        self._entries[digest] = (record, expires, read_at)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.config.max_cached_keys:
            self._entries.popitem(last=False)

    def forget_all(self) -> None:
        """Drop every cached record (this worker sees changes at once, e.g. after an admin call)."""
        self._entries.clear()
