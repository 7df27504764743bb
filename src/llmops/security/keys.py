"""API keys: random, high-entropy, shown once, stored only as HMAC-SHA256 under the server secret.

Contract: ``KeyStore.create`` returns the raw key exactly once (``CreatedKey.key``); the database
keeps its HMAC (the lookup index), a four-character hint and the key's policy (role, models, rate
limits, budget, expiry). Every change (create, revoke) appends an audit event in the same
transaction, which never names the key or its hash. ``lookup`` maps a presented key to its record;
callers check ``KeyRecord.check_usable`` (revoked, expired) on every use.
"""

from __future__ import annotations

import hmac
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmops.errors import InvalidInput, NotFound, Unauthorized
from llmops.security.roles import Role, parse_role
from llmops.store import audit
from llmops.store.database import Store
from llmops.store.home import Home
from llmops.store.schema import ApiKey, utcnow

KEY_PREFIX = "sk-llmops-"
_KEY_RE = re.compile(r"^sk-llmops-[A-Za-z0-9_-]{43}$")
# A key's name holds at least one visible character. The class lists blanks and controls
# explicitly, with no ``\s``: the API schema is read with ECMA-262 regex by clients, with Rust regex
# by pydantic and with Python's re here, and the three disagree on what ``\s`` covers (U+001C..U+001F
# and U+FEFF among others), so only explicit ranges mean the same thing everywhere.
KEY_NAME_PATTERN = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_KEY_NAME_RE = re.compile(KEY_NAME_PATTERN)
_DURATION_RE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
KeyState = Literal["active", "expired", "revoked"]


def new_raw_key() -> str:
    """A new key: a fixed prefix (for secret scanners) and 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def looks_like_key(raw: str) -> bool:
    return bool(_KEY_RE.match(raw))


def hash_key(secret: bytes, raw: str) -> str:
    """HMAC-SHA256 of the key under the server secret, hex; the only form a key is stored in."""
    return hmac.digest(secret, raw.encode(), "sha256").hex()  # one call into OpenSSL


def parse_expiry(value: str | None, now: datetime | None = None) -> datetime | None:
    """``30d``, ``12h``, ``90m``, ``2w`` from now, or an ISO-8601 time (UTC if no zone given)."""
    if value is None or value == "":
        return None
    now = now or utcnow()
    match = _DURATION_RE.match(value.strip())
    if match:
        return now + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"cannot read expiry {value!r}; give a duration like 30d, 12h, 90m or an ISO-8601 time",
            param="expires",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class KeySpec:
    """What a new key may do. Empty ``models`` means every deployment; None limits mean unlimited."""

    name: str
    role: Role = Role.CONSUMER
    models: tuple[str, ...] = ()
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    expires_at: datetime | None = None

    def check(self) -> None:
        if not _KEY_NAME_RE.search(self.name) or len(self.name) > 200:
            raise InvalidInput(
                "a key needs a name of 1 to 200 characters, at least one of them visible", param="name"
            )
        for label, value in (("rpm", self.rpm), ("tpm", self.tpm), ("budget_usd", self.budget_usd)):
            if value is not None and value < 0:
                raise InvalidInput(f"{label} must be zero or more (or unset for no limit)", param=label)


@dataclass(frozen=True)
class KeyRecord:
    """A stored key as callers see it: its policy, never the key or its hash."""

    id: str
    name: str
    role: Role
    hint: str
    models: tuple[str, ...]
    rpm: int | None
    tpm: int | None
    budget_usd: float | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_by: str
    created_at: datetime

    def may_use(self, model: str) -> bool:
        return not self.models or model in self.models

    def state(self, now: datetime | None = None) -> KeyState:
        """``revoked``, ``expired`` or ``active``: what the gateway does with the key now."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"

    def check_usable(self, now: datetime | None = None) -> None:
        """Raise ``Unauthorized`` when the key is revoked or expired."""
        now = now or utcnow()
        if self.revoked_at is not None:
            raise Unauthorized("this API key was revoked; ask an admin for a new one", code="key_revoked")
        if self.expires_at is not None and self.expires_at <= now:
            raise Unauthorized("this API key has expired; ask an admin for a new one", code="key_expired")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.label,
            "hint": self.hint,
            "models": list(self.models),
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budget_usd": self.budget_usd,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class CreatedKey:
    """A new key: ``key`` is the only copy of the raw key there will ever be."""

    record: KeyRecord
    key: str = field(repr=False)


