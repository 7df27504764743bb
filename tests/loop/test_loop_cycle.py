"""A cycle end to end with fakes at the retrain/evaluate/rollout seams: every state recorded with its
numbers, a failing gate leaves production alone, a killed cycle resumes, one cycle has one driver."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from tests.loop.conftest import LoopWorld, give_feedback, log_request
from tests.loop.loop_fakes import FakeEvaluator, FakeRetrainer, FakeRollout

from llmops.errors import UpstreamError
from llmops.loop.config import parse_config
from llmops.loop.service import LoopService
from llmops.registry import Registry
from llmops.store import audit
from llmops.store.schema import LifecycleRun, utcnow


def _traffic(world: LoopWorld, n: int = 40) -> None:
    for i in range(n):
        request = log_request(
            world.home, f"neue frage {i} zum paket {i * 13}", f"old answer {i}", user=f"u{i % 4}"
        )
        give_feedback(world.home, request, thumbs="down", corrected=f"neue antwort {i}")


def _service(world: LoopWorld, **kw: Any) -> tuple[LoopService, FakeRetrainer, FakeEvaluator, FakeRollout]:
    config = parse_config({**world.config, **kw.pop("config", {})}, base_dir=world.root)
    retrainer = kw.pop("retrainer", FakeRetrainer(world.home, world.root))
    evaluator = kw.pop("evaluator", FakeEvaluator())
    rollout = kw.pop("rollout", FakeRollout(world.home))
    service = LoopService(world.home, config, retrainer=retrainer, evaluator=evaluator, rollout=rollout, **kw)
    return service, retrainer, evaluator, rollout


def _chain_ok(world: LoopWorld) -> bool:
    with world.home.store.read() as session:
        report = audit.verify(session)
    return report.ok


def test_a_passing_cycle_is_promoted_with_every_step_recorded(world: LoopWorld) -> None:
    _traffic(world)
    service, retrainer, _, rollout = _service(world)
    done = service.once()
    assert done.cycle is not None and done.cycle.state == "promoted", done
    (summary,) = service.history()
    assert summary.trigger == "schedule"
    steps = [(t.to_state, t.numbers) for t in summary.transitions]
    assert [state for state, _ in steps] == [
        "triggered", "curated", "trained", "evaluated", "gated", "rolling_out", "promoted",
    ]  # fmt: skip
    numbers = dict(steps)
    assert numbers["curated"]["train_dataset"].startswith("bot-curated-train@")
    assert (
        numbers["curated"]["request_ids"]
        == numbers["curated"]["train_rows"] + numbers["curated"]["fresh_rows"]
    )
    assert numbers["trained"]["run_id"] and numbers["trained"]["candidate"] == "bot@2"
    assert numbers["evaluated"]["fresh"]["candidate"] == 0.7
    assert numbers["gated"]["passed"] is True
    assert numbers["promoted"]["rollout_state"] == "promoted"
    assert retrainer.calls[0].champion == "bot@1" and rollout.started == ["bot@2"]
    registry = Registry.from_home(world.home)
    assert registry.get("bot@production").ref == "bot@2"
    assert registry.get("bot@2").tags["gates/loop-bot"]["passed"] is True
    assert summary.scores()["fresh"]["improvement"] == pytest.approx(0.5)
    assert _chain_ok(world)
    with world.home.store.read() as session:
        actions = [e.action for e in audit.iter_events(session) if e.action.startswith("loop.")]
    assert actions == ["loop.triggered", "loop.curated", "loop.trained", "loop.evaluated", "loop.gated",
                       "loop.rolling_out", "loop.promoted"]  # fmt: skip


def test_a_failing_gate_rejects_and_production_is_unchanged(world: LoopWorld) -> None:
    _traffic(world)
    no_better = FakeEvaluator(fresh=(0.2, 0.25, -0.05, 0.15))
    service, _, _, rollout = _service(world, evaluator=no_better)
    done = service.once()
    assert done.cycle is not None and done.cycle.state == "rejected"
    last = service.history()[0].transitions[-1]
    assert "improves on the fresh slice" in (last.reason or "") and last.numbers["passed"] is False
    assert rollout.started == []
    registry = Registry.from_home(world.home)
    assert registry.get("bot@production").ref == "bot@1"
    assert registry.get("bot@2").tags["gates/loop-bot"]["passed"] is False
    assert _chain_ok(world)


def test_a_rolled_back_candidate_leaves_production_alone(world: LoopWorld) -> None:
    _traffic(world)
    service, _, _, _ = _service(world, rollout=FakeRollout(world.home, promote=False))
    done = service.once()
    assert done.cycle is not None and done.cycle.state == "rolled_back"
    assert "error rate" in (service.history()[0].transitions[-1].reason or "")
    assert Registry.from_home(world.home).get("bot@production").ref == "bot@1"


def test_too_few_rows_stop_before_training(world: LoopWorld) -> None:
    _traffic(world, 5)
    service, retrainer, _, _ = _service(world)
    done = service.once()
    assert done.cycle is not None and done.cycle.state == "stopped"
    assert "too few curated training rows" in (service.history()[0].transitions[-1].reason or "")
    assert retrainer.calls == []


def test_a_failing_step_fails_the_cycle_closed_with_its_reason(world: LoopWorld) -> None:
    _traffic(world)
    broken = FakeRetrainer(world.home, world.root, error=UpstreamError("teacher unreachable"))
    service, _, _, rollout = _service(world, retrainer=broken)
    done = service.once()
    assert done.cycle is not None and done.cycle.state == "failed"
    last = service.history()[0].transitions[-1]
    assert last.reason == "curated failed: teacher unreachable" and last.numbers == {"failed_in": "curated"}
    assert rollout.started == []


def test_a_killed_cycle_resumes_where_it_stopped(world: LoopWorld) -> None:
    _traffic(world)
    killed = FakeRetrainer(world.home, world.root, error=KeyboardInterrupt())
    service, _, _, _ = _service(world, retrainer=killed)
    with pytest.raises(KeyboardInterrupt):  # the process dies mid-training
        service.once()
    (cut,) = service.driver.runs.recent("bot")
    assert cut.state == "curated" and cut.lease_live()
    # Another process meanwhile: the lease is live, so it does not touch the cycle.
    other, retrainer, _, _ = _service(world, holder="other-process")
    waiting = other.once()
    assert waiting.cycle is None and "being driven" in (waiting.note or "")
    with world.home.store.transaction() as session:  # the dead driver's lease runs out
        session.execute(update(LifecycleRun).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    resumed = other.once()
    assert resumed.resumed and resumed.cycle is not None and resumed.cycle.state == "promoted"
    assert len(retrainer.calls) == 1 and retrainer.calls[0].cycle_id == cut.id
    states = [t.to_state for t in other.driver.runs.history(cut.id)]
    assert states.count("curated") == 1  # curation was not redone


def test_a_flapping_trigger_starts_at_most_its_budget(world: LoopWorld) -> None:
    flapping = [{"kind": "new_data", "min_rows": 1, "cooldown": 0, "max_per_day": 2}]
    service, _, _, _ = _service(
        world, config={"triggers": flapping}, evaluator=FakeEvaluator(fresh=(0.2, 0.2, -0.1, 0.1))
    )
    started = []
    for _ in range(5):
        _traffic(world, 3)  # new labelled rows keep arriving: the signal keeps firing
        result = service.once()
        started.append(result.cycle is not None)
    assert started == [True, True, False, False, False]
    status = service.status()
    assert status["triggers"][0]["fired"] is True and status["triggers"][0]["allowed"] is False
    assert "budget" in status["triggers"][0]["limit"]
