"""The tamper-evident audit log: a hash chain of events, appended in the caller's transaction.

Each event stores the digest of the one before it; the single ``audit_head`` row holds the tip and
is locked by every append, so appends from many processes are serialised and none is lost. An
edited event no longer matches its own hash, a deleted or reordered one breaks the chain, and a
removed tail no longer reaches the head: ``verify()`` reports each.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmops.store.schema import AuditEvent, AuditHead, utcnow

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditRecord:
    """One audit event as callers see it."""

    seq: int
    ts: datetime
    actor: str
    action: str
    target: str
    reason: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["ts"] = self.ts.isoformat()
        return body


@dataclass(frozen=True)
class ChainReport:
    """The outcome of ``verify``: ``ok`` or the problems found, first one first."""

    events: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _micros(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000)


def event_hash(
    prev_hash: str,
    seq: int,
    ts: datetime,
    actor: str,
    action: str,
    target: str,
    reason: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> str:
    body = {
        "prev": prev_hash,
        "seq": seq,
        "ts": _micros(ts),
        "actor": actor,
        "action": action,
        "target": target,
        "reason": reason,
        "before": before,
        "after": after,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    reason: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditRecord:
    """Append one event inside the caller's transaction (it commits or rolls back with the change)."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    seq = head.seq + 1
    ts = datetime.fromtimestamp(_micros(utcnow()) / 1_000_000, UTC)
    digest = event_hash(head.hash, seq, ts, actor, action, target, reason, before, after)
    row = AuditEvent(
        seq=seq,
        ts=ts,
        actor=actor,
        action=action,
        target=target,
        reason=reason,
        before=before,
        after=after,
        prev_hash=head.hash,
        hash=digest,
    )
    session.add(row)
    head.seq, head.hash = seq, digest
    session.flush()
    return _record(row)


def _record(row: AuditEvent) -> AuditRecord:
    return AuditRecord(
        row.seq,
        row.ts,
        row.actor,
        row.action,
        row.target,
        row.reason,
        row.before,
        row.after,
        row.prev_hash,
        row.hash,
    )


def iter_events(
    session: Session,
    *,
    target: str | None = None,
    action: str | None = None,
    since_seq: int = 0,
    limit: int | None = None,
) -> Iterator[AuditRecord]:
    query = select(AuditEvent).where(AuditEvent.seq > since_seq).order_by(AuditEvent.seq)
    if target is not None:
        query = query.where(AuditEvent.target == target)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if limit is not None:
        query = query.limit(limit)
    for row in session.execute(query).scalars():
        yield _record(row)


def verify(session: Session) -> ChainReport:
    """Walk the whole chain from the genesis hash and compare its end with the head row."""
    problems: list[str] = []
    prev, expected_seq, count = GENESIS, 1, 0
    for row in session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars():
        count += 1
        if row.seq != expected_seq:
            problems.append(f"events {expected_seq}..{row.seq - 1} are missing (deleted)")
        if row.prev_hash != prev:
            problems.append(f"event {row.seq} does not follow the event before it (deleted or reordered)")
        recomputed = event_hash(
            row.prev_hash,
            row.seq,
            row.ts,
            row.actor,
            row.action,
            row.target,
            row.reason,
            row.before,
            row.after,
        )
        if recomputed != row.hash:
            problems.append(f"event {row.seq} was edited: its contents no longer match its hash")
        prev, expected_seq = row.hash, row.seq + 1
    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one_or_none()
    if head is None:
        problems.append("the audit head row is missing")
    elif head.seq != expected_seq - 1 or head.hash != prev:
        problems.append(
            f"the chain ends at event {expected_seq - 1} but the head records event {head.seq} "
            "(events at the end were deleted)"
        )
    return ChainReport(events=count, problems=problems)
