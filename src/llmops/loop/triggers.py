"""Triggers: conditions over monitoring data that start a cycle, and the cooldown/budget that limit them.

Each ``Trigger`` reads what the monitor package already stores (drift references and the request log,
online-evaluation results, feedback) and returns a ``Firing`` with the numbers that decided it. A
trigger never starts anything by itself: ``TriggerLedger`` first checks its cooldown and its daily
budget against the loop's past cycles, which are ``LifecycleRun`` rows of kind ``loop`` (each records
the trigger that started it), so the store's cycle history is the one record, shared by every loop
process. A flapping signal therefore starts at most ``max_per_day`` cycles a day, however often it
flaps, and none during its cooldown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from scipy import stats as scipy_stats
from sqlalchemy import func, or_, select

from llmops.errors import InvalidInput, NotFound
from llmops.loop.config import (
    DriftTrigger,
    LoopConfig,
    NewDataTrigger,
    QualityDropTrigger,
    ScheduleTrigger,
    trigger_label,
)
from llmops.loop.config import Trigger as TriggerSpec
from llmops.monitor.drift import compare
from llmops.monitor.drift_config import DriftConfig
from llmops.monitor.drift_features import DriftSample
from llmops.monitor.drift_sources import logged_prompts
from llmops.monitor.drift_store import reference_profile, save_report
from llmops.store.home import Home
from llmops.store.lifecycle import LifecycleRecord
from llmops.store.schema import GatewayRequest, OnlineEvalResult, RequestFeedback

DAY = timedelta(days=1)


@dataclass(frozen=True)
class TriggerContext:
    """What a trigger reads: the store, the loop, the champion's logged version, now, the last cycle."""

    home: Home
    config: LoopConfig
    champion_version: str
    now: datetime
    last_cycle_at: datetime | None


@dataclass(frozen=True)
class Firing:
    """One check of one trigger: whether it fired, why, and its numbers."""

    trigger: str
    kind: str
    fired: bool
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.trigger,
            "kind": self.kind,
            "fired": self.fired,
            "reason": self.reason,
            "numbers": self.numbers,
        }


class Trigger(Protocol):
    """A condition over monitoring data; ``check`` is a read, it changes nothing that matters."""

    @property
    def spec(self) -> TriggerSpec: ...

    def check(self, context: TriggerContext) -> Firing: ...


def _firing(spec: TriggerSpec, fired: bool, reason: str, **numbers: Any) -> Firing:
    return Firing(trigger_label(spec), spec.kind, fired, reason, numbers)


@dataclass(frozen=True)
class DriftCheck:
    """Live prompts of the champion (since the last cycle, within ``window``) against its reference."""

    spec: DriftTrigger

    def check(self, context: TriggerContext) -> Firing:
        since = context.now - timedelta(seconds=self.spec.window)
        if context.last_cycle_at is not None:
            since = max(since, context.last_cycle_at)
        version = context.champion_version
        try:
            reference = reference_profile(context.home.store, context.home.artifacts, version)
        except NotFound:
            return _firing(self.spec, False, f"{version} has no drift reference; set one to watch drift")
        prompts = logged_prompts(
            context.home.store, model_version=version, since=since, limit=self.spec.max_window
        )
        config = DriftConfig(min_window_samples=self.spec.min_window)
        try:
            report = compare(reference, DriftSample.of(prompts), config, model_version=version)
        except InvalidInput as exc:
            return _firing(self.spec, False, exc.message, window_samples=len(prompts))
        save_report(context.home.store, report)
        drifted = [f for f in report.features if f.drifted]
        numbers = {
            "window_samples": report.window_samples,
            "reference_samples": report.reference_samples,
            "features": {
                f.feature: {"score": round(f.score, 4), "p_value": f.p_value, "drifted": f.drifted}
                for f in report.features
            },
        }
        if not drifted:
            return _firing(self.spec, False, "no feature drifted", **numbers)
        names = ", ".join(f"{f.feature} {f.method} {f.score:.3g} (p={f.p_value:.2g})" for f in drifted)
        return _firing(self.spec, True, f"drift of {version}'s live prompts: {names}", **numbers)


