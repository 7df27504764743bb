"""The loop as a service: check triggers, start at most one cycle at a time, resume what was cut off.

``LoopService`` is built from a ``LoopConfig`` (start-up checks refuse unknown names first). ``once``
does one round: a cycle of this loop that is still live and whose lease has lapsed (its driver died)
is resumed; otherwise each trigger is checked in order, and the first that fires within its
cooldown and budget starts a cycle, driven to its end. ``run`` repeats ``once`` every
``config.interval`` until stopped. ``status`` and ``history`` read the recorded cycles.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from llmops.errors import Conflict, InvalidInput
from llmops.loop import states
from llmops.loop.config import DriftTrigger, LoopConfig, load_config, trigger_label
from llmops.loop.cycle import CycleDeps, CycleDriver
from llmops.loop.evaluation import Evaluator, SuiteEvaluator
from llmops.loop.labels import build_labelers
from llmops.loop.preflight import Checked, check_config
from llmops.loop.retrain import PipelineRetrainer, RecipeRetrainer, Retrainer
from llmops.loop.rollout import ControllerRollout, RolloutLauncher
from llmops.loop.triggers import Allowance, Firing, TriggerContext, TriggerLedger, build_triggers
from llmops.registry import Registry
from llmops.security.redaction import ScrubRedactor
from llmops.store.home import Home
from llmops.store.lifecycle import LifecycleRecord, Transition
from llmops.store.schema import utcnow

log = logging.getLogger(__name__)


def default_retrainer(home: Home, config: LoopConfig) -> Retrainer:
    """Through the pipelines runner when ``retrain.pipeline`` names a file, else the recipe directly."""
    if config.retrain.pipeline is not None:
        return PipelineRetrainer(home, config.retrain.pipeline, config.retrain.stage)
    return RecipeRetrainer(home, config.retrain.recipe)


def default_holder() -> str:
    return f"loop:{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class TriggerCheck:
    """One trigger's check this round and whether its cooldown and budget let it start a cycle."""

    firing: Firing
    allowance: Allowance


@dataclass(frozen=True)
class Round:
    """What one ``once`` did: the checks, and the cycle it started or resumed (if any)."""

    checks: list[TriggerCheck] = field(default_factory=list)
    cycle: LifecycleRecord | None = None
    resumed: bool = False
    note: str | None = None


