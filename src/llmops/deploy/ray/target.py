"""``RayTarget``: the ``DeployTarget`` verbs on Ray Serve.

``apply`` deploys the track's model version as a Serve application (``application.py``) with
Serve's autoscaling between ``replicas.min`` and ``replicas.max``, waits until it is RUNNING and its
readiness path answers through Serve's HTTP proxy, then registers the version's route as the track's
upstream in the gateway (keys, limits, logging and rollouts stay there; Serve balances over its
replicas). A version replaced on a track is deregistered, given ``drain.deregister_wait_s``, then
deleted (Serve lets its in-flight requests finish within ``drain.grace_s``). ``scale`` pins the
replica count (autoscaling returns with the next ``apply``) by deploying again, which Serve treats as
new code: the replicas are replaced, new ones ready before old ones stop. ``drain`` deregisters;
``delete`` deregisters and deletes the applications. What was deployed lives in the store (``state.py``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import httpx

from llmops.deploy.gateway_client import GatewayAdmin, ensure_arm
from llmops.deploy.ray.cluster import check_placeable, connect, import_ray
from llmops.deploy.ray.state import RAY_DEPLOYMENT, RayDeployments, TrackApp, apps_of, spec_of
from llmops.deploy.spec import DeploymentSpec
from llmops.deploy.target import STABLE, TRACKS, DeploymentStatus, ReplicaState, ReplicaStatus
from llmops.errors import InvalidInput, LLMOpsError, NotFound, UpstreamError
from llmops.registry.client import Registry
from llmops.store.home import Home

# Serve's replica states as the DeployTarget reports them
STATES = {
    "STARTING": ReplicaState.STARTING,
    "UPDATING": ReplicaState.STARTING,
    "RECOVERING": ReplicaState.RESTARTING,
    "RUNNING": ReplicaState.READY,
    "STOPPING": ReplicaState.DRAINING,
    "PENDING_MIGRATION": ReplicaState.DRAINING,
}
POLL_S = 0.5


class RayTarget:
    """Deployments on a Ray cluster through Serve (see the module docstring)."""

    def __init__(
        self,
        home: Home,
        resolve: Callable[[str], str],
        gateway: GatewayAdmin | None,
        *,
        store_env: dict[str, str],
    ) -> None:
        self.home, self.resolve, self.gateway, self.store_env = home, resolve, gateway, store_env
        self.runs = RayDeployments(home, lease_s=900.0)

    @classmethod
    def from_home(cls, home: Home) -> RayTarget:
        """The gateway the settings name (``LLMOPS_GATEWAY_URL``, ``LLMOPS_GATEWAY_KEY``)."""
        import_ray()
        settings = home.settings
        key = settings.gateway_key.get_secret_value() if settings.gateway_key else None
        gateway = GatewayAdmin(settings.gateway_url, key) if settings.gateway_url else None
        registry = Registry.from_home(home)
        env = {
            "LLMOPS_HOME": str(settings.resolved_home()),
            "LLMOPS_DATABASE_URL": settings.resolved_database_url(),
        }
        return cls(home, lambda ref: registry.get(ref).ref, gateway, store_env=env)

    # -- the DeployTarget verbs ---------------------------------------------------------------

    def render(self, spec: DeploymentSpec, *, track: str = STABLE, model: str | None = None) -> str:
        from llmops.deploy.ray.application import app_name, autoscaling_config, route_prefix

        ref = model or spec.model
        ray = spec.targets.ray
        lines = [
            f"# {spec.name} track {track}: Ray Serve application on {ray.address}, serving {ref}",
            f"application: {app_name(spec.name, track, ref)}",
            f"route_prefix: {route_prefix(spec.name, track, ref)}",
            f"upstream: {ray.served_url()}{route_prefix(spec.name, track, ref)}",
            f"ray_actor_options: num_cpus={spec.resources.threads} num_gpus={spec.gpus_per_replica}",
            f"max_ongoing_requests: {ray.autoscaling.max_ongoing_requests}",
            f"autoscaling_config: {autoscaling_config(spec, spec.replicas.count)}",
        ]
        return "\n".join(lines)

    def apply(
        self,
        spec: DeploymentSpec,
        *,
        track: str = STABLE,
        model: str | None = None,
        replicas: int | None = None,
    ) -> DeploymentStatus:
        from llmops.deploy.ray.application import app_name, route_prefix

        _check_track(track)
        connect(spec.targets.ray)
        check_placeable(spec)
        ref = model or spec.model
        version = self.resolve(ref)
        count = spec.replicas.count if replicas is None else replicas
        count = max(spec.replicas.min, min(count, spec.replicas.max))
        with self.runs.hold(spec.name, create=True) as run:
            apps = apps_of(run) if run.state != RAY_DEPLOYMENT.initial else {}
            prefix = route_prefix(spec.name, track, version)
            new = TrackApp(
                app=app_name(spec.name, track, version), route_prefix=prefix,
                url=spec.targets.ray.served_url() + prefix, model=ref, model_version=version, replicas=count,
            )  # fmt: skip
            old = apps.get(track)
            self._deploy(spec, new, fresh=old is None or old.app != new.app)
            if self.gateway is not None:
                ensure_arm(self.gateway, spec, track, ref)
                self.gateway.add_replica(spec.name, track, new.url, new.app, version)
            if old is not None and old.app != new.app:
                self._retire(spec, track, old)
            apps[track] = new
            self.runs.record(
                run, "running", reason=f"apply {track} {version}", spec=spec, apps=apps,
                numbers={"track": track, "model_version": version, "replicas": count},
            )  # fmt: skip
        return self.status(spec.name)

    def status(self, name: str, *, live_metrics: bool = False) -> DeploymentStatus:
        lifecycle = self.runs.lifecycle
        run = lifecycle.live(name) or lifecycle.latest(name) or self.runs.live(name)  # NotFound names the fix
        spec = spec_of(run)
        if run.terminal:
            return DeploymentStatus(name, spec.model, None, [], detail=f"run {run.state}")
        connect(spec.targets.ray)
        _, serve = import_ray()
        serving = serve.status().applications
        replicas: list[ReplicaStatus] = []
        for track, app in sorted(apps_of(run).items()):
            replicas += _replicas(name, track, app, serving.get(app.app))
        return DeploymentStatus(name, spec.model, None, replicas)

    def scale(self, name: str, replicas: int, *, track: str = STABLE) -> DeploymentStatus:
        _check_track(track)
        with self.runs.hold(name) as run:
            spec, apps = spec_of(run), apps_of(run)
            if track == STABLE and not spec.replicas.min <= replicas <= spec.replicas.max:
                raise InvalidInput(
                    f"replicas: {replicas} lies outside replicas.min..max "
                    f"({spec.replicas.min}..{spec.replicas.max})",
                    param="replicas",
                )
            if track not in apps:
                raise InvalidInput(
                    f"deployment {name!r} has no {track} track on the ray target", param="track"
                )
            connect(spec.targets.ray)
            apps[track] = apps[track].model_copy(update={"replicas": replicas, "pinned": True})
            self._deploy(spec, apps[track], fresh=False)
            self.runs.record(
                run, "running", reason=f"scale {track} to {replicas}", apps=apps,
                numbers={"track": track, "replicas": replicas},
            )  # fmt: skip
        return self.status(name)

    def drain(self, name: str, *, track: str | None = None) -> DeploymentStatus:
        with self.runs.hold(name) as run:
            spec, apps = spec_of(run), apps_of(run)
            self._deregister(spec, {t: a for t, a in apps.items() if track in (None, t)})
            self.runs.record(run, "running", reason=f"drain {track or 'all tracks'}")
        return self.status(name)

    def delete(self, name: str, *, track: str | None = None) -> None:
        with self.runs.hold(name) as run:
            spec, apps = spec_of(run), apps_of(run)
            gone = {t: a for t, a in apps.items() if track in (None, t)}
            self._deregister(spec, gone)
            if gone:
                connect(spec.targets.ray)
                _, serve = import_ray()
                for app in gone.values():
                    serve.delete(app.app)
            if self.gateway is not None:
                with contextlib.suppress(NotFound):  # already gone from the gateway counts as deleted
                    if track is None:
                        self.gateway.delete_deployment(name, reason="deploy delete")
                    else:
                        self.gateway.delete_arm(name, track)
            kept = {t: a for t, a in apps.items() if t not in gone}
            state = "deleted" if track is None else "running"
            self.runs.record(run, state, reason=f"delete {track or 'deployment'}", apps=kept)

    def names(self) -> list[str]:
        return self.runs.names()

    # -- Serve ----------------------------------------------------------------------------------

    def _deploy(self, spec: DeploymentSpec, app: TrackApp, *, fresh: bool) -> None:
        """Run ``app`` on Serve and wait until it answers its readiness path through the proxy; a
        fresh application that fails is deleted again (nothing half-applied)."""
        from llmops.deploy.ray.application import build_application

        _, serve = import_ray()
        env = self.store_env if spec.targets.ray.store_env else {}
        application = build_application(
            spec, app.model_version, replicas=app.replicas, pinned=app.pinned, env=env
        )
        target = serve.RunTarget(target=application, name=app.app, route_prefix=app.route_prefix)
        serve.run_many([target], wait_for_applications_running=False)
        try:
            _wait_running(serve, spec, app)
        except LLMOpsError:
            if fresh:
                with contextlib.suppress(Exception):
                    serve.delete(app.app)
            raise

    def _retire(self, spec: DeploymentSpec, track: str, old: TrackApp) -> None:
        self._deregister(spec, {track: old})
        _, serve = import_ray()
        serve.delete(old.app)

    def _deregister(self, spec: DeploymentSpec, apps: dict[str, TrackApp]) -> None:
        if self.gateway is None or not apps:
            return
        for track, app in apps.items():
            self.gateway.remove_replica(spec.name, track, app.app)
        time.sleep(spec.drain.deregister_wait_s)


def _check_track(track: str) -> None:
    if track not in TRACKS:
        raise InvalidInput(f"track: {track!r} is not one of {', '.join(TRACKS)}", param="track")


def _wait_running(serve: Any, spec: DeploymentSpec, app: TrackApp) -> None:
    deadline = time.monotonic() + spec.readiness.timeout_s
    status = "NOT_STARTED"
    while time.monotonic() < deadline:
        found = serve.status().applications.get(app.app)
        status = found.status.value if found is not None else "NOT_STARTED"
        if status == "DEPLOY_FAILED":
            raise UpstreamError(
                f"ray serve application {app.app} failed to deploy: {found.message[:500]}",
                code="deploy_failed",
            )
        if status == "RUNNING" and _ready(app.url + spec.readiness.path):
            return
        time.sleep(POLL_S)
    raise UpstreamError(
        f"ray serve application {app.app} not ready after readiness.timeout_s={spec.readiness.timeout_s:g} "
        f"(status {status}); see `serve status` on the cluster",
        code="deploy_failed",
    )


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def _replicas(name: str, track: str, app: TrackApp, found: Any) -> list[ReplicaStatus]:
    """One ``ReplicaStatus`` per Serve replica of ``app`` (Serve reports counts per state)."""
    if found is None:
        return [_replica(name, track, app, app.app, ReplicaState.STOPPED, "application not on Serve")]
    detail = f"serve {found.status.value}" + (" (pinned)" if app.pinned else "")
    replicas = []
    for deployment in found.deployments.values():
        for state, count in sorted(deployment.replica_states.items(), key=lambda item: str(item[0])):
            state_name = getattr(state, "value", str(state))
            replica_state = STATES.get(state_name, ReplicaState.STOPPED)
            for index in range(count):
                label = f"{app.app}#{state_name.lower()}{index}"
                replicas.append(_replica(name, track, app, label, replica_state, detail))
    return replicas


def _replica(
    name: str, track: str, app: TrackApp, label: str, state: ReplicaState, detail: str
) -> ReplicaStatus:
    return ReplicaStatus(
        name=label, deployment=name, track=track, model=app.model, model_version=app.model_version,
        url=app.url, pid=None, port=None, state=state, detail=detail,
    )  # fmt: skip
