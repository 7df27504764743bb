"""One maintenance cycle, driven through its states (``states``) under a lease, each step recorded.

``CycleDriver.start`` records a cycle (a ``LifecycleRun`` of kind ``loop``, created with the lease
held, refused while another cycle of the loop is live); ``drive`` takes the lease, keeps it renewed
from a heartbeat thread while it works, and runs the step of the current state until the cycle ends.
Every step reads what it needs from the run's payload and writes what it produced back with the
transition (``numbers`` hold what decided it; the payload keeps dataset, run, candidate and rollout
ids), so a driver killed at any point is replaced by one that resumes at the stored state:

* ``triggered``: curate (content-addressed: the same rows give the same dataset versions);
* ``curated``: retrain (the recipe runner resumes from its checkpoint);
* ``trained``: compare champion and candidate (stored evaluation runs are reused by digest);
* ``evaluated``: gate → ``gated`` or ``rejected``;
* ``gated``: start the rollout, its id saved before anything waits on it;
* ``rolling_out``: wait on that same rollout → ``promoted`` or ``rolled_back``.

An error fails the cycle closed with its reason (a teacher that is unreachable, a training run that
diverged); production is never touched before ``rolling_out``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmops.data.cleaning import PIIDetector
from llmops.data.versions import DatasetStore
from llmops.errors import Conflict, InvalidInput, LLMOpsError
from llmops.loop import states
from llmops.loop.config import LoopConfig
from llmops.loop.curation import curate
from llmops.loop.evaluation import Evaluation, Evaluator, decide, record_verdict
from llmops.loop.labels import Labeler
from llmops.loop.retrain import Retrainer, RetrainRequest
from llmops.loop.rollout import RolloutLauncher
from llmops.loop.triggers import Firing
from llmops.monitor.drift_store import profile_from_dataset, save_reference
from llmops.registry import Registry
from llmops.store.home import Home
from llmops.store.lifecycle import Lifecycle, LifecycleRecord
from llmops.store.schema import utcnow

log = logging.getLogger(__name__)


@dataclass
class CycleDeps:
    """What a cycle works with; every seam (labels, retrain, evaluation, rollout) swaps for a fake."""

    home: Home
    config: LoopConfig
    labelers: list[Labeler]
    detector: PIIDetector | None
    retrainer: Retrainer
    evaluator: Evaluator
    rollout: RolloutLauncher | None
    holder: str
    actor: str = "loop"


class _Heartbeat:
    """Renews the lease every ttl/3 from a thread while a long step (training) runs."""

    def __init__(self, runs: Lifecycle, run_id: str, holder: str, ttl_s: float) -> None:
        self.runs, self.run_id, self.holder, self.ttl_s = runs, run_id, holder, ttl_s
        self.stop = threading.Event()
        self.lost: str | None = None
        self.thread = threading.Thread(target=self._beat, name=f"loop-lease-{run_id[:8]}", daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.ttl_s / 3):
            try:
                self.runs.renew(self.run_id, self.holder, ttl_s=self.ttl_s)
            except Conflict as exc:
                self.lost = exc.message
                return
            except LLMOpsError as exc:  # the store hiccupped; the next beat retries within the ttl
                log.warning("lease renewal of cycle %s failed: %s", self.run_id, exc.message)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


Step = Callable[[LifecycleRecord], LifecycleRecord]


class CycleDriver:
    def __init__(self, deps: CycleDeps) -> None:
        self.deps = deps
        self.runs = Lifecycle(deps.home.store, states.CYCLE_MACHINE)
        self.ttl_s = deps.config.lease_ttl

    # ---- starting and driving -------------------------------------------------------------------

    def start(self, firing: Firing, *, since: datetime | None, champion: str) -> LifecycleRecord:
        """Record a cycle started by ``firing`` (``Conflict`` while another cycle of the loop is live)."""
        data = {
            "trigger": firing.to_json(),
            "champion": champion,
            "since": since.isoformat() if since else None,
            "until": utcnow().isoformat(),
        }
        return self.runs.create(
            self.deps.config.loop_name,
            actor=self.deps.actor,
            data=data,
            reason=f"{firing.trigger}: {firing.reason}",
            holder=self.deps.holder,
            ttl_s=self.ttl_s,
        )

    def drive(self, run_id: str) -> LifecycleRecord:
        """Run the cycle's steps from its stored state until it ends (taking the lease first)."""
        record = self.runs.acquire(run_id, self.deps.holder, ttl_s=self.ttl_s)
        steps: dict[str, Step] = {
            states.TRIGGERED: self._curate,
            states.CURATED: self._retrain,
            states.TRAINED: self._evaluate,
            states.EVALUATED: self._gate,
            states.GATED: self._start_rollout,
            states.ROLLING_OUT: self._wait_rollout,
        }
        with _Heartbeat(self.runs, run_id, self.deps.holder, self.ttl_s) as heartbeat:
            while not record.terminal:
                if heartbeat.lost:
                    raise Conflict(f"cycle {run_id}: {heartbeat.lost}", code="lease_lost")
                record = self._step(record, steps[record.state])
        return record

    def _step(self, record: LifecycleRecord, step: Step) -> LifecycleRecord:
        try:
            return step(record)
        except Conflict as exc:
            if exc.code in ("lease_lost", "invalid_transition"):
                raise
            return self._fail(record, exc)
        except LLMOpsError as exc:
            return self._fail(record, exc)
        except Exception as exc:  # an unexpected failure still ends the cycle closed, recorded
            log.exception("cycle %s failed in %s", record.id, record.state)
            return self._fail(record, exc)

    def _fail(self, record: LifecycleRecord, exc: Exception) -> LifecycleRecord:
        message = exc.message if isinstance(exc, LLMOpsError) else f"{type(exc).__name__}: {exc}"
        return self._move(
            record, states.FAILED, f"{record.state} failed: {message}", {"failed_in": record.state}
        )

    def _move(
        self,
        record: LifecycleRecord,
        to_state: str,
        reason: str,
        numbers: dict[str, Any],
        data: dict[str, Any] | None = None,
    ) -> LifecycleRecord:
        return self.runs.transition(
            record.id,
            self.deps.holder,
            to_state,
            actor=self.deps.actor,
            reason=reason,
            numbers=numbers,
            data=data,
        )

    # ---- the steps ------------------------------------------------------------------------------

    def _curate(self, record: LifecycleRecord) -> LifecycleRecord:
        since = datetime.fromisoformat(record.data["since"]) if record.data.get("since") else None
        until = datetime.fromisoformat(record.data["until"])
        done = curate(self.deps.home, self.deps.config, since=since, until=until,
                      labelers=self.deps.labelers, detector=self.deps.detector)  # fmt: skip
        if done.train is None or done.fresh is None:
            return self._move(record, states.STOPPED, done.stop_reason or "nothing curated", done.numbers)
        refs = {"train_dataset": done.train.ref, "fresh_dataset": done.fresh.ref}
        numbers = {**done.numbers, **refs, "request_ids": len(done.request_ids)}
        reason = f"{done.train.num_rows} training rows, {done.fresh.num_rows} fresh evaluation rows"
        return self._move(record, states.CURATED, reason, numbers, data=refs)

    def _retrain(self, record: LifecycleRecord) -> LifecycleRecord:
        config = self.deps.config
        request = RetrainRequest(
            cycle_id=record.id,
            champion=record.data["champion"],
            train_dataset=record.data["train_dataset"],
            candidate_name=config.retrain.candidate_name or config.model,
        )
        candidate = self.deps.retrainer.retrain(request)
        numbers = {"run_id": candidate.run_id, "candidate": candidate.ref, **candidate.numbers}
        data = {"candidate": candidate.ref, "run_id": candidate.run_id}
        return self._move(
            record, states.TRAINED, f"trained {candidate.ref} from {request.champion}", numbers, data
        )

    def _evaluate(self, record: LifecycleRecord) -> LifecycleRecord:
        champion, candidate = record.data["champion"], record.data["candidate"]
        evaluation = self.deps.evaluator.evaluate(champion, candidate, record.data["fresh_dataset"])
        numbers = evaluation.to_json()
        fresh, original = evaluation.fresh, evaluation.original
        reason = (
            f"{fresh.metric}: fresh slice {_score(fresh.champion)} -> {_score(fresh.candidate)}, "
            f"original suite {_score(original.champion)} -> {_score(original.candidate)}"
        )
        return self._move(record, states.EVALUATED, reason, numbers, data={"evaluation": numbers})

    def _gate(self, record: LifecycleRecord) -> LifecycleRecord:
        verdict = decide(self.deps.config.gate, Evaluation.from_json(record.data["evaluation"]))
        record_verdict(
            self.deps.home, self.deps.config.loop_name, record.data["candidate"], verdict, record.id
        )
        numbers = {"passed": verdict.passed, "checks": verdict.checks}
        if not verdict.passed:
            return self._move(record, states.REJECTED, "gate failed: " + "; ".join(verdict.reasons), numbers)
        return self._move(record, states.GATED, "gate passed", numbers)

    def _start_rollout(self, record: LifecycleRecord) -> LifecycleRecord:
        config = self.deps.config
        rollout_id = record.data.get("rollout_id")
        if rollout_id is None:
            rollout_id = self._launcher().start(
                config.deployment,
                record.data["candidate"],
                config.rollout,
                reason=f"loop cycle {record.id[:12]}: gate passed",
            )
            self.runs.update(record.id, self.deps.holder, {"rollout_id": rollout_id})
        reason = f"rollout {rollout_id} of {record.data['candidate']} on {config.deployment}"
        return self._move(record, states.ROLLING_OUT, reason, {"rollout_id": rollout_id})

    def _wait_rollout(self, record: LifecycleRecord) -> LifecycleRecord:
        rollout_id = str(record.data.get("rollout_id") or "")
        if not rollout_id:  # the payload names the rollout before the state moves; this is a bug
            raise InvalidInput(f"cycle {record.id} is rolling out without a rollout id", param="rollout_id")
        outcome = self._launcher().wait(rollout_id)
        numbers = {"rollout_id": rollout_id, "rollout_state": outcome.state, **outcome.numbers}
        if not outcome.promoted:
            return self._move(record, states.ROLLED_BACK, outcome.reason or outcome.state, numbers)
        numbers["drift_reference"] = self._new_reference(record)
        return self._move(
            record, states.PROMOTED, outcome.reason or f"{record.data['candidate']} promoted", numbers
        )

    def _launcher(self) -> RolloutLauncher:
        if self.deps.rollout is None:
            raise InvalidInput(
                "no rollout is configured: set deployment_spec in the loop config", param="deployment_spec"
            )
        return self.deps.rollout

    def _new_reference(self, record: LifecycleRecord) -> str:
        """The promoted version is watched against what it was trained on, or drift would fire forever."""
        home, candidate = self.deps.home, record.data["candidate"]
        try:
            version = Registry.from_home(home).get(candidate).ref
            profile = profile_from_dataset(DatasetStore.from_home(home), record.data["train_dataset"])
            deployment = self.deps.config.deployment
            save_reference(home.store, home.artifacts, version, profile, deployment=deployment,
                           actor=self.deps.actor, reason=f"loop cycle {record.id}")  # fmt: skip
        except LLMOpsError as exc:
            return f"not set: {exc.message}"
        return record.data["train_dataset"]


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
