"""The rollout controller: a candidate version reaches 100% of a deployment through measured steps,
or is pulled back by itself, with every decision recorded with its numbers.

``RolloutController.start`` checks the deploy-time gates (``gates.check_candidate``) and records a
``rollout`` lifecycle run (``rollout_state``); ``tick`` does one unit of work on a run whose lease
this controller holds: consume operator signals (promote, rollback, abort), then act on the state —
start candidate replicas through the ``DeployTarget``, set the split of the current step in the store
(``traffic``; the gateway follows it), and once the step has lasted ``min_duration_s`` with
``min_requests`` candidate requests, analyse it (``analysis`` over ``analysis_window``): pass → next
step (or promotion after the last), fail → rollback. ``drive`` ticks one run to its end (``llmops
rollout start``); ``serve`` drives every active rollout whose lease is free (``llmops rollout
controller``). All progress is in the store, so a controller killed at any point resumes where it
stopped once it (or another) takes the lease again; the lease keeps two controllers off one run.

Traffic safety: after writing a split the controller waits ``settle_s`` (the gateway's
``admin_sync_s``) before asking the target to remove or replace replicas, and re-asserts its split
after every target call, so no gateway worker is ever left with only a zero-weight arm.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmops.deploy.analysis import analyse
from llmops.deploy.analysis_window import read_windows
from llmops.deploy.gates import check_candidate
from llmops.deploy.policy import RolloutPolicy
from llmops.deploy.rollout_finish import promote, restore_stable
from llmops.deploy.rollout_state import ACTIVE_STATES, ROLLOUT_MACHINE, RolloutData, VersionPin
from llmops.deploy.spec import DeploymentSpec
from llmops.deploy.target import CANARY, SHADOW, STABLE, DeployTarget
from llmops.deploy.traffic import ensure_weights
from llmops.errors import Conflict, InvalidInput, LLMOpsError
from llmops.registry.client import Registry
from llmops.store.database import Store
from llmops.store.lifecycle import Lifecycle, LifecycleRecord, Signal
from llmops.store.schema import utcnow

log = logging.getLogger(__name__)


def default_holder() -> str:
    return f"rollout-controller:{socket.gethostname()}:{os.getpid()}"


@dataclass
class RolloutEnv:
    """What a controller works with. ``settle_s``: how long gateway workers take to apply a split."""

    store: Store
    registry: Registry
    target: DeployTarget
    holder: str = field(default_factory=default_holder)
    lease_ttl_s: float = 30.0
    settle_s: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = utcnow


class RolloutController:
    def __init__(self, env: RolloutEnv) -> None:
        self.env = env
        self.runs = Lifecycle(env.store, ROLLOUT_MACHINE)

    # ---- starting -------------------------------------------------------------------------------

    def start(
        self,
        spec: DeploymentSpec,
        candidate_ref: str,
        *,
        actor: str,
        policy: RolloutPolicy | None = None,
        reason: str | None = None,
    ) -> LifecycleRecord:
        """Record a rollout of ``candidate_ref`` on ``spec``'s deployment and check its gates.

        Raises ``Conflict`` (code ``candidate_refused``) when the gates refuse it; the refusal is
        recorded with its reasons before anything started.
        """
        policy = policy or spec.rollout
        stable = self.env.registry.get(spec.model)
        candidate = self.env.registry.get(candidate_ref)
        if candidate.name != stable.name:
            raise InvalidInput(
                f"candidate {candidate.ref} is not a version of {stable.name} (the model {spec.name} serves)",
                param="candidate",
            )
        if candidate.version == stable.version:
            raise Conflict(f"{spec.name} already serves {candidate.ref}", code="candidate_is_stable")
        data = RolloutData(
            deployment=spec.name,
            candidate=VersionPin(candidate.name, candidate.version, candidate.digest),
            stable=VersionPin(stable.name, stable.version, stable.digest),
            policy=policy.model_dump(mode="json"),
            spec=spec.model_dump(mode="json", exclude_unset=True),  # round-trips through validation
        )
        record = self.runs.create(
            spec.name,
            actor=actor,
            data=data.to_json(),
            reason=reason or f"roll out {candidate.ref} over {stable.ref}",
            holder=self.env.holder,
            ttl_s=self.env.lease_ttl_s,
        )
        return self._check_gates(record, data, actor)

    def _check_gates(self, record: LifecycleRecord, data: RolloutData, actor: str) -> LifecycleRecord:
        candidate = self.env.registry.get(data.candidate.ref)
        check = check_candidate(self.env.registry, candidate, data.rollout_policy())
        if not check.passed:
            why = "; ".join(check.reasons)
            self.runs.transition(
                record.id, self.env.holder, "refused", actor=actor, reason=why, numbers=check.numbers
            )
            raise Conflict(f"candidate {candidate.ref} refused: {why}", code="candidate_refused")
        return self.runs.transition(
            record.id,
            self.env.holder,
            "starting",
            actor=actor,
            reason="deploy-time gates passed",
            numbers=check.numbers,
        )

    # ---- operator commands ----------------------------------------------------------------------

    def signal(self, deployment: str, name: str, *, actor: str, reason: str | None) -> LifecycleRecord:
        """Queue ``promote``/``rollback``/``abort`` for the live rollout of ``deployment``."""
        record = self.runs.live(deployment)
        if record is None:
            raise Conflict(f"{deployment} has no rollout in progress", code="no_rollout")
        return self.runs.signal(record.id, name, actor=actor, reason=reason)

    def _on_signal(self, record: LifecycleRecord, data: RolloutData, sig: Signal) -> LifecycleRecord:
        numbers = {"manual": True, "step": data.step, "last_analysis": data.last_analysis}
        reason = f"manual {sig.name} by {sig.actor}" + (f": {sig.reason}" if sig.reason else "")
        to_state = {
            "promote": "promoting" if record.state in ACTIVE_STATES else None,
            "rollback": "rolling_back" if record.state in ("starting", *ACTIVE_STATES) else None,
            "abort": {
                "pending": "aborted",
                "starting": "aborting",
                "shadow": "aborting",
                "canary": "aborting",
            }.get(record.state),
        }.get(sig.name)
        if to_state is None:
            log.warning("rollout %s: %s ignored in state %s", record.id, sig.name, record.state)
            return record
        return self._move(record, to_state, actor=sig.actor, reason=reason, numbers=numbers)

    # ---- the work of one tick -------------------------------------------------------------------

    def tick(self, run_id: str) -> LifecycleRecord:
        """One unit of work on ``run_id`` (this controller must hold its lease)."""
        record = self.runs.renew(run_id, self.env.holder, ttl_s=self.env.lease_ttl_s)
        for sig in self.runs.take_signals(run_id, self.env.holder):
            record = self._on_signal(record, RolloutData.from_json(record.data), sig)
        if record.terminal:
            return record
        data = RolloutData.from_json(record.data)
        handlers: dict[str, Callable[[LifecycleRecord, RolloutData], LifecycleRecord]] = {
            "pending": lambda r, d: self._check_gates(r, d, self.env.holder),
            "starting": self._starting,
            "shadow": self._shadow,
            "canary": self._canary,
            "promoting": self._finish,
            "rolling_back": self._finish,
            "aborting": self._finish,
        }
        with self._lease_kept(run_id):  # a handler may wait long on the target (replicas starting)
            return handlers[record.state](record, data)

    @contextlib.contextmanager
    def _lease_kept(self, run_id: str) -> Iterator[None]:
        """Renew the run's lease from a thread while the body runs, so a slow target call does not
        let it expire under a live controller."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.env.lease_ttl_s / 3):
                try:
                    self.runs.renew(run_id, self.env.holder, ttl_s=self.env.lease_ttl_s)
                except LLMOpsError as exc:
                    log.warning("rollout %s: lease not renewed: %s", run_id, exc.message)
                    return

        keeper = threading.Thread(target=renew, name=f"lease-{run_id[:8]}", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            done.set()
            keeper.join()

    def _starting(self, record: LifecycleRecord, data: RolloutData) -> LifecycleRecord:
        policy, spec = data.rollout_policy(), data.deployment_spec()
        track = SHADOW if policy.shadow is not None else CANARY
        try:
            self.env.target.apply(spec, track=track, model=data.candidate.ref)
        except LLMOpsError as exc:
            reason = f"candidate replicas did not start: {exc.message}"
            return self._finish(
                self._move(record, "rolling_back", reason=reason, numbers={"track": track}), data
            )
        if policy.shadow is not None:
            return self._move(
                record,
                "shadow",
                reason=f"candidate replicas ready on {track}",
                data={"step_started_at": self._now()},
            )
        return self._enter_step(record, 0, reason=f"candidate replicas ready on {track}", numbers={})

    def _enter_step(
        self, record: LifecycleRecord, index: int, *, reason: str, numbers: dict[str, Any]
    ) -> LifecycleRecord:
        data = RolloutData.from_json(record.data)
        weight = data.rollout_policy().steps[index].weight
        record = self._move(
            record,
            "canary",
            reason=reason + f"; step {index + 1} sends {weight:g}% to {data.candidate.ref}",
            numbers=numbers,
            data={"step": index, "step_started_at": self._now()},
        )
        self._split(data, weight, f"rollout {record.id}: step {index + 1}")
        return record

    def _split(self, data: RolloutData, weight: float, reason: str) -> bool:
        weights = {STABLE: 100.0 - weight, CANARY: weight}
        return ensure_weights(self.env.store, data.deployment, weights, actor=self.env.holder, reason=reason)

    def _canary(self, record: LifecycleRecord, data: RolloutData) -> LifecycleRecord:
        policy = data.rollout_policy()
        step = policy.steps[data.step]
        self._split(data, step.weight, f"rollout {record.id}: step {data.step + 1}")
        limit = step.max_duration_s or max(10 * step.min_duration_s, 600.0)
        judged = self._judge(
            record,
            data,
            step.min_duration_s,
            step.min_requests,
            limit,
            stage="canary",
            all_traffic=step.weight >= 100,
        )
        if judged is None:
            return record
        passed, numbers, reason = judged
        numbers = {"step": data.step + 1, "weight": step.weight, **numbers}
        if not passed:
            return self._finish(self._move(record, "rolling_back", reason=reason, numbers=numbers), data)
        if data.step + 1 == len(policy.steps):
            record = self._move(
                record, "promoting", reason=reason, numbers=numbers, data={"last_analysis": numbers}
            )
            return self._finish(record, data)
        self.runs.update(record.id, self.env.holder, {"last_analysis": numbers})
        return self._enter_step(
            self.runs.get(record.id), data.step + 1, reason=f"step {data.step + 1}: {reason}", numbers=numbers
        )

    def _shadow(self, record: LifecycleRecord, data: RolloutData) -> LifecycleRecord:
        stage = data.rollout_policy().shadow
        assert stage is not None  # only a policy with a shadow stage enters it
        limit = max(10 * stage.min_duration_s, 600.0)
        judged = self._judge(record, data, stage.min_duration_s, stage.min_requests, limit, stage="shadow")
        if judged is None:
            return record
        passed, numbers, reason = judged
        if not passed:
            return self._finish(self._move(record, "rolling_back", reason=reason, numbers=numbers), data)
        try:
            self.env.target.apply(data.deployment_spec(), track=CANARY, model=data.candidate.ref)
            self.env.target.delete(data.deployment, track=SHADOW)
        except LLMOpsError as exc:
            why = f"shadow passed but canary replicas did not start: {exc.message}"
            return self._finish(self._move(record, "rolling_back", reason=why, numbers=numbers), data)
        return self._enter_step(record, 0, reason=f"shadow: {reason}", numbers=numbers)

    def _judge(
        self,
        record: LifecycleRecord,
        data: RolloutData,
        min_duration_s: float,
        min_requests: int,
        max_duration_s: float,
        *,
        stage: str,
        all_traffic: bool = False,
    ) -> tuple[bool, dict[str, Any], str] | None:
        """None while the stage must go on; else (passed, numbers, reason).

        A step sending all traffic to the candidate leaves stable nothing to answer in its window:
        stable is then judged over its baseline (``_stable_baseline``), the latest window it served.
        """
        started, now = data.started_at(), self.env.now()
        assert started is not None  # set when the stage was entered
        elapsed = (now - started).total_seconds()
        if elapsed < min_duration_s:
            return None
        baseline = self._stable_baseline(data, started) if all_traffic else None
        candidate, stable = read_windows(
            self.env.store,
            data.deployment,
            candidate_version=data.candidate.ref,
            stable_version=data.stable.ref,
            since=started,
            until=now,
            shadow=stage == "shadow",
            stable_window=baseline,
        )
        window: dict[str, Any] = {
            "since": started.isoformat(),
            "until": now.isoformat(),
            "elapsed_s": round(elapsed, 3),
        }
        if baseline is not None:
            window["stable_since"], window["stable_until"] = (t.isoformat() for t in baseline)
        seen = len(candidate.requests)
        if seen < min_requests:
            if elapsed < max_duration_s:
                return None
            reason = (
                f"{stage} gathered {seen} of {min_requests} candidate requests in {max_duration_s:g} s: "
                "too few to judge, which fails the step"
            )
            return False, {"window": window, "candidate_requests": seen, "min_requests": min_requests}, reason
        policy, spec = data.rollout_policy(), data.deployment_spec()
        result = analyse(
            candidate,
            stable,
            policy.analysis,
            slo=spec.slo,
            stage="shadow" if stage == "shadow" else "canary",
        )
        return result.passed, {"window": window, "analysis": result.numbers()}, result.summary()

    def _stable_baseline(self, data: RolloutData, started: datetime) -> tuple[datetime, datetime]:
        """The previous step's analysis window, or (a first step at 100%) as long a window just before
        this step began, when stable still served everything."""
        previous = (data.last_analysis or {}).get("window") or {}
        if previous.get("since") and previous.get("until"):
            return datetime.fromisoformat(previous["since"]), datetime.fromisoformat(previous["until"])
        span = self.env.now() - started
        return started - span, started

    def _finish(self, record: LifecycleRecord, data: RolloutData) -> LifecycleRecord:
        record = self.runs.get(record.id)
        data = RolloutData.from_json(record.data)
        if record.state == "promoting":
            numbers = promote(self.env, self.runs, record, data)
            return self._move(record, "promoted", reason=f"{data.candidate.ref} promoted", numbers=numbers)
        numbers = restore_stable(self.env, self.runs, record, data)
        to_state = "rolled_back" if record.state == "rolling_back" else "aborted"
        return self._move(record, to_state, reason=f"{data.stable.ref} restored", numbers=numbers)

    # ---- helpers --------------------------------------------------------------------------------

    def _move(
        self,
        record: LifecycleRecord,
        to_state: str,
        *,
        reason: str,
        numbers: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> LifecycleRecord:
        return self.runs.transition(
            record.id,
            self.env.holder,
            to_state,
            actor=actor or self.env.holder,
            reason=reason,
            numbers=numbers or {},
            data=data,
        )

    def _now(self) -> str:
        return self.env.now().isoformat()

    # ---- driving --------------------------------------------------------------------------------

    def drive(self, run_id: str, *, timeout_s: float | None = None) -> LifecycleRecord:
        """Tick ``run_id`` until it ends (or ``timeout_s`` passes): take its lease first."""
        record = self.runs.acquire(run_id, self.env.holder, ttl_s=self.env.lease_ttl_s)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        interval = RolloutData.from_json(record.data).rollout_policy().analysis_interval_s
        try:
            while not record.terminal and (deadline is None or time.monotonic() < deadline):
                record = self._tick_logged(run_id) or record
                if not record.terminal:
                    self.env.sleep(interval)
        finally:
            if not record.terminal:
                self.runs.release(run_id, self.env.holder)
        return record

    def _tick_logged(self, run_id: str) -> LifecycleRecord | None:
        try:
            return self.tick(run_id)
        except Conflict as exc:
            if exc.code == "lease_lost":
                raise
            log.error("rollout %s: %s", run_id, exc.message)
        except LLMOpsError as exc:
            log.error("rollout %s: %s (retrying next tick)", run_id, exc.message)
        return None

    def serve(self, stop: threading.Event, *, poll_s: float = 1.0) -> None:
        """Drive every active rollout whose lease is free or ours, until ``stop`` is set."""
        while not stop.is_set():
            for record in self.runs.recent(limit=200):
                if record.terminal or (record.lease_live() and record.lease_holder != self.env.holder):
                    continue
                try:
                    self.runs.acquire(record.id, self.env.holder, ttl_s=self.env.lease_ttl_s)
                    self._tick_logged(record.id)
                except Conflict as exc:  # taken by another controller meanwhile: it drives the run now
                    log.warning("rollout %s: %s", record.id, exc.message)
                    continue
            stop.wait(poll_s)
