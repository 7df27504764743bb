"""The persisted state machine with a lease that rollouts, pipeline runs and loop cycles share."""

from __future__ import annotations

import threading
import time

import pytest

from llmops.errors import Conflict, NotFound
from llmops.store import audit
from llmops.store.home import Home
from llmops.store.lifecycle import Lifecycle, StateMachine

MACHINE = StateMachine(
    kind="demo",
    initial="pending",
    edges={
        "pending": frozenset({"running", "aborted"}),
        "running": frozenset({"succeeded", "failed", "aborted"}),
    },
)


def _lifecycle(home: Home) -> Lifecycle:
    return Lifecycle(home.store, MACHINE)


def test_transitions_are_recorded_with_numbers_and_audited(home: Home) -> None:
    runs = _lifecycle(home)
    run = runs.create("bot", actor="alice", data={"step": 0}, reason="start")
    runs.acquire(run.id, "driver-1")
    runs.transition(run.id, "driver-1", "running", actor="driver-1", numbers={"p95_ms": 41.5})
    done = runs.transition(run.id, "driver-1", "succeeded", actor="driver-1", data={"step": 3})

    assert done.state == "succeeded" and done.terminal and done.data == {"step": 3}
    assert done.lease_holder is None  # a finished run holds no lease
    history = runs.history(run.id)
    assert [(t.from_state, t.to_state) for t in history] == [
        (None, "pending"),
        ("pending", "running"),
        ("running", "succeeded"),
    ]
    assert history[1].numbers == {"p95_ms": 41.5}
    with home.store.read() as session:
        events = [e for e in audit.iter_events(session) if e.action.startswith("demo.")]
        assert [e.action for e in events] == ["demo.pending", "demo.running", "demo.succeeded"]
        assert events[1].after == {"state": "running", "numbers": {"p95_ms": 41.5}}
        assert audit.verify(session).ok


def test_illegal_edge_and_ended_run_are_refused(home: Home) -> None:
    runs = _lifecycle(home)
    run = runs.create("bot", actor="a", holder="d", ttl_s=30)
    with pytest.raises(Conflict, match="cannot move from 'pending' to 'succeeded'"):
        runs.transition(run.id, "d", "succeeded", actor="d")
    runs.transition(run.id, "d", "aborted", actor="d")
    with pytest.raises(Conflict, match="has ended"):
        runs.acquire(run.id, "d")
    with pytest.raises(Conflict, match="has ended"):
        runs.signal(run.id, "promote", actor="ops")


def test_one_live_run_per_name(home: Home) -> None:
    runs = _lifecycle(home)
    first = runs.create("bot", actor="a", holder="d")
    with pytest.raises(Conflict, match="already has run"):
        runs.create("bot", actor="a")
    runs.create("other", actor="a")  # another name is independent
    runs.transition(first.id, "d", "aborted", actor="d")
    assert runs.create("bot", actor="a").state == "pending"  # free again once the first ended


def test_lease_excludes_a_second_driver_until_it_expires(home: Home) -> None:
    runs = _lifecycle(home)
    run = runs.create("bot", actor="a")
    runs.acquire(run.id, "driver-1", ttl_s=0.3)
    with pytest.raises(Conflict, match="driven by driver-1"):
        runs.acquire(run.id, "driver-2")
    with pytest.raises(Conflict, match="does not hold the lease"):
        runs.transition(run.id, "driver-2", "running", actor="driver-2")
    time.sleep(0.4)  # driver-1 died: its lease lapses and driver-2 resumes from the stored state
    resumed = runs.acquire(run.id, "driver-2")
    assert resumed.lease_holder == "driver-2" and resumed.state == "pending"
    with pytest.raises(Conflict, match="does not hold the lease"):
        runs.renew(run.id, "driver-1")


def test_signals_queue_for_the_driver_and_are_audited(home: Home) -> None:
    runs = _lifecycle(home)
    run = runs.create("bot", actor="a", holder="d")
    runs.signal(run.id, "promote", actor="key:ops", reason="looks good", args={"to": "100"})
    assert runs.get(run.id).pending_signals == 1
    taken = runs.take_signals(run.id, "d")
    assert [(s.name, s.actor, s.reason, s.args) for s in taken] == [
        ("promote", "key:ops", "looks good", {"to": "100"})
    ]
    assert runs.take_signals(run.id, "d") == []
    with home.store.read() as session:
        assert any(e.action == "demo.signal" and e.actor == "key:ops" for e in audit.iter_events(session))


def test_find_by_prefix_and_unknown_run(home: Home) -> None:
    runs = _lifecycle(home)
    run = runs.create("bot", actor="a")
    assert runs.find(run.id[:8]).id == run.id
    assert runs.latest("bot") is not None and runs.live("bot") is not None
    with pytest.raises(NotFound):
        runs.find("zzzz")


def test_concurrent_acquire_has_exactly_one_winner(home: Home) -> None:
    runs = _lifecycle(home)
    run = runs.create("bot", actor="a")
    winners: list[str] = []
    barrier = threading.Barrier(4)

    def contend(name: str) -> None:
        barrier.wait()
        try:
            runs.acquire(run.id, name, ttl_s=30)
            winners.append(name)
        except Conflict:
            pass

    threads = [threading.Thread(target=contend, args=(f"d{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(winners) == 1
    assert runs.get(run.id).lease_holder == winners[0]
