from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from llmops.store import audit
from llmops.store.home import Home
from llmops.store.schema import AuditEvent


def _append_events(home: Home, n: int) -> None:
    for i in range(n):
        with home.store.transaction() as session:
            audit.append(
                session,
                actor="alice",
                action="model.alias.set",
                target=f"model:m@{i}",
                before={"version": i},
                after={"version": i + 1},
                reason="test",
            )


def _verify(home: Home) -> audit.ChainReport:
    with home.store.read() as session:
        return audit.verify(session)


def test_intact_chain_verifies(home: Home) -> None:
    _append_events(home, 5)
    report = _verify(home)
    assert report.ok and report.events == 5


def test_edited_event_is_detected(home: Home) -> None:
    _append_events(home, 5)
    with home.store.transaction() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(after={"version": 99}))
    report = _verify(home)
    assert not report.ok
    assert any("event 3 was edited" in p for p in report.problems)


def test_deleted_event_is_detected(home: Home) -> None:
    _append_events(home, 5)
    with home.store.transaction() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
    report = _verify(home)
    assert not report.ok
    assert any("missing" in p or "does not follow" in p for p in report.problems)


def test_deleted_last_event_is_detected(home: Home) -> None:
    _append_events(home, 5)
    with home.store.transaction() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 5))
    report = _verify(home)
    assert not report.ok
    assert any("at the end were deleted" in p for p in report.problems)


def test_reordered_events_are_detected(home: Home) -> None:
    _append_events(home, 5)
    with home.store.transaction() as session:
        rows = {
            r.seq: r for r in session.execute(select(AuditEvent).where(AuditEvent.seq.in_([2, 4]))).scalars()
        }
        fields = ("ts", "actor", "action", "target", "reason", "before", "after", "prev_hash", "hash")
        two = {f: getattr(rows[2], f) for f in fields}
        four = {f: getattr(rows[4], f) for f in fields}
        session.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(**four))
        session.execute(update(AuditEvent).where(AuditEvent.seq == 4).values(**two))
    report = _verify(home)
    assert not report.ok
    assert any("event 2" in p for p in report.problems)


def test_audit_change_rolls_back_with_its_transaction(home: Home) -> None:
    _append_events(home, 1)
    with pytest.raises(RuntimeError), home.store.transaction() as session:
        audit.append(session, actor="bob", action="x", target="y")
        raise RuntimeError("the change failed")
    report = _verify(home)
    assert report.ok and report.events == 1


def test_cli_verify_and_export(home: Home, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _append_events(home, 3)
    ok = cli("audit", "verify")
    assert ok.code == 0 and "3 events" in ok.out
    listed = cli("audit", "list")
    assert "model.alias.set" in listed.out and "alice" in listed.out
    out = tmp_path / "audit.jsonl"
    assert cli("audit", "export", "-o", out).code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in lines] == [1, 2, 3]
    assert lines[1]["prev_hash"] == lines[0]["hash"]
    with home.store.transaction() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 1).values(actor="mallory"))
    bad = cli("audit", "verify")
    assert bad.code == 1 and "event 1 was edited" in bad.err
