"""Triggers over stored monitoring data, and the cooldown and budget that bound a flapping signal."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from tests.loop.conftest import LoopWorld, give_feedback, hours_ago, log_request, online_score

from llmops.data.versions import DatasetStore
from llmops.loop.config import parse_config
from llmops.loop.states import CYCLE_MACHINE
from llmops.loop.triggers import (
    DriftCheck,
    NewDataCheck,
    QualityDropCheck,
    ScheduleCheck,
    TriggerContext,
    TriggerLedger,
    build_triggers,
)
from llmops.monitor.drift_store import profile_from_dataset, save_reference
from llmops.store.lifecycle import LifecycleRecord

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _context(world: LoopWorld, triggers: list[dict[str, object]], **kw: object) -> TriggerContext:
    config = parse_config({**world.config, "triggers": triggers})
    return TriggerContext(
        home=world.home,
        config=config,
        champion_version="bot@1",
        now=kw.get("now", datetime.now(UTC)),  # type: ignore[arg-type]
        last_cycle_at=kw.get("last_cycle_at"),  # type: ignore[arg-type]
    )


def test_drift_fires_on_shifted_live_prompts_and_not_on_familiar_ones(world: LoopWorld) -> None:
    datasets = DatasetStore.from_home(world.home)
    words = ["order", "parcel", "refund", "delivery", "invoice"]
    ref_rows = [{"prompt": f"where is my {words[i % 5]} number {i}", "completion": "x"} for i in range(150)]
    ref = datasets.commit("ref", ref_rows, "prompt_completion")
    save_reference(world.home.store, world.home.artifacts, "bot@1", profile_from_dataset(datasets, ref.ref))
    context = _context(world, [{"kind": "drift", "window": "1h", "min_window": 30}])
    (check,) = build_triggers(context.config)
    assert isinstance(check, DriftCheck)
    assert not check.check(context).fired  # no traffic yet: too few prompts, never a verdict
    for i in range(40):
        log_request(world.home, f"where is my {words[i % 5]} number {i + 7}", "x")
    familiar = check.check(context)
    assert not familiar.fired and familiar.numbers["window_samples"] == 41  # with the fixture's one
    for i in range(60):
        log_request(world.home, f"quel est le statut de la commande numéro {i} pour ma facture suisse", "x")
    shifted = check.check(context)
    assert shifted.fired, shifted.reason
    assert shifted.numbers["features"]["vocabulary"]["drifted"] is True
    # Once a cycle has handled that traffic, the same prompts do not fire again.
    later = _context(
        world, [{"kind": "drift", "window": "1h", "min_window": 30}], last_cycle_at=datetime.now(UTC)
    )
    assert not check.check(later).fired


def test_quality_drop_needs_samples_size_and_significance(world: LoopWorld) -> None:
    spec = {"kind": "quality_drop", "source": "online_eval", "metric": "refusal", "window": "1h",
            "baseline": "1d", "min_samples": 20, "min_drop": 0.1, "alpha": 0.01}  # fmt: skip
    context = _context(world, [spec])
    (check,) = build_triggers(context.config)
    assert isinstance(check, QualityDropCheck)
    for i in range(40):
        online_score(
            world.home, log_request(world.home, f"p{i}", "a"), 1.0 if i % 10 else 0.0, at=hours_ago(5)
        )
    # One bad window of a few requests: too few samples, not fired.
    for i in range(5):
        online_score(world.home, log_request(world.home, f"q{i}", "a"), 0.0, at=hours_ago(0.2))
    few = check.check(context)
    assert not few.fired and few.numbers["window_n"] == 5
    for i in range(25):
        online_score(
            world.home, log_request(world.home, f"r{i}", "a"), 1.0 if i % 3 else 0.0, at=hours_ago(0.1)
        )
    dropped = check.check(context)
    assert dropped.fired, dropped.reason
    assert dropped.numbers["drop"] >= 0.1 and dropped.numbers["p_value"] < 0.01


def test_feedback_drop_and_new_data_read_feedback(world: LoopWorld) -> None:
    for i in range(30):
        request = log_request(world.home, f"p{i}", "a", at=hours_ago(10))
        give_feedback(world.home, request, thumbs="up", at=hours_ago(10))
    for i in range(30):
        request = log_request(world.home, f"n{i}", "a")
        give_feedback(
            world.home, request, thumbs="down" if i % 4 else "up", corrected="b" if i < 12 else None
        )
    spec = {"kind": "quality_drop", "source": "feedback", "window": "2h", "min_samples": 20, "min_drop": 0.3}
    context = _context(world, [spec, {"kind": "new_data", "min_rows": 15}])
    drop, new_data = build_triggers(context.config)
    assert isinstance(drop, QualityDropCheck) and isinstance(new_data, NewDataCheck)
    fired = drop.check(context)
    assert fired.fired and fired.numbers["baseline_mean"] == 1.0
    labelled = new_data.check(context)  # 30 thumbs-up before + 8 up now + corrections among the downs
    assert labelled.fired and labelled.numbers["new_rows"] == 30 + 8 + 9
    since_now = _context(world, [spec, {"kind": "new_data", "min_rows": 15}], last_cycle_at=hours_ago(1))
    assert new_data.check(since_now).numbers["new_rows"] == 8 + 9


def test_schedule_fires_when_due() -> None:
    from llmops.loop.config import ScheduleTrigger

    spec = ScheduleTrigger(kind="schedule", every=3600)
    check = ScheduleCheck(spec)
    base = {"home": None, "config": None, "champion_version": "bot@1", "now": NOW}
    assert check.check(TriggerContext(**base, last_cycle_at=None)).fired  # type: ignore[arg-type]
    assert not check.check(TriggerContext(**base, last_cycle_at=NOW - timedelta(minutes=30))).fired  # type: ignore[arg-type]
    assert check.check(TriggerContext(**base, last_cycle_at=NOW - timedelta(hours=2))).fired  # type: ignore[arg-type]


def _cycle(trigger: str, at: datetime) -> LifecycleRecord:
    return LifecycleRecord(
        id=at.isoformat(), kind="loop", name="bot", state="rejected", terminal=True,
        data={"trigger": {"name": trigger}}, lease_holder=None, lease_expires_at=None,
        created_by="t", created_at=at, updated_at=at, pending_signals=0,
    )  # fmt: skip


def test_a_flapping_signal_starts_at_most_the_budget_per_day(world: LoopWorld) -> None:
    config = parse_config(
        {**world.config, "triggers": [{"kind": "drift", "cooldown": "1h", "max_per_day": 3}]}
    )
    spec = config.triggers[0]
    cycles: list[LifecycleRecord] = []
    started_per_day = [0, 0]
    for minute in range(0, 48 * 60, 5):  # the signal fires every 5 minutes for two days
        now = NOW + timedelta(minutes=minute)
        ledger = TriggerLedger(sorted(cycles, key=lambda c: c.created_at, reverse=True))
        if ledger.allowance(spec, now).allowed:
            cycles.append(_cycle("drift", now))
            started_per_day[minute // (24 * 60)] += 1
    assert started_per_day == [3, 3]
    gaps = [(b.created_at - a.created_at).total_seconds() for a, b in itertools.pairwise(cycles)]
    assert min(gaps) >= 3600  # never two within the cooldown
    ledger = TriggerLedger(list(reversed(cycles)))
    refused = ledger.allowance(spec, cycles[-1].created_at + timedelta(hours=2))
    assert not refused.allowed and "budget" in refused.reason and refused.next_at is not None
    cooling = ledger.allowance(spec, cycles[-1].created_at + timedelta(minutes=10))
    assert not cooling.allowed and "cooling down" in cooling.reason
    # Another trigger's cycles do not spend this trigger's budget.
    other = TriggerLedger([_cycle("schedule", NOW + timedelta(minutes=i)) for i in range(10)])
    assert other.allowance(spec, NOW + timedelta(hours=1)).allowed
    assert CYCLE_MACHINE.is_terminal("rejected")