def _feedback_value(score: float | None, thumbs: str | None) -> float | None:
    if score is not None:
        return float(score)
    return {"up": 1.0, "down": 0.0}.get(thumbs or "")


@dataclass(frozen=True)
class QualityDropCheck:
    """The recent window's scores against the baseline period before it (one-sided Mann-Whitney U)."""

    spec: QualityDropTrigger

    def check(self, context: TriggerContext) -> Firing:
        window_start = context.now - timedelta(seconds=self.spec.window)
        baseline_start = window_start - timedelta(seconds=self.spec.baseline)
        scored = self._scores(context, baseline_start)
        baseline = [value for at, value in scored if at < window_start]
        recent = [value for at, value in scored if at >= window_start]
        if context.last_cycle_at is not None:  # a window judged by an earlier cycle is not judged again
            recent = [value for at, value in scored if at >= max(window_start, context.last_cycle_at)]
        numbers: dict[str, Any] = {"baseline_n": len(baseline), "window_n": len(recent)}
        if min(len(baseline), len(recent)) < self.spec.min_samples:
            return _firing(
                self.spec, False, f"too few scores (need {self.spec.min_samples} on each side)", **numbers
            )
        baseline_mean, recent_mean = sum(baseline) / len(baseline), sum(recent) / len(recent)
        test = scipy_stats.mannwhitneyu(recent, baseline, alternative="less")
        p_value = float(test.pvalue)
        drop = baseline_mean - recent_mean
        numbers |= {
            "baseline_mean": round(baseline_mean, 4),
            "window_mean": round(recent_mean, 4),
            "drop": round(drop, 4),
            "p_value": p_value,
            "test": "mann-whitney-u (one-sided)",
        }
        what = self.spec.metric if self.spec.source == "online_eval" else "feedback score"
        if drop >= self.spec.min_drop and p_value < self.spec.alpha:
            reason = f"{what} dropped {drop:.3f} ({baseline_mean:.3f} -> {recent_mean:.3f}, p={p_value:.2g})"
            return _firing(self.spec, True, reason, **numbers)
        reason = (
            f"{what} drop {drop:.3f} (p={p_value:.2g}): below min_drop {self.spec.min_drop} "
            f"or not significant at alpha {self.spec.alpha}"
        )
        return _firing(self.spec, False, reason, **numbers)

    def _scores(self, context: TriggerContext, since: datetime) -> list[tuple[datetime, float]]:
        if self.spec.source == "online_eval":
            return _online_scores(context, str(self.spec.metric), since)
        return _feedback_scores(context, since)


def _online_scores(context: TriggerContext, metric: str, since: datetime) -> list[tuple[datetime, float]]:
    query = (
        select(OnlineEvalResult.scored_at, OnlineEvalResult.value)
        .join(GatewayRequest, GatewayRequest.id == OnlineEvalResult.request_id)
        .where(GatewayRequest.deployment == context.config.deployment)
        .where(OnlineEvalResult.metric == metric)
        .where(OnlineEvalResult.value.is_not(None))
        .where(OnlineEvalResult.scored_at >= since)
    )
    with context.home.store.read() as session:
        return [(at, float(value)) for at, value in session.execute(query) if value is not None]


def _feedback_scores(context: TriggerContext, since: datetime) -> list[tuple[datetime, float]]:
    query = (
        select(RequestFeedback.created_at, RequestFeedback.score, RequestFeedback.thumbs)
        .join(GatewayRequest, GatewayRequest.id == RequestFeedback.request_id)
        .where(GatewayRequest.deployment == context.config.deployment)
        .where(RequestFeedback.created_at >= since)
    )
    with context.home.store.read() as session:
        rows = [(at, _feedback_value(score, thumbs)) for at, score, thumbs in session.execute(query)]
    return [(at, value) for at, value in rows if value is not None]


