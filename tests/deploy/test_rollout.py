"""The rollout controller against a recording target, a settable clock and a real store: steps,
analysis, promotion, automatic and manual rollback, deploy-time gates, lease and resumption."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.deploy.rollout_fakes import Clock, FakeTarget, registered_versions, spec, traffic, two_models

from llmops.deploy.policy import RolloutPolicy
from llmops.deploy.rollout import RolloutController, RolloutEnv
from llmops.deploy.traffic import current_weights
from llmops.errors import Conflict, UpstreamError
from llmops.registry.client import Registry
from llmops.store.home import Home
from llmops.store.schema import AuditEvent


def _controller(
    home: Home, registry: Registry, clock: Clock, target: FakeTarget, **kw: object
) -> RolloutController:
    env = RolloutEnv(home.store, registry, target, sleep=lambda s: None, now=clock.now, settle_s=0.0, **kw)  # type: ignore[arg-type]
    return RolloutController(env)


def _serve_step(
    home: Home, clock: Clock, *, candidate_errors: int = 0, candidate_latency: float = 100.0
) -> None:
    at = clock.now()
    traffic(home, "bot@2", 30, at, arm="canary", errors=candidate_errors, latency_ms=candidate_latency)
    traffic(home, "bot@1", 30, at, arm="stable")
    clock.advance(1.5)


def _run(
    controller: RolloutController, home: Home, clock: Clock, run_id: str, steps: int, **serve: float
) -> str:
    record = controller.tick(run_id)  # starting → first step
    for _ in range(steps):
        _serve_step(home, clock, **serve)  # type: ignore[arg-type]
        record = controller.tick(run_id)
        if record.terminal:
            break
    return record.state


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return two_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def registry(sqlite_home: Home, models: tuple[Path, Path]) -> Registry:
    return registered_versions(sqlite_home, models)


def test_a_good_candidate_promotes_through_every_step(sqlite_home: Home, registry: Registry) -> None:
    clock, target = Clock(), FakeTarget()
    controller = _controller(sqlite_home, registry, clock, target)
    run = controller.start(spec([10, 50, 100]), "bot@2", actor="alice")
    assert run.state == "starting" and target.calls == []  # gates checked before anything started
    assert _run(controller, sqlite_home, clock, run.id, 3) == "promoted"
    assert registry.get("bot@production").version == 2
    assert ("apply", "canary", "bot@2") in target.calls and ("apply", "stable", "bot@2") in target.calls
    assert target.calls[-1] == ("delete", "canary", None)
    assert current_weights(sqlite_home.store, "bot") == {"stable": 100.0, "canary": 0.0}
    history = controller.runs.history(run.id)
    steps = [t for t in history if t.to_state == "canary"]
    assert [t.reason.split(";")[-1].strip() for t in steps] == [
        "step 1 sends 10% to bot@2",
        "step 2 sends 50% to bot@2",
        "step 3 sends 100% to bot@2",
    ]
    assert steps[1].numbers["analysis"]["passed"] is True  # step 1's analysis recorded on the move
    promoting = next(t for t in history if t.to_state == "promoting")
    assert promoting.numbers["analysis"]["metrics"]["error_rate_increase"]["n_candidate"] == 30
    assert history[-1].to_state == "promoted" and history[-1].numbers["alias_after"] == 2


def test_an_erroring_candidate_is_rolled_back_at_the_first_step(
    sqlite_home: Home, registry: Registry
) -> None:
    clock, target = Clock(), FakeTarget()
    controller = _controller(sqlite_home, registry, clock, target)
    run = controller.start(spec([10, 50, 100]), "bot@2", actor="alice")
    assert _run(controller, sqlite_home, clock, run.id, 3, candidate_errors=15) == "rolled_back"
    assert registry.get("bot@production").version == 1  # production untouched
    assert ("apply", "stable", "bot@2") not in target.calls and "canary" not in target.tracks
    assert current_weights(sqlite_home.store, "bot") == {"stable": 100.0, "canary": 0.0}
    history = controller.runs.history(run.id)
    rolling = next(t for t in history if t.to_state == "rolling_back")
    assert rolling.numbers["step"] == 1 and "error_rate_increase" in (rolling.reason or "")
    verdict = rolling.numbers["analysis"]["metrics"]["error_rate_increase"]
    assert verdict["status"] == "fail" and verdict["candidate"] == 0.5 and verdict["p_value"] < 0.05
    with sqlite_home.store.read() as session:
        events = session.execute(
            select(AuditEvent).where(AuditEvent.action == "rollout.rolling_back")
        ).scalars()
        (event,) = list(events)
        assert event.after["numbers"]["analysis"]["passed"] is False  # the audit log holds the numbers


def test_a_slow_candidate_is_rolled_back(sqlite_home: Home, registry: Registry) -> None:
    clock, target = Clock(), FakeTarget()
    controller = _controller(sqlite_home, registry, clock, target)
    run = controller.start(spec([10, 100]), "bot@2", actor="alice")
    assert _run(controller, sqlite_home, clock, run.id, 2, candidate_latency=900.0) == "rolled_back"
    rolling = next(t for t in controller.runs.history(run.id) if t.to_state == "rolling_back")
    assert rolling.numbers["analysis"]["metrics"]["p95_latency_ratio"]["status"] == "fail"


def test_too_few_requests_by_the_deadline_fail_the_step(sqlite_home: Home, registry: Registry) -> None:
    clock, target = Clock(), FakeTarget()
    controller = _controller(sqlite_home, registry, clock, target)
    policy = spec([10, 100]).rollout.model_copy(deep=True)
    policy.steps[0].max_duration_s = 5
    run = controller.start(spec([10, 100]), "bot@2", actor="alice", policy=policy)
    controller.tick(run.id)
    clock.advance(2)
    assert controller.tick(run.id).state == "canary"  # waiting for requests
    clock.advance(4)
    record = controller.tick(run.id)
    assert record.state == "rolled_back"
    rolling = next(t for t in controller.runs.history(run.id) if t.to_state == "rolling_back")
    assert "gathered 0 of 20 candidate requests" in (rolling.reason or "")


def test_candidates_without_passed_gates_are_refused_before_any_traffic(
    sqlite_home: Home, models: tuple[Path, Path]
) -> None:
    registry = registered_versions(sqlite_home, models, gates_passed=False)
    target = FakeTarget()
    controller = _controller(sqlite_home, registry, Clock(), target)
    with pytest.raises(Conflict) as refused:
        controller.start(spec([100]), "bot@2", actor="alice")
    assert (
        refused.value.code == "candidate_refused"
        and "suite 'smoke' failed: acc >= 0.5" in refused.value.message
    )
    assert target.calls == [] and current_weights(sqlite_home.store, "bot") is None
    run = controller.runs.latest("bot")
    assert run is not None and run.state == "refused"


def test_an_unsigned_candidate_is_refused_when_signing_is_required(
    sqlite_home: Home, registry: Registry, tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "keys" / "release.pem"
    assert cli("models", "keygen", key).code == 0
    policy = RolloutPolicy(require_signature=True, signing_public_key=key.with_suffix(".pub"))
    controller = _controller(sqlite_home, registry, Clock(), FakeTarget())
    with pytest.raises(Conflict, match="signature of bot@2 does not verify"):
        controller.start(spec([100]), "bot@2", actor="alice", policy=policy)


def test_a_target_that_cannot_start_the_candidate_rolls_back(sqlite_home: Home, registry: Registry) -> None:
    target = FakeTarget(fail_apply=UpstreamError("replica never became ready"))
    controller = _controller(sqlite_home, registry, Clock(), target)
    run = controller.start(spec([100]), "bot@2", actor="alice")
    assert controller.tick(run.id).state == "rolled_back"
    assert registry.get("bot@production").version == 1


def test_manual_rollback_and_promote_are_recorded_with_who_and_why(
    sqlite_home: Home, registry: Registry
) -> None:
    clock = Clock()
    controller = _controller(sqlite_home, registry, clock, FakeTarget())
    run = controller.start(spec([10, 50, 100]), "bot@2", actor="alice")
    controller.tick(run.id)
    controller.signal("bot", "rollback", actor="bob", reason="customers complain")
    record = controller.tick(run.id)
    assert record.state == "rolled_back"
    manual = next(t for t in controller.runs.history(run.id) if t.to_state == "rolling_back")
    assert manual.actor == "bob" and manual.reason == "manual rollback by bob: customers complain"

    second = controller.start(spec([10, 50, 100]), "bot@2", actor="alice")
    controller.tick(second.id)
    controller.signal("bot", "promote", actor="carol", reason="urgent fix")
    assert controller.tick(second.id).state == "promoted"
    assert registry.get("bot@production").version == 2


def test_two_controllers_never_drive_one_rollout_and_a_restarted_one_resumes(
    sqlite_home: Home, registry: Registry
) -> None:
    clock, target = Clock(), FakeTarget()  # the target's state is in the store: both controllers see it
    first = _controller(sqlite_home, registry, clock, target, holder="first", lease_ttl_s=0.3)
    run = first.start(spec([10, 50, 100]), "bot@2", actor="alice")
    first.tick(run.id)
    _serve_step(sqlite_home, clock)
    assert first.tick(run.id).data["step"] == 1  # step 1 passed; step 2 under way
    second = _controller(sqlite_home, registry, clock, target, holder="second")
    with pytest.raises(Conflict, match="driven by first"):
        second.runs.acquire(run.id, "second")
    time.sleep(0.4)  # the first controller dies: its lease lapses
    second.runs.acquire(run.id, "second")
    record = second.tick(run.id)
    assert record.state == "canary" and record.data["step"] == 1  # resumed where it stopped
    with pytest.raises(Conflict, match="does not hold the lease"):
        first.tick(run.id)
    for _ in range(2):
        _serve_step(sqlite_home, clock)
        record = second.tick(run.id)
    assert record.state == "promoted"


def test_a_step_at_100_percent_compares_with_stable_s_latest_window(
    sqlite_home: Home, registry: Registry
) -> None:
    clock, target = Clock(), FakeTarget()
    controller = _controller(sqlite_home, registry, clock, target)
    run = controller.start(spec([10, 100]), "bot@2", actor="alice")
    assert _run(controller, sqlite_home, clock, run.id, 1) == "canary"  # step 1 passed with both arms
    traffic(sqlite_home, "bot@2", 30, clock.now(), arm="canary")  # stable serves nothing now
    clock.advance(1.5)
    assert controller.tick(run.id).state == "promoted", "too few stable samples would have failed it"
    promoting = next(t for t in controller.runs.history(run.id) if t.to_state == "promoting")
    metrics = promoting.numbers["analysis"]["metrics"]
    assert metrics["error_rate_increase"]["n_stable"] == 30, "stable judged over step 1's window"
    assert "stable_since" in promoting.numbers["window"]


class _SlowTarget(FakeTarget):
    """Candidate replicas that take longer to start than the controller's lease lasts."""

    def apply(self, spec, *, track="stable", model=None, replicas=None):  # type: ignore[no-untyped-def]
        time.sleep(1.0)
        return super().apply(spec, track=track, model=model, replicas=replicas)


def test_the_lease_is_kept_while_the_target_is_slow(sqlite_home: Home, registry: Registry) -> None:
    controller = _controller(sqlite_home, registry, Clock(), _SlowTarget(), lease_ttl_s=0.4)
    run = controller.start(spec([10, 100]), "bot@2", actor="alice")
    assert controller.tick(run.id).state == "canary", "a slow start did not cost the lease"
    assert controller.runs.get(run.id).lease_holder == controller.env.holder
