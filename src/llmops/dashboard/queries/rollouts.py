"""Rollouts as the dashboard shows them: the run, its payload, and a timeline of its transitions,
each with the analysis numbers that decided it and the candidate's share of traffic after it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmops.deploy.rollout_state import ACTIVE_STATES, ROLLOUT_MACHINE, RolloutData
from llmops.store.database import Store
from llmops.store.lifecycle import Lifecycle, LifecycleRecord, Transition

SIGNALS = ("promote", "rollback")
_ZERO_AFTER = frozenset({"rolling_back", "rolled_back", "aborting", "aborted", "refused"})
_FULL_AFTER = frozenset({"promoting", "promoted"})


@dataclass(frozen=True)
class MetricRow:
    metric: str
    status: str
    candidate: float | None
    stable: float | None
    observed: float | None
    threshold: float | None
    n_candidate: int | None
    reason: str


@dataclass(frozen=True)
class TimelineEntry:
    transition: Transition
    candidate_share: float
    analysis: list[MetricRow]
    passed: bool | None


@dataclass(frozen=True)
class RolloutView:
    record: LifecycleRecord
    data: RolloutData
    timeline: list[TimelineEntry]

    @property
    def steerable(self) -> bool:
        """An operator may still promote or roll back (the controller applies it)."""
        return not self.record.terminal and self.record.state in ("starting", *ACTIVE_STATES)


def _analysis(numbers: dict[str, Any]) -> tuple[list[MetricRow], bool | None]:
    analysis = numbers.get("analysis")
    if not isinstance(analysis, dict):
        return [], None
    rows = [
        MetricRow(
            name,
            str(m.get("status", "")),
            m.get("candidate"),
            m.get("stable"),
            m.get("observed"),
            m.get("threshold"),
            m.get("n_candidate"),
            str(m.get("reason", "")),
        )
        for name, m in (analysis.get("metrics") or {}).items()
        if isinstance(m, dict)
    ]
    passed = analysis.get("passed")
    return rows, passed if isinstance(passed, bool) else None


def _timeline(data: RolloutData, transitions: list[Transition]) -> list[TimelineEntry]:
    steps = [s.weight for s in data.rollout_policy().steps]
    share, canary_moves, entries = 0.0, 0, []
    for t in transitions:
        if t.to_state == "canary":
            share = steps[min(canary_moves, len(steps) - 1)] if steps else share
            canary_moves += 1
        elif t.to_state in _FULL_AFTER:
            share = 100.0
        elif t.to_state in _ZERO_AFTER:
            share = 0.0
        rows, passed = _analysis(t.numbers)
        entries.append(TimelineEntry(t, share, rows, passed))
    return entries


def recent_rollouts(store: Store, limit: int = 50) -> list[LifecycleRecord]:
    return Lifecycle(store, ROLLOUT_MACHINE).recent(limit=limit)


def rollout_view(store: Store, run_id: str) -> RolloutView:
    runs = Lifecycle(store, ROLLOUT_MACHINE)
    record = runs.find(run_id)
    data = RolloutData.from_json(record.data)
    return RolloutView(record, data, _timeline(data, runs.history(record.id)))


def signal_rollout(store: Store, run_id: str, name: str, *, actor: str, reason: str) -> LifecycleRecord:
    """Queue ``promote`` or ``rollback`` for the rollout's driver, as ``llmops rollout`` does (same
    lifecycle signal, same audit event)."""
    runs = Lifecycle(store, ROLLOUT_MACHINE)
    return runs.signal(runs.find(run_id).id, name, actor=actor, reason=reason)
