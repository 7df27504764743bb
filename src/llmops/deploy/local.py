"""``LocalTarget``: the ``DeployTarget`` of replica processes on this machine.

The caller side of the supervisor (``supervisor.py``): each verb queues a signal with a ticket on
the deployment's lifecycle run, makes sure a supervisor holds the run (starting one, detached, with
``llmops deploy supervise NAME`` when none is live: it adopts what still runs) and waits for the
ticket's answer. ``status`` reads the run and, when asked, each replica's /metrics.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from llmops.deploy.autoscaler import AutoscalerState
from llmops.deploy.processes import ReplicaRecord, live_metrics, replica_command
from llmops.deploy.spec import DeploymentSpec
from llmops.deploy.supervisor import DEPLOYMENT
from llmops.deploy.target import (
    STABLE,
    AutoscaleStatus,
    DeploymentStatus,
    ReplicaState,
    ReplicaStatus,
)
from llmops.errors import LLMOpsError, NotFound
from llmops.store.home import Home
from llmops.store.lifecycle import Lifecycle, LifecycleRecord

# a supervisor just started has this long to take the lease before another one is started
SPAWN_GRACE_S = 20.0


def supervisor_env(home: Home, gateway_url: str | None, gateway_key: str | None) -> dict[str, str]:
    """The environment of a supervisor and its replicas: the same home and store as the caller."""
    env = dict(os.environ)
    settings = home.settings
    env["LLMOPS_HOME"] = str(settings.resolved_home())
    env["LLMOPS_DATABASE_URL"] = settings.resolved_database_url()
    env.pop("LLMOPS_GATEWAY_KEY", None)
    if gateway_url:
        env["LLMOPS_GATEWAY_URL"] = gateway_url
    if gateway_key:
        env["LLMOPS_GATEWAY_KEY"] = gateway_key
    return env


class LocalTarget:
    """Replica processes under a supervisor per deployment (see the module docstring)."""

    def __init__(
        self,
        home: Home,
        *,
        gateway_url: str | None = None,
        gateway_key: str | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        self.home = home
        self.lifecycle = Lifecycle(home.store, DEPLOYMENT)
        self.gateway_url = gateway_url
        self.gateway_key = gateway_key
        self.timeout_s = timeout_s
        self._spawned_at = -SPAWN_GRACE_S

    @classmethod
    def from_home(cls, home: Home) -> LocalTarget:
        """The target for the gateway the settings name (``LLMOPS_GATEWAY_URL``, ``LLMOPS_GATEWAY_KEY``)."""
        settings = home.settings
        key = settings.gateway_key.get_secret_value() if settings.gateway_key else None
        return cls(home, gateway_url=settings.gateway_url, gateway_key=key)

    # -- the verbs ----------------------------------------------------------------------------------

    def render(self, spec: DeploymentSpec, *, track: str = STABLE, model: str | None = None) -> str:
        ref = model or spec.model
        lines = [f"# {spec.name} track {track}: {spec.replicas.count} replica(s) of {ref}"]
        for index in range(spec.replicas.count):
            port = (spec.network.base_port + index) if spec.network.base_port else 0
            lines.append(shlex.join(replica_command(spec, ref, None, port)))
        return "\n".join(lines)

    def apply(
        self,
        spec: DeploymentSpec,
        *,
        track: str = STABLE,
        model: str | None = None,
        replicas: int | None = None,
    ) -> DeploymentStatus:
        run = self.lifecycle.live(spec.name)
        if run is None:
            run = self.lifecycle.create(
                spec.name, actor=self.home.actor, data={"spec": None}, reason="deploy apply"
            )
        args = {
            "spec": spec.model_dump(mode="json", exclude_unset=True),
            "track": track,
            "model": model,
            "replicas": replicas,
        }
        self._call(run, "apply", args)
        return self.status(spec.name)

    def scale(self, name: str, replicas: int, *, track: str = STABLE) -> DeploymentStatus:
        self._call(self._live(name), "scale", {"track": track, "replicas": replicas})
        return self.status(name)

    def restart(self, name: str, *, track: str | None = None) -> DeploymentStatus:
        self._call(self._live(name), "restart", {"track": track})
        return self.status(name)

    def drain(self, name: str, *, track: str | None = None) -> DeploymentStatus:
        self._call(self._live(name), "drain", {"track": track})
        return self.status(name)

    def delete(self, name: str, *, track: str | None = None) -> None:
        self._call(self._live(name), "delete", {"track": track})

    def status(self, name: str, *, live_metrics: bool = False) -> DeploymentStatus:
        run = self.lifecycle.live(name) or self.lifecycle.latest(name)
        if run is None:
            raise NotFound(f"no deployment {name!r}; `llmops deploy apply FILE` creates it", param="name")
        return _status(run, live_metrics)

    def names(self) -> list[str]:
        return sorted({r.name for r in self.lifecycle.recent(limit=500) if not r.terminal})

    # -- signals, tickets and the supervisor process --------------------------------------------------

    def _live(self, name: str) -> LifecycleRecord:
        run = self.lifecycle.live(name)
        if run is None:
            raise NotFound(
                f"no running deployment {name!r}; `llmops deploy apply FILE` starts it", param="name"
            )
        return run

    def _call(self, run: LifecycleRecord, signal: str, args: dict[str, Any]) -> None:
        ticket = uuid.uuid4().hex
        self.lifecycle.signal(run.id, signal, actor=self.home.actor, args={**args, "ticket": ticket})
        log_path = self.ensure_supervisor(run)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            current = self.lifecycle.get(run.id)
            answer = current.data.get("tickets", {}).get(ticket)
            if answer is not None:
                if not answer["ok"]:
                    raise LLMOpsError(f"deploy {signal} {run.name}: {answer['error']}", code="deploy_failed")
                return
            if current.terminal:
                if current.state == "deleted" and signal == "delete":
                    return
                history = self.lifecycle.history(run.id)
                raise LLMOpsError(
                    f"deploy {signal} {run.name}: {history[-1].reason or current.state}", code="deploy_failed"
                )
            if not current.lease_live():  # the supervisor died (or never started): start one, it adopts
                self.ensure_supervisor(current)
            time.sleep(0.2)
        raise LLMOpsError(
            f"deploy {signal} {run.name} did not finish within {self.timeout_s:g}s; see {log_path}"
        )

    def ensure_supervisor(self, run: LifecycleRecord) -> str:
        """Start ``llmops deploy supervise NAME`` detached unless a supervisor holds the run."""
        log_path = self.home.settings.resolved_home() / "deploy" / run.name / "supervisor.log"
        if self.lifecycle.get(run.id).lease_live() or time.monotonic() - self._spawned_at < SPAWN_GRACE_S:
            return str(log_path)
        self._spawned_at = time.monotonic()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = supervisor_env(self.home, self.gateway_url, self.gateway_key)
        with log_path.open("ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "llmops", "deploy", "supervise", run.name],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        return str(log_path)


def _status(run: LifecycleRecord, with_metrics: bool) -> DeploymentStatus:
    data = run.data
    spec = data.get("spec") or {}
    now = time.time()
    replicas = []
    for raw in data.get("replicas", []):
        record = ReplicaRecord.model_validate(raw)
        started = datetime.fromtimestamp(record.started_at, UTC) if record.started_at else None
        numbers = live_metrics(record.url) if with_metrics and record.state == "ready" else {}
        replicas.append(
            ReplicaStatus(
                name=record.name, deployment=run.name, track=record.track, model=record.model,
                model_version=record.model_version, url=record.url, pid=record.pid, port=record.port,
                state=ReplicaState(record.state), restarts=record.restarts, started_at=started,
                uptime_s=now - record.started_at if record.started_at and record.state == "ready" else None,
                detail=record.detail, metrics=numbers,
            )
        )  # fmt: skip
    holder = run.lease_holder if run.lease_live() else None
    detail = None if not run.terminal else f"run {run.state}"
    autoscaler = _autoscaler(data) if spec.get("autoscaling") else None
    return DeploymentStatus(run.name, spec.get("model", "?"), holder, replicas, detail, autoscaler)


def _autoscaler(data: dict[str, Any]) -> AutoscaleStatus | None:
    """The autoscaler's last decision, once it made one."""
    state = AutoscalerState.model_validate(data.get("autoscaler") or {})
    last = state.decision
    if last is None:
        return None
    changed = datetime.fromtimestamp(state.last_change_at, UTC) if state.last_change_at else None
    return AutoscaleStatus(
        current=last.current, desired=last.desired, reason=last.reason, numbers=last.numbers,
        since=datetime.fromtimestamp(last.since, UTC), last_change_at=changed, error=last.error,
    )  # fmt: skip
