"""What the Ray target has deployed, in the store: one lifecycle run (kind ``ray-deployment``) per
deployment holding its spec and, per track, the Serve application serving it.

Any process can drive a verb (``llmops deploy scale --target ray`` is a new process each time), so
each verb takes the run's lease for its duration (two verbs on one deployment never interleave) and
records its outcome as a transition: every change is an audit event with its numbers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from llmops.deploy.spec import DeploymentSpec, parse_spec
from llmops.errors import NotFound
from llmops.store.home import Home
from llmops.store.lifecycle import Lifecycle, LifecycleRecord, StateMachine

RAY_DEPLOYMENT = StateMachine(
    kind="ray-deployment",
    initial="applying",
    edges={
        "applying": frozenset({"running", "failed", "deleted"}),
        "running": frozenset({"running", "deleted"}),
    },
)


class TrackApp(BaseModel):
    """The Serve application serving one track."""

    app: str
    route_prefix: str
    url: str  # what the gateway calls: Serve's proxy + the route prefix
    model: str  # the reference applied (support-bot@production)
    model_version: str  # what it resolved to (support-bot@3)
    replicas: int  # the count applied: Serve's initial replicas, or the pinned count after `scale`
    pinned: bool = False


class RayDeployments:
    """The runs of the Ray target's deployments (see the module docstring)."""

    def __init__(self, home: Home, *, lease_s: float) -> None:
        self.home = home
        self.lifecycle = Lifecycle(home.store, RAY_DEPLOYMENT)
        self.lease_s = lease_s
        self.holder = f"ray-target:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def live(self, name: str) -> LifecycleRecord:
        run = self.lifecycle.live(name)
        if run is None:
            raise NotFound(
                f"no deployment {name!r} on the ray target; "
                "`llmops deploy apply FILE --target ray` starts it",
                param="name",
            )
        return run

    def names(self) -> list[str]:
        return sorted({r.name for r in self.lifecycle.recent(limit=500) if not r.terminal})

    @contextmanager
    def hold(self, name: str, *, create: bool = False) -> Iterator[LifecycleRecord]:
        """The deployment's run under this process's lease (a new run with ``create``)."""
        run = self.lifecycle.live(name)
        if run is None and create:
            run = self.lifecycle.create(
                name, actor=self.home.actor, data={"apps": {}}, reason="deploy apply --target ray",
                holder=self.holder, ttl_s=self.lease_s,
            )  # fmt: skip
        elif run is None:
            run = self.live(name)
        else:
            run = self.lifecycle.acquire(run.id, self.holder, ttl_s=self.lease_s)
        try:
            yield run
        finally:
            current = self.lifecycle.get(run.id)
            if current.state == RAY_DEPLOYMENT.initial:  # the first apply failed
                self.lifecycle.transition(
                    run.id, self.holder, "failed", actor=self.home.actor, reason="apply failed"
                )
            elif not current.terminal:
                self.lifecycle.release(run.id, self.holder)

    def record(
        self,
        run: LifecycleRecord,
        state: str,
        *,
        reason: str,
        spec: DeploymentSpec | None = None,
        apps: dict[str, TrackApp] | None = None,
        numbers: dict[str, Any] | None = None,
    ) -> None:
        data: dict[str, Any] = {}
        if spec is not None:
            data["spec"] = spec.model_dump(mode="json", exclude_unset=True)
        if apps is not None:
            data["apps"] = {track: app.model_dump() for track, app in apps.items()}
        self.lifecycle.transition(
            run.id, self.holder, state, actor=self.home.actor, reason=reason, numbers=numbers, data=data
        )


def spec_of(run: LifecycleRecord) -> DeploymentSpec:
    return parse_spec(run.data.get("spec"), source=f"ray deployment {run.name}")


def apps_of(run: LifecycleRecord) -> dict[str, TrackApp]:
    return {track: TrackApp.model_validate(raw) for track, raw in run.data.get("apps", {}).items()}
