"""Persisted state machines with leases: the one pattern behind rollouts, pipeline runs and loop cycles.

A ``LifecycleRun`` row holds a state, a JSON payload owned by its driver, a queue of operator signals
and a lease (holder, expiry). Exactly one process drives a run: it ``acquire``s the lease, ``renew``s
it while it works and moves the state with ``transition``, which checks the lease and the machine's
allowed edges, records the transition with its numbers and appends an audit event, all in one
transaction. A driver that dies lets its lease expire; the next one to ``acquire`` resumes from the
stored state. An operator (another process) never writes the state directly: it ``signal``s, and the
lease holder consumes signals with ``take_signals``.

Leases compare wall-clock times across processes: drivers on different machines need synchronised
clocks (NTP), as with every lease-based controller.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmops.errors import Conflict, InvalidInput, NotFound
from llmops.store import audit
from llmops.store.database import Store
from llmops.store.schema import AuditHead, LifecycleRun, LifecycleTransition, utcnow


@dataclass(frozen=True)
class StateMachine:
    """The states of one kind of run and the edges between them.

    ``edges`` maps a state to the states it may move to; a state with no entry is terminal.
    """

    kind: str
    initial: str
    edges: Mapping[str, frozenset[str]]

    def is_terminal(self, state: str) -> bool:
        return not self.edges.get(state)

    def check(self, from_state: str, to_state: str) -> None:
        allowed = self.edges.get(from_state, frozenset())
        if to_state not in allowed:
            choices = ", ".join(sorted(allowed)) or "none: the run has ended"
            raise Conflict(
                f"{self.kind} cannot move from {from_state!r} to {to_state!r}; allowed: {choices}",
                code="invalid_transition",
            )


@dataclass(frozen=True)
class Transition:
    seq: int
    from_state: str | None
    to_state: str
    actor: str
    reason: str | None
    numbers: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class Signal:
    """An operator command queued for the driver (``promote``, ``rollback``, ``abort`` ...)."""

    name: str
    actor: str
    reason: str | None
    at: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LifecycleRecord:
    id: str
    kind: str
    name: str
    state: str
    terminal: bool
    data: dict[str, Any]
    lease_holder: str | None
    lease_expires_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    pending_signals: int

    def lease_live(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return bool(self.lease_holder and self.lease_expires_at and self.lease_expires_at > now)


def _record(row: LifecycleRun) -> LifecycleRecord:
    return LifecycleRecord(
        id=row.id,
        kind=row.kind,
        name=row.name,
        state=row.state,
        terminal=row.terminal,
        data=dict(row.data or {}),
        lease_holder=row.lease_holder,
        lease_expires_at=row.lease_expires_at,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        pending_signals=len(row.signals or []),
    )


class Lifecycle:
    """Create, lease, move and inspect runs of one ``StateMachine`` kind."""

    def __init__(self, store: Store, machine: StateMachine) -> None:
        self.store = store
        self.machine = machine

    # -- creation and reads -------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        actor: str,
        data: dict[str, Any] | None = None,
        reason: str | None = None,
        exclusive: bool = True,
        holder: str | None = None,
        ttl_s: float = 30.0,
    ) -> LifecycleRecord:
        """A new run in the initial state. ``exclusive``: refuse while another run of ``name`` is live.

        With ``holder`` the creator takes the lease at once, so no other driver can slip in between.
        """
        with self.store.transaction() as session:
            # Creations are serialised on the audit head (taken by every audited change anyway), so two
            # processes cannot both find no live run and both start one, on PostgreSQL as on SQLite.
            session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update())
            if exclusive:
                live = self._live_row(session, name)
                if live is not None:
                    raise Conflict(
                        f"{self.machine.kind} {name!r} already has run {live.id} in state {live.state!r};"
                        " wait for it to end or abort it first",
                        code="run_in_progress",
                    )
            now = utcnow()
            row = LifecycleRun(
                id=uuid.uuid4().hex,
                kind=self.machine.kind,
                name=name,
                state=self.machine.initial,
                terminal=self.machine.is_terminal(self.machine.initial),
                data=dict(data or {}),
                signals=[],
                lease_holder=holder,
                lease_expires_at=now + timedelta(seconds=ttl_s) if holder else None,
                created_by=actor,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            self._append_history(session, row, None, row.state, actor, reason, {})
            return _record(row)

    def get(self, run_id: str) -> LifecycleRecord:
        with self.store.read() as session:
            return _record(self._row(session, run_id))

    def find(self, run_id_or_prefix: str) -> LifecycleRecord:
        """A run by its id or an unambiguous prefix of it."""
        with self.store.read() as session:
            rows = (
                session.execute(
                    select(LifecycleRun)
                    .where(LifecycleRun.kind == self.machine.kind)
                    .where(LifecycleRun.id.startswith(run_id_or_prefix))
                    .limit(2)
                )
                .scalars()
                .all()
            )
        if not rows:
            raise NotFound(f"no {self.machine.kind} run {run_id_or_prefix!r}", param="run")
        if len(rows) > 1:
            raise InvalidInput(
                f"run id prefix {run_id_or_prefix!r} is ambiguous; give more characters",
                param="run",
            )
        return _record(rows[0])

    def live(self, name: str) -> LifecycleRecord | None:
        """The run of ``name`` that has not ended, if any."""
        with self.store.read() as session:
            row = self._live_row(session, name)
            return _record(row) if row is not None else None

    def latest(self, name: str) -> LifecycleRecord | None:
        runs = self.recent(name, limit=1)
        return runs[0] if runs else None

    def recent(self, name: str | None = None, *, limit: int = 50) -> list[LifecycleRecord]:
        query = select(LifecycleRun).where(LifecycleRun.kind == self.machine.kind)
        if name is not None:
            query = query.where(LifecycleRun.name == name)
        query = query.order_by(LifecycleRun.created_at.desc(), LifecycleRun.id).limit(limit)
        with self.store.read() as session:
            return [_record(row) for row in session.execute(query).scalars()]

    def history(self, run_id: str) -> list[Transition]:
        with self.store.read() as session:
            rows = session.execute(
                select(LifecycleTransition)
                .where(LifecycleTransition.run_id == run_id)
                .order_by(LifecycleTransition.seq)
            ).scalars()
            return [
                Transition(r.seq, r.from_state, r.to_state, r.actor, r.reason, dict(r.numbers), r.at)
                for r in rows
            ]

    # -- the lease ----------------------------------------------------------------------------

    def acquire(self, run_id: str, holder: str, *, ttl_s: float = 30.0) -> LifecycleRecord:
        """Take (or re-take) the lease; ``Conflict`` while another holder's lease is live."""
        with self.store.transaction() as session:
            row = self._row(session, run_id, lock=True)
            now = utcnow()
            if row.terminal:
                raise Conflict(f"{self.machine.kind} run {run_id} has ended ({row.state})", code="run_ended")
            held = row.lease_holder and row.lease_expires_at and row.lease_expires_at > now
            if held and row.lease_holder != holder:
                raise Conflict(
                    f"{self.machine.kind} run {run_id} is driven by {row.lease_holder} until "
                    f"{row.lease_expires_at:%H:%M:%S} UTC",
                    code="lease_held",
                )
            row.lease_holder, row.lease_expires_at = holder, now + timedelta(seconds=ttl_s)
            return _record(row)

    def renew(self, run_id: str, holder: str, *, ttl_s: float = 30.0) -> LifecycleRecord:
        """Extend a lease this holder still has; ``Conflict`` if it was lost."""
        with self.store.transaction() as session:
            row = self._held_row(session, run_id, holder)
            row.lease_expires_at = utcnow() + timedelta(seconds=ttl_s)
            return _record(row)

    def release(self, run_id: str, holder: str) -> None:
        with self.store.transaction() as session:
            row = self._row(session, run_id, lock=True)
            if row.lease_holder == holder:
                row.lease_holder, row.lease_expires_at = None, None

    # -- moving the state ---------------------------------------------------------------------

    def transition(
        self,
        run_id: str,
        holder: str,
        to_state: str,
        *,
        actor: str,
        reason: str | None = None,
        numbers: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> LifecycleRecord:
        """Move to ``to_state`` (lease and edge checked), merge ``data`` into the payload, record it."""
        with self.store.transaction() as session:
            row = self._held_row(session, run_id, holder)
            self.machine.check(row.state, to_state)
            before = row.state
            row.state = to_state
            row.terminal = self.machine.is_terminal(to_state)
            if data:
                row.data = {**(row.data or {}), **data}
            if row.terminal:
                row.lease_holder, row.lease_expires_at = None, None
            row.updated_at = utcnow()
            self._append_history(session, row, before, to_state, actor, reason, dict(numbers or {}))
            return _record(row)

    def update(self, run_id: str, holder: str, data: Mapping[str, Any]) -> LifecycleRecord:
        """Merge ``data`` into the payload without a state change (progress the driver must not lose)."""
        with self.store.transaction() as session:
            row = self._held_row(session, run_id, holder)
            row.data = {**(row.data or {}), **data}
            row.updated_at = utcnow()
            return _record(row)

    def signal(
        self,
        run_id: str,
        name: str,
        *,
        actor: str,
        reason: str | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> LifecycleRecord:
        """Queue an operator command for the driver, audited with who and why."""
        with self.store.transaction() as session:
            row = self._row(session, run_id, lock=True)
            if row.terminal:
                raise Conflict(
                    f"{self.machine.kind} run {run_id} has ended ({row.state}); nothing to {name}",
                    code="run_ended",
                )
            entry: dict[str, Any] = {
                "name": name,
                "actor": actor,
                "reason": reason,
                "at": utcnow().isoformat(),
                "args": dict(args or {}),
            }
            row.signals = [*(row.signals or []), entry]
            audit.append(
                session,
                actor=actor,
                action=f"{self.machine.kind}.signal",
                target=f"{self.machine.kind}:{row.name}/{row.id}",
                reason=reason,
                after={"signal": name, "state": row.state, **dict(args or {})},
            )
            return _record(row)

    def take_signals(self, run_id: str, holder: str) -> list[Signal]:
        """Pop every queued signal, oldest first (only the lease holder may)."""
        with self.store.transaction() as session:
            row = self._held_row(session, run_id, holder)
            taken = [
                Signal(s["name"], s["actor"], s.get("reason"), s["at"], s.get("args") or {})
                for s in row.signals or []
            ]
            row.signals = []
            return taken

    # -- internals ----------------------------------------------------------------------------

    def _row(self, session: Session, run_id: str, *, lock: bool = False) -> LifecycleRun:
        query = select(LifecycleRun).where(LifecycleRun.id == run_id)
        if lock:
            query = query.with_for_update()
        row = session.execute(query).scalar_one_or_none()
        if row is None or row.kind != self.machine.kind:
            raise NotFound(f"no {self.machine.kind} run {run_id!r}", param="run")
        return row

    def _held_row(self, session: Session, run_id: str, holder: str) -> LifecycleRun:
        row = self._row(session, run_id, lock=True)
        expires = row.lease_expires_at
        if row.lease_holder != holder or expires is None or expires <= utcnow():
            raise Conflict(
                f"{holder} does not hold the lease on {self.machine.kind} run {run_id}"
                f" (holder: {row.lease_holder or 'none'})",
                code="lease_lost",
            )
        return row

    def _live_row(self, session: Session, name: str) -> LifecycleRun | None:
        return session.execute(
            select(LifecycleRun)
            .where(LifecycleRun.kind == self.machine.kind)
            .where(LifecycleRun.name == name)
            .where(LifecycleRun.terminal.is_(False))
            .order_by(LifecycleRun.created_at.desc())
            .limit(1)
        ).scalar_one_or_none()

    def _append_history(
        self,
        session: Session,
        row: LifecycleRun,
        from_state: str | None,
        to_state: str,
        actor: str,
        reason: str | None,
        numbers: dict[str, Any],
    ) -> None:
        seq = len(
            session.execute(select(LifecycleTransition.seq).where(LifecycleTransition.run_id == row.id)).all()
        )
        session.add(
            LifecycleTransition(
                run_id=row.id,
                seq=seq + 1,
                from_state=from_state,
                to_state=to_state,
                actor=actor,
                reason=reason,
                numbers=numbers,
                at=utcnow(),
            )
        )
        audit.append(
            session,
            actor=actor,
            action=f"{self.machine.kind}.{to_state}",
            target=f"{self.machine.kind}:{row.name}/{row.id}",
            reason=reason,
            before={"state": from_state} if from_state else None,
            after={"state": to_state, "numbers": numbers},
        )
