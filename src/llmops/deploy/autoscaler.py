"""The local autoscaler: the supervisor's hook that scales a deployment's stable track on its load.

When the spec has an ``autoscaling:`` section, the supervisor calls ``Autoscaler.tick`` on every
loop; once per ``liveness.interval_s`` it samples the ready stable replicas (``load.LoadSampler``:
queue depth, running requests, p95 TTFT from their /metrics) and asks ``autoscale.decide`` (within
``replicas.min..max``, the cooldown counted from the last change). A decision that changes the count
is applied through ``ReplicaSet.scale``: an added replica is ready and registered with the gateway
before it counts; a removed one drains (deregistered, ``drain.deregister_wait_s`` for every gateway
worker to stop choosing it, SIGTERM so in-flight requests finish). Each change is a transition of the
deployment's run with actor ``autoscaler``, its reason and numbers (so an audit event), and every
decision is counted in ``AutoscaleMetrics``.

Nothing is decided while a stable replica is starting, restarting or draining: the deployment is
settling, and its load per replica would be misread. The autoscaler's state (when the count last
changed, the last decision and since when it holds) lives in the run's data: ``llmops deploy status``
shows it and a restarted supervisor keeps the cooldown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from llmops.deploy.autoscale import LoadSample, ScaleDecision, decide
from llmops.deploy.autoscale_metrics import AutoscaleMetrics
from llmops.deploy.load import LoadSampler
from llmops.deploy.processes import ReplicaRecord
from llmops.deploy.spec import DeploymentSpec
from llmops.deploy.target import STABLE
from llmops.errors import LLMOpsError

ACTOR = "autoscaler"


class Decision(BaseModel):
    """The last decision, as persisted and shown: it has held since ``since`` (epoch seconds)."""

    model_config = ConfigDict(extra="ignore")

    current: int
    desired: int
    reason: str
    numbers: dict[str, float]
    since: float
    error: str | None = None


class AutoscalerState(BaseModel):
    """What survives a supervisor restart (the run's ``autoscaler`` data)."""

    model_config = ConfigDict(extra="ignore")

    last_change_at: float | None = None
    decision: Decision | None = None


class Scalable(Protocol):
    """What the autoscaler needs of a replica set (``ReplicaSet``)."""

    spec: DeploymentSpec | None
    records: list[ReplicaRecord]

    def scale(self, track: str, count: int) -> dict[str, Any]: ...


Record = Callable[[str, dict[str, Any]], None]  # (reason, numbers) -> an audited transition


def direction(decision: ScaleDecision) -> str:
    if decision.desired > decision.current:
        return "up"
    return "down" if decision.desired < decision.current else "none"


def describe(decision: ScaleDecision) -> str:
    """``autoscale up 1 -> 2: load above target (waiting/replica 6.00, ...)``: the audit reason."""
    n = decision.numbers
    ttft = f"{n['p95_ttft_ms']:.0f} ms" if n.get("p95_ttft_ms", -1) >= 0 else "none"
    return (
        f"autoscale {direction(decision)} {decision.current} -> {decision.desired}: {decision.reason} "
        f"(waiting/replica {n['waiting_per_replica']:.2f}, running/replica {n['running_per_replica']:.2f}, "
        f"p95 TTFT {ttft})"
    )


class Autoscaler:
    """Scales one deployment's stable track on its load (see the module docstring)."""

    def __init__(
        self,
        deployment: str,
        metrics: AutoscaleMetrics,
        *,
        state: AutoscalerState | None = None,
        sampler: LoadSampler | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.deployment = deployment
        self.metrics = metrics
        self.sampler = sampler or LoadSampler()
        self.clock = clock
        self.state = state or AutoscalerState()
        if self.state.last_change_at is None:
            self.state.last_change_at = clock()  # a fresh deployment gets a cooldown before changing
        self._sampled_at = float("-inf")

    def changed(self) -> None:
        """The stable count changed another way (an operator's apply or scale): the cooldown restarts."""
        self.state.last_change_at = self.clock()

    def tick(self, replicas: Scalable, record: Record) -> ScaleDecision | None:
        """Sample, decide and apply, at most once per ``liveness.interval_s``; the decision, if any."""
        spec = replicas.spec
        if spec is None or spec.autoscaling is None:
            return None
        now = self.clock()
        if now - self._sampled_at < spec.liveness.interval_s:
            return None
        self._sampled_at = now
        stable = [r for r in replicas.records if r.track == STABLE and r.state != "crash_loop"]
        if not stable or any(r.state != "ready" for r in stable):
            return None
        sample = self.sampler.sample(
            [(r.name, r.url) for r in stable], window_s=spec.autoscaling.ttft_window_s
        )
        if sample is None:
            return None
        decision = decide(
            sample,
            spec.autoscaling,
            minimum=spec.replicas.min,
            maximum=spec.replicas.max,
            ttft_slo_ms=spec.slo.p95_ttft_ms,
            since_last_change_s=now - (self.state.last_change_at or now),
        )
        error = self._apply(replicas, decision, sample, record) if decision.changes else None
        count = sum(1 for r in replicas.records if r.track == STABLE and r.state != "crash_loop")
        self.metrics.observe(self.deployment, direction(decision) if error is None else "none",
                             decision.desired, count)  # fmt: skip
        self._remember(decision, now, error)
        return decision

    def _apply(
        self, replicas: Scalable, decision: ScaleDecision, sample: LoadSample, record: Record
    ) -> str | None:
        reason = describe(decision)
        numbers = {
            "current": decision.current,
            "desired": decision.desired,
            "waiting": sample.waiting,
            "running": sample.running,
            **decision.numbers,
        }
        started = self.clock()
        try:
            replicas.scale(STABLE, decision.desired)
        except LLMOpsError as exc:
            numbers["took_s"] = round(self.clock() - started, 3)
            record(f"{reason} failed: {exc.message}", numbers)
            self.state.last_change_at = self.clock()  # not retried before the cooldown
            return exc.message
        numbers["took_s"] = round(self.clock() - started, 3)  # new replicas ready, or removed ones drained
        record(reason, numbers)
        self.state.last_change_at = self.clock()  # counted from when the new count runs
        return None

    def _remember(self, decision: ScaleDecision, now: float, error: str | None) -> None:
        last = self.state.decision
        same = (
            last is not None
            and error is None
            and last.error is None
            and (last.current, last.desired, last.reason)
            == (decision.current, decision.desired, decision.reason)
        )
        if not same:
            self.state.decision = Decision(
                current=decision.current,
                desired=decision.desired,
                reason=decision.reason,
                numbers=decision.numbers,
                since=now,
                error=error,
            )