def _record(row: ApiKey) -> KeyRecord:
    created = row.created_at
    assert created is not None
    return KeyRecord(
        id=row.id,
        name=row.name,
        role=parse_role(row.role),
        hint=row.hint,
        models=tuple(row.models or ()),
        rpm=row.rpm,
        tpm=row.tpm,
        budget_usd=row.budget_usd,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        created_by=row.created_by,
        created_at=created,
    )


def _policy(record: KeyRecord) -> dict[str, Any]:
    body = record.to_json()
    return {k: body[k] for k in ("name", "role", "models", "rpm", "tpm", "budget_usd", "expires_at")}


class KeyStore:
    """Create, list, revoke and look up API keys in the metadata store."""

    def __init__(self, store: Store, secret: bytes, actor: str = "unknown") -> None:
        self.store = store
        self._secret = secret
        self.actor = actor

    @classmethod
    def from_home(cls, home: Home) -> KeyStore:
        return cls(home.store, home.settings.secret_value(), home.actor)

    def create(self, spec: KeySpec, reason: str | None = None, *, actor: str | None = None) -> CreatedKey:
        """A new key; ``actor`` (default this store's) is recorded as its creator and in the audit log."""
        spec.check()
        actor = actor or self.actor
        raw = new_raw_key()
        row = ApiKey(
            id="key_" + uuid.uuid4().hex[:16],
            name=spec.name,
            role=spec.role.label,
            key_hash=hash_key(self._secret, raw),
            hint=raw[-4:],
            models=list(spec.models),
            rpm=spec.rpm,
            tpm=spec.tpm,
            budget_usd=spec.budget_usd,
            expires_at=spec.expires_at,
            created_by=actor,
            created_at=utcnow(),
        )
        with self.store.transaction() as session:
            session.add(row)
            session.flush()
            record = _record(row)
            audit.append(
                session,
                actor=actor,
                action="key.create",
                target=f"key:{row.id}",
                reason=reason,
                after=_policy(record),
            )
        return CreatedKey(record, raw)

    def revoke(self, key_id: str, reason: str | None = None, *, actor: str | None = None) -> KeyRecord:
        """Revoke a key (idempotent); workers stop accepting it within their key-cache TTL. ``actor``
        (default this store's) is recorded in the audit log."""
        with self.store.transaction() as session:
            row = self._row(session, key_id, lock=True)
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                audit.append(
                    session,
                    actor=actor or self.actor,
                    action="key.revoke",
                    target=f"key:{key_id}",
                    reason=reason,
                    before={"revoked": False},
                    after={"revoked": True},
                )
            return _record(row)

    def get(self, key_id: str) -> KeyRecord:
        with self.store.read() as session:
            return _record(self._row(session, key_id))

    def list(self, include_revoked: bool = True) -> list[KeyRecord]:
        with self.store.read() as session:
            query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
            if not include_revoked:
                query = query.where(ApiKey.revoked_at.is_(None))
            return [_record(row) for row in session.execute(query).scalars()]

    def digest(self, raw: str) -> str:
        return hash_key(self._secret, raw)

    def lookup_digest(self, digest: str) -> KeyRecord | None:
        """The key whose HMAC is ``digest`` (revoked and expired ones too), or None."""
        with self.store.read() as session:
            row = session.execute(select(ApiKey).where(ApiKey.key_hash == digest)).scalar_one_or_none()
            return _record(row) if row is not None else None

    def lookup(self, raw: str) -> KeyRecord | None:
        """The key presented as ``raw``, or None when it is not one of ours."""
        if not looks_like_key(raw):
            return None
        return self.lookup_digest(self.digest(raw))

    def _row(self, session: Session, key_id: str, *, lock: bool = False) -> ApiKey:
        query = select(ApiKey).where(ApiKey.id == key_id)
        row = session.execute(query.with_for_update() if lock else query).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no API key with id {key_id!r}; `llmops keys list` shows them", param="key_id")
        return row
