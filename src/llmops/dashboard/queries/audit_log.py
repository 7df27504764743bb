"""The audit log newest first, a page at a time, with the chain's verification."""

from __future__ import annotations

from sqlalchemy import select

from llmops.store import audit
from llmops.store.audit import AuditRecord, ChainReport
from llmops.store.database import Store
from llmops.store.schema import AuditEvent

PAGE_SIZE = 50


def audit_page(
    store: Store, *, action: str | None, target: str | None, page: int
) -> tuple[list[AuditRecord], bool]:
    """Events newest first (``action`` and ``target`` match a prefix), and whether older ones follow."""
    query = select(AuditEvent).order_by(AuditEvent.seq.desc())
    if action:
        query = query.where(AuditEvent.action.startswith(action, autoescape=True))
    if target:
        query = query.where(AuditEvent.target.startswith(target, autoescape=True))
    query = query.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
    with store.read() as session:
        rows = [
            AuditRecord(
                r.seq, r.ts, r.actor, r.action, r.target, r.reason, r.before, r.after, r.prev_hash, r.hash
            )
            for r in session.execute(query).scalars()
        ]
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


def chain_status(store: Store) -> ChainReport:
    with store.read() as session:
        return audit.verify(session)
