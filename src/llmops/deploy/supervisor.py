"""The local supervisor: one process per deployment that keeps its replicas running.

It drives the deployment's lifecycle run (``store.lifecycle``, kind ``deployment``) under a lease,
so exactly one supervisor owns a deployment; the desired state and every replica (pid, port, start
time, restarts) are persisted in the run, so a restarted supervisor *adopts* the replicas still
running instead of starting twins. Operators never touch replicas directly: ``llmops deploy``
queues signals (``apply``, ``scale``, ``restart``, ``drain``, ``delete``) with a ticket, and the
supervisor answers each ticket in the run's data. Every change is a transition of the run, so an
audit event with its numbers. With an ``autoscaling:`` section in the spec, each loop also gives the
autoscaler (``autoscaler.Autoscaler``) its turn to scale the stable track on the replicas' load.

A crashed replica is deregistered and restarted after an exponential backoff; after
``restart.max_restarts`` consecutive failed starts it is left stopped as ``crash_loop`` (reported,
not spun). Stopping a replica drains it: deregister, wait ``drain.deregister_wait_s`` for every
gateway worker to stop choosing it, SIGTERM (in-flight requests finish), SIGKILL after
``drain.grace_s``.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmops.deploy.autoscale_metrics import AutoscaleMetrics, textfile_path
from llmops.deploy.autoscaler import ACTOR as AUTOSCALER
from llmops.deploy.autoscaler import Autoscaler, AutoscalerState
from llmops.deploy.gateway_client import GatewayAdmin
from llmops.deploy.processes import ReplicaRecord, is_running, probe, reap, resident_mb, stop
from llmops.deploy.replica_set import ReplicaSet
from llmops.deploy.spec import DeploymentSpec
from llmops.errors import LLMOpsError, NotFound
from llmops.store.home import Home
from llmops.store.lifecycle import Lifecycle, StateMachine

log = logging.getLogger(__name__)

DEPLOYMENT = StateMachine(
    kind="deployment",
    initial="applying",
    edges={
        "applying": frozenset({"running", "failed", "deleted"}),
        "running": frozenset({"running", "deleted"}),
    },
)
LEASE_TTL_S = 10.0
TICK_S = 0.25
ACTOR = "supervisor"


class Supervisor:
    """Owns one deployment's replicas while it holds the run's lease (see the module docstring)."""

    def __init__(self, home: Home, name: str, gateway: GatewayAdmin | None, env: dict[str, str]) -> None:
        self.home = home
        self.name = name
        self.lifecycle = Lifecycle(home.store, DEPLOYMENT)
        self.holder = f"supervisor:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.gateway = gateway
        self.env = env
        self.run_id = ""
        self.replicas: ReplicaSet | None = None
        self._persisted: Any = None
        self._probed: dict[str, float] = {}
        self._probe_failures: dict[str, int] = {}
        self.autoscaler = Autoscaler(name, AutoscaleMetrics(textfile_path(home, name)))

    # -- the lease and the loop -----------------------------------------------------------------

    def run(self, *, until_idle: bool = False) -> None:
        """Adopt, then supervise until the deployment is deleted or the lease is lost."""
        record = self.lifecycle.live(self.name)
        if record is None:
            raise LLMOpsError(f"deployment {self.name!r} has no live run; apply it first")
        record = self.lifecycle.acquire(record.id, self.holder, ttl_s=LEASE_TTL_S)
        self.run_id = record.id
        self.replicas = ReplicaSet.load(self, record.data)
        self.autoscaler.state = AutoscalerState.model_validate(
            record.data.get("autoscaler") or {"last_change_at": time.time()}
        )
        self.replicas.adopt()
        self._save()
        while True:
            record = self.lifecycle.renew(self.run_id, self.holder, ttl_s=LEASE_TTL_S)
            for signal in self.lifecycle.take_signals(self.run_id, self.holder):
                self._handle(signal.name, signal.args, signal.actor, signal.reason)
            record = self.lifecycle.get(self.run_id)
            if record.terminal:
                return
            self._tick()
            self._save()
            if until_idle and not record.pending_signals:
                return
            time.sleep(TICK_S)

    def renew(self) -> None:
        """Keep the lease while a long step (a replica starting) runs."""
        self.lifecycle.renew(self.run_id, self.holder, ttl_s=LEASE_TTL_S)

    def _save(self) -> None:
        assert self.replicas is not None
        data = {**self.replicas.dump(), "autoscaler": self.autoscaler.state.model_dump(mode="json")}
        if data != self._persisted:
            self.lifecycle.update(self.run_id, self.holder, data)
            self._persisted = data

    def record(self, reason: str, numbers: dict[str, Any], *, actor: str = ACTOR) -> None:
        """An audited transition of the run for a change that keeps it running."""
        state = self.lifecycle.get(self.run_id).state
        if state == "running":
            self.lifecycle.transition(
                self.run_id, self.holder, "running", actor=actor, reason=reason, numbers=numbers
            )

    # -- operator signals -------------------------------------------------------------------------

    def _handle(self, name: str, args: dict[str, Any], actor: str, reason: str | None) -> None:
        assert self.replicas is not None
        ticket = args.get("ticket")
        state = self.lifecycle.get(self.run_id).state
        try:
            if name == "apply":
                spec = DeploymentSpec.model_validate(args["spec"])
                track, model = args.get("track", "stable"), args.get("model")
                numbers = self.replicas.apply(spec, track, model, args.get("replicas"))
                to = "running"
                self.lifecycle.transition(
                    self.run_id,
                    self.holder,
                    to,
                    actor=actor,
                    reason=reason or f"apply {track}",
                    numbers=numbers,
                )
                if track == "stable":
                    self.autoscaler.changed()
            elif name == "scale":
                numbers = self.replicas.scale(args.get("track", "stable"), int(args["replicas"]))
                self.record(reason or "scale", numbers, actor=actor)
                if args.get("track", "stable") == "stable":
                    self.autoscaler.changed()
            elif name == "restart":
                numbers = self.replicas.rolling_restart(args.get("track"))
                self.record(reason or "restart", numbers, actor=actor)
            elif name == "drain":
                numbers = self.replicas.drain(args.get("track"))
                self.record(reason or "drain", numbers, actor=actor)
            elif name == "delete":
                track = args.get("track")
                numbers = self.replicas.delete(track)
                if track is None:
                    self.lifecycle.transition(
                        self.run_id,
                        self.holder,
                        "deleted",
                        actor=actor,
                        reason=reason or "delete",
                        numbers=numbers,
                    )
                else:
                    self.record(reason or f"delete {track}", numbers, actor=actor)
            else:
                raise LLMOpsError(f"unknown signal {name!r}")
        except (LLMOpsError, ValidationError, ValueError, KeyError) as exc:
            message = exc.message if isinstance(exc, LLMOpsError) else f"{type(exc).__name__}: {exc}"
            log.error("deployment %s: %s failed: %s", self.name, name, message)
            self._answer(ticket, error=message)
            if state == "applying":
                self.lifecycle.transition(
                    self.run_id, self.holder, "failed", actor=actor, reason=message, numbers={}
                )
            return
        self._answer(ticket)

    def _answer(self, ticket: str | None, error: str | None = None) -> None:
        if not ticket:
            return
        tickets = dict(self.lifecycle.get(self.run_id).data.get("tickets", {}))
        tickets[ticket] = {"ok": error is None, "error": error, "at": time.time()}
        recent = dict(sorted(tickets.items(), key=lambda kv: kv[1]["at"])[-20:])
        if self.lifecycle.get(self.run_id).terminal:
            return
        self._save()  # what the signal changed is in the run before its caller reads the status
        self.lifecycle.update(self.run_id, self.holder, {"tickets": recent})

    # -- keeping replicas alive ----------------------------------------------------------------

    def _tick(self) -> None:
        assert self.replicas is not None
        reap()
        spec = self.replicas.spec
        if spec is None:
            return
        now = time.time()
        for replica in self.replicas.records:
            external = replica.pid is None and replica.port is None  # openai: probed, not a process
            if replica.state in ("ready", "starting") and not external and not is_running(replica):
                self.replicas.crashed(replica, "the process exited")
            elif replica.state == "starting":
                self.replicas.check_start(replica)
            elif replica.state == "ready":
                self._check_liveness(replica, spec, now)
            elif replica.state == "restarting" and replica.next_start_at and now >= replica.next_start_at:
                self.replicas.restart(replica)
        self.autoscaler.tick(
            self.replicas, lambda reason, numbers: self.record(reason, numbers, actor=AUTOSCALER)
        )

    def _check_liveness(self, replica: ReplicaRecord, spec: DeploymentSpec, now: float) -> None:
        if now - self._probed.get(replica.name, 0.0) < spec.liveness.interval_s:
            return
        self._probed[replica.name] = now
        limit = spec.resources.memory_limit_mb
        used = resident_mb(replica.pid) if replica.pid else None
        if limit and used and used > limit:
            stop(replica, 0)
            self.replicas.crashed(replica, f"resident memory {used:.0f} MiB passed the limit of {limit} MiB")  # type: ignore[union-attr]
            return
        if probe(replica.url + spec.liveness.path, spec.liveness.timeout_s):
            self._probe_failures[replica.name] = 0
            return
        failures = self._probe_failures.get(replica.name, 0) + 1
        self._probe_failures[replica.name] = failures
        if failures >= spec.liveness.failure_threshold:
            self._probe_failures[replica.name] = 0
            stop(replica, spec.drain.grace_s)
            self.replicas.crashed(replica, f"{failures} liveness probes of {spec.liveness.path} failed")  # type: ignore[union-attr]


def applied_spec(home: Home, name: str) -> DeploymentSpec:
    """The spec ``llmops deploy apply`` last applied to the running deployment ``name`` (its stable
    track), as the supervisor's run holds it."""
    run = Lifecycle(home.store, DEPLOYMENT).live(name)
    raw = run.data.get("spec") if run is not None else None
    if not raw:
        raise NotFound(
            f"deployment {name!r} is not running: `llmops deploy apply deployment.yaml` starts it (or pass "
            "--spec deployment.yaml)",
            param="deployment",
        )
    return DeploymentSpec.model_validate(raw)


def replica_log(home: Home, name: str, replica: str) -> Path:
    return home.settings.resolved_home() / "deploy" / name / f"{replica}.log"