@dataclass(frozen=True)
class ScheduleCheck:
    spec: ScheduleTrigger

    def check(self, context: TriggerContext) -> Firing:
        if context.last_cycle_at is None:
            return _firing(self.spec, True, "no cycle has run yet", every_s=self.spec.every)
        elapsed = (context.now - context.last_cycle_at).total_seconds()
        fired = elapsed >= self.spec.every
        reason = (
            f"{elapsed:.0f}s since the last cycle ({'>=' if fired else '<'} every {self.spec.every:.0f}s)"
        )
        return _firing(self.spec, fired, reason, since_last_s=round(elapsed), every_s=self.spec.every)


@dataclass(frozen=True)
class NewDataCheck:
    """Labelled feedback (a correction, thumbs up or a high score) on the deployment since the last cycle."""

    spec: NewDataTrigger

    def check(self, context: TriggerContext) -> Firing:
        query = (
            select(func.count())
            .select_from(RequestFeedback)
            .join(GatewayRequest, GatewayRequest.id == RequestFeedback.request_id)
            .where(GatewayRequest.deployment == context.config.deployment)
            .where(
                or_(
                    RequestFeedback.corrected_output.is_not(None),
                    RequestFeedback.thumbs == "up",
                    RequestFeedback.score >= 0.8,
                )
            )
        )
        if context.last_cycle_at is not None:
            query = query.where(RequestFeedback.created_at >= context.last_cycle_at)
        with context.home.store.read() as session:
            rows = int(session.execute(query).scalar_one())
        fired = rows >= self.spec.min_rows
        reason = f"{rows} new labelled rows ({'>=' if fired else '<'} {self.spec.min_rows})"
        return _firing(self.spec, fired, reason, new_rows=rows, min_rows=self.spec.min_rows)


def build_triggers(config: LoopConfig) -> list[Trigger]:
    """One ``Trigger`` per configured spec, in the configured order."""
    built: list[Trigger] = []
    for spec in config.triggers:
        if isinstance(spec, DriftTrigger):
            built.append(DriftCheck(spec))
        elif isinstance(spec, QualityDropTrigger):
            built.append(QualityDropCheck(spec))
        elif isinstance(spec, ScheduleTrigger):
            built.append(ScheduleCheck(spec))
        else:
            built.append(NewDataCheck(spec))
    return built


@dataclass(frozen=True)
class Allowance:
    """Whether a trigger may start a cycle now, by its cooldown and daily budget."""

    allowed: bool
    reason: str
    used_today: int
    budget: int
    next_at: datetime | None = None


class TriggerLedger:
    """Cooldown and budget bookkeeping over the loop's recorded cycles (newest first)."""

    def __init__(self, cycles: Sequence[LifecycleRecord]) -> None:
        self.cycles = list(cycles)

    def started_by(self, trigger: str) -> list[LifecycleRecord]:
        return [c for c in self.cycles if (c.data.get("trigger") or {}).get("name") == trigger]

    def last_cycle_at(self) -> datetime | None:
        return max((c.created_at for c in self.cycles), default=None)

    def allowance(self, spec: TriggerSpec, now: datetime) -> Allowance:
        mine = self.started_by(trigger_label(spec))
        today = [c for c in mine if c.created_at > now - DAY]
        if mine:
            cooled_at = max(c.created_at for c in mine) + timedelta(seconds=spec.cooldown)
            if cooled_at > now:
                return Allowance(
                    False,
                    f"cooling down until {cooled_at:%Y-%m-%d %H:%M:%S} UTC",
                    len(today),
                    spec.max_per_day,
                    cooled_at,
                )
        if len(today) >= spec.max_per_day:
            next_at = min(c.created_at for c in today) + DAY
            return Allowance(
                False,
                f"daily budget spent ({len(today)}/{spec.max_per_day} cycles in 24h)",
                len(today),
                spec.max_per_day,
                next_at,
            )
        return Allowance(True, "within cooldown and budget", len(today), spec.max_per_day)
