"""``DeployTarget``: the verbs every place a deployment runs offers (local processes, Kubernetes, Ray
Serve), so the rollout controller never knows which one it drives.

A deployment's replicas belong to *tracks*: ``stable`` serves the deployment's model; a rollout
starts a candidate on ``canary`` (or ``shadow``) beside it. In the gateway each track is an arm of
the deployment with the track's name; a new track's arm starts at weight 0, and traffic moves to it
only through the gateway's split (the rollout controller's job, not the target's).

Contract of every implementation:
- ``apply`` makes the track run ``model`` (default the spec's) on ``replicas`` replicas (default
  ``spec.replicas.count``), each ready and registered in the gateway before it returns; a failure
  stops what this call started and raises an ``LLMOpsError`` naming what failed (nothing
  half-applied). Applying a new model version to a running track replaces its replicas: the new
  ones become ready and are registered before the old ones are drained.
- ``drain`` deregisters replicas from the gateway (no new requests) and waits for their in-flight
  requests to finish within ``spec.drain.grace_s``; they keep running until ``delete`` or ``scale``.
- ``delete`` drains and stops a track (or, with no track, the whole deployment) and deregisters it.
- Every change is an audit event; state lives in the store, so a restarted target adopts what runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from llmops.deploy.spec import DeploymentSpec

STABLE = "stable"
CANARY = "canary"
SHADOW = "shadow"
TRACKS = (STABLE, CANARY, SHADOW)


class ReplicaState(StrEnum):
    STARTING = "starting"  # process started, not ready yet
    READY = "ready"  # ready and registered in the gateway
    UNHEALTHY = "unhealthy"  # liveness probes failing; restart pending
    RESTARTING = "restarting"  # crashed; waiting out its backoff
    CRASH_LOOP = "crash_loop"  # failed max_restarts times in a row: left stopped, reported
    DRAINING = "draining"  # deregistered; in-flight requests finishing
    STOPPED = "stopped"


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica as a target reports it."""

    name: str
    deployment: str
    track: str
    model: str  # the reference it was started from (support-bot@production)
    model_version: str  # the version it serves (support-bot@3)
    url: str | None
    pid: int | None
    port: int | None
    state: ReplicaState
    restarts: int = 0
    started_at: datetime | None = None
    uptime_s: float | None = None
    detail: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # live numbers from /metrics, when asked


@dataclass(frozen=True)
class AutoscaleStatus:
    """A target's autoscaler: its last decision on the stable track and since when it holds."""

    current: int
    desired: int
    reason: str  # load above target, p95 TTFT above the SLO, load below target, steady, cooldown
    numbers: dict[str, float]
    since: datetime
    last_change_at: datetime | None = None
    error: str | None = None  # the last change failed to apply


@dataclass(frozen=True)
class DeploymentStatus:
    """A deployment on a target: its spec's name, who drives it, and every replica."""

    name: str
    model: str
    supervisor: str | None  # the process holding the deployment's lease, if live
    replicas: list[ReplicaStatus]
    detail: str | None = None
    autoscaler: AutoscaleStatus | None = None  # None: the deployment does not autoscale

    def track(self, track: str) -> list[ReplicaStatus]:
        return [r for r in self.replicas if r.track == track]


@runtime_checkable
class DeployTarget(Protocol):
    """Render and apply deployments; the same verbs for every target (see the module docstring)."""

    def render(self, spec: DeploymentSpec, *, track: str = STABLE, model: str | None = None) -> str:
        """What ``apply`` would run, as text (commands for local processes, manifests for a cluster)."""
        ...

    def apply(
        self,
        spec: DeploymentSpec,
        *,
        track: str = STABLE,
        model: str | None = None,
        replicas: int | None = None,
    ) -> DeploymentStatus:
        """Make ``track`` run ``model`` on ``replicas`` ready, registered replicas (arm weight 0 if new)."""
        ...

    def status(self, name: str, *, live_metrics: bool = False) -> DeploymentStatus:
        """Every replica of deployment ``name``; with ``live_metrics``, numbers from their /metrics."""
        ...

    def scale(self, name: str, replicas: int, *, track: str = STABLE) -> DeploymentStatus:
        """Run ``replicas`` replicas on ``track`` (within the spec's min..max for stable)."""
        ...

    def drain(self, name: str, *, track: str | None = None) -> DeploymentStatus:
        """Deregister the track's replicas (all with None) and let their in-flight requests finish."""
        ...

    def delete(self, name: str, *, track: str | None = None) -> None:
        """Drain and stop a track, or the whole deployment with None, and deregister it."""
        ...