class LoopService:
    def __init__(
        self,
        home: Home,
        config: LoopConfig,
        *,
        rollout: RolloutLauncher | None,
        retrainer: Retrainer | None = None,
        evaluator: Evaluator | None = None,
        holder: str | None = None,
    ) -> None:
        self.home = home
        self.config = config
        self.checked: Checked = check_config(home, config)
        deps = CycleDeps(
            home=home,
            config=config,
            labelers=build_labelers(config.curation.labels),
            detector=ScrubRedactor() if config.curation.scrub_pii else None,
            retrainer=retrainer or default_retrainer(home, config),
            evaluator=evaluator or SuiteEvaluator.from_home(home, config.gate),
            rollout=rollout,
            holder=holder or default_holder(),
            actor=f"loop:{config.loop_name}",
        )
        self.driver = CycleDriver(deps)
        self.triggers = build_triggers(config)

    # ---- one round ------------------------------------------------------------------------------

    def champion(self) -> str:
        """The champion's exact version now (the alias may have moved since start-up)."""
        return Registry.from_home(self.home).get(self.config.champion_ref).ref

    def check_triggers(self, now: datetime | None = None) -> list[TriggerCheck]:
        now = now or utcnow()
        ledger = TriggerLedger(self.driver.runs.recent(self.config.loop_name, limit=500))
        context = TriggerContext(self.home, self.config, self.champion(), now, ledger.last_cycle_at())
        return [
            TriggerCheck(trigger.check(context), ledger.allowance(trigger.spec, now))
            for trigger in self.triggers
        ]

    def once(self, *, force: bool = False) -> Round:
        """Resume a cut-off cycle, or start one if a trigger fires within its limits (or ``force``)."""
        live = self.driver.runs.live(self.config.loop_name)
        if live is not None:
            if live.lease_live():
                return Round(note=f"cycle {live.id[:12]} is being driven by {live.lease_holder}")
            return Round(cycle=self.driver.drive(live.id), resumed=True)
        checks = self.check_triggers()
        chosen = next((c.firing for c in checks if c.firing.fired and c.allowance.allowed), None)
        if chosen is None and force:
            chosen = Firing("manual", "manual", True, "started by hand (loop once --force)")
        if chosen is None:
            return Round(checks, note="no trigger fired within its cooldown and budget")
        try:
            record = self.driver.start(chosen, since=self._since(chosen), champion=self.champion())
        except Conflict as exc:  # another loop process started one a moment ago
            return Round(checks, note=exc.message)
        return Round(checks, cycle=self.driver.drive(record.id))

    def _since(self, firing: Firing) -> datetime | None:
        """Curate traffic since the last cycle; a drift trigger narrows it to its window."""
        latest = self.driver.runs.latest(self.config.loop_name)
        since = datetime.fromisoformat(latest.data["until"]) if latest and latest.data.get("until") else None
        for spec in self.config.triggers:
            if isinstance(spec, DriftTrigger) and trigger_label(spec) == firing.trigger:
                window_start = utcnow() - timedelta(seconds=spec.window)
                since = max(since, window_start) if since else window_start
        return since

    def run(self, stop: threading.Event, *, max_rounds: int | None = None) -> int:
        """Call ``once`` every ``config.interval`` seconds until ``stop`` is set; returns cycles run."""
        cycles = rounds = 0
        while not stop.is_set() and (max_rounds is None or rounds < max_rounds):
            rounds += 1
            try:
                result = self.once()
            except Exception:  # one bad round must not end the service; the next one retries
                log.exception("loop %s: round failed", self.config.loop_name)
            else:
                if result.cycle is not None:
                    cycles += 1
                    log.info(
                        "loop %s: cycle %s ended %s",
                        self.config.loop_name,
                        result.cycle.id,
                        result.cycle.state,
                    )
            stop.wait(self.config.interval)
        return cycles

    # ---- reading --------------------------------------------------------------------------------

    def history(self, limit: int = 20) -> list[CycleSummary]:
        return [
            summarise(self, record) for record in self.driver.runs.recent(self.config.loop_name, limit=limit)
        ]

    def status(self) -> dict[str, Any]:
        checks = self.check_triggers()
        live = self.driver.runs.live(self.config.loop_name)
        return {
            "loop": self.config.loop_name,
            "deployment": self.config.deployment,
            "champion": self.champion(),
            "live_cycle": None
            if live is None
            else {"id": live.id, "state": live.state, "holder": live.lease_holder},
            "triggers": [
                {
                    **c.firing.to_json(),
                    "allowed": c.allowance.allowed,
                    "limit": c.allowance.reason,
                    "used_today": c.allowance.used_today,
                    "budget": c.allowance.budget,
                }
                for c in checks
            ],
        }


@dataclass(frozen=True)
class CycleSummary:
    """One cycle for ``loop history``: its trigger, datasets, run, gate, rollout and scores."""

    id: str
    state: str
    created_at: datetime
    trigger: str
    trigger_reason: str
    data: dict[str, Any]
    transitions: list[Transition]

    def scores(self) -> dict[str, Any]:
        evaluation = self.data.get("evaluation") or {}
        return {
            part: {
                key: evaluation[part].get(key)
                for key in ("champion", "candidate", "improvement", "low", "high")
            }
            for part in ("fresh", "original")
            if part in evaluation
        }


SCORE_KEYS = ("champion", "candidate", "improvement", "low", "high")


def _check_json(check: TriggerCheck) -> dict[str, Any]:
    allowance = check.allowance
    return {
        **check.firing.to_json(),
        "allowed": allowance.allowed,
        "limit": allowance.reason,
        "used_today": allowance.used_today,
        "budget": allowance.budget,
    }


def summarise(service: LoopService, record: LifecycleRecord) -> CycleSummary:
    trigger = record.data.get("trigger") or {}
    return CycleSummary(
        id=record.id,
        state=record.state,
        created_at=record.created_at,
        trigger=str(trigger.get("name", "?")),
        trigger_reason=str(trigger.get("reason", "")),
        data=record.data,
        transitions=service.driver.runs.history(record.id),
    )


TERMINAL_STATES = states.TERMINAL


def open_service(home: Home, config_path: Path, *, with_rollout: bool = True) -> LoopService:
    """The loop of ``config_path`` (start-up checks first); with its rollout controller when asked."""
    config = load_config(config_path)
    rollout = None
    if with_rollout:
        if config.deployment_spec is None:
            raise InvalidInput(
                "loop config: deployment_spec: set the deployment.yaml the rollout controller drives",
                param="deployment_spec",
            )
        check_config(home, config)  # refuse unknown names before a target is built
        rollout = ControllerRollout.from_home(
            home, config.deployment_spec, target=config.target, actor=f"loop:{config.loop_name}"
        )
    return LoopService(home, config, rollout=rollout)
