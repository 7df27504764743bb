"""The replicas of one deployment, by track, and the changes the supervisor makes to them.

``apply`` starts what a track needs and only then retires what it replaces; when anything fails
the replicas this call started are stopped and deregistered again (nothing half-applied) and the
error names what failed (the model, the port, the replica that never became ready and its log, the
gateway address).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.deploy.gates import require_gate
from llmops.deploy.gateway_client import ensure_arm
from llmops.deploy.processes import (
    ReplicaRecord,
    is_running,
    launch,
    pick_port,
    probe,
    replica_command,
    stop,
)
from llmops.deploy.spec import DeploymentSpec, OpenAIBackend, VLLMBackend
from llmops.errors import InvalidInput, LLMOpsError
from llmops.registry.client import Registry

if TYPE_CHECKING:
    from llmops.deploy.supervisor import Supervisor


@dataclass
class ReplicaSet:
    supervisor: Supervisor
    spec: DeploymentSpec | None
    records: list[ReplicaRecord] = field(default_factory=list)
    tracks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, supervisor: Supervisor, data: dict[str, Any]) -> ReplicaSet:
        spec = DeploymentSpec.model_validate(data["spec"]) if data.get("spec") else None
        records = [ReplicaRecord.model_validate(r) for r in data.get("replicas", [])]
        return cls(supervisor, spec, records, dict(data.get("tracks", {})))

    def dump(self) -> dict[str, Any]:
        return {
            "spec": self.spec.model_dump(mode="json", exclude_unset=True) if self.spec else None,
            "tracks": self.tracks,
            "replicas": [r.model_dump(mode="json") for r in self.records],
        }

    @property
    def _spec(self) -> DeploymentSpec:
        if self.spec is None:
            raise LLMOpsError("the deployment has no spec yet; apply one first")
        return self.spec

    def track_spec(self, track: str) -> DeploymentSpec:
        """How ``track``'s replicas run: a candidate track keeps the spec it was applied with (a
        rollout may serve its candidate another way, e.g. on an external OpenAI-compatible server)."""
        raw = self.tracks.get(track, {}).get("spec")
        return DeploymentSpec.model_validate(raw) if raw and track != "stable" else self._spec

    # -- adoption ---------------------------------------------------------------------------------

    def adopt(self) -> None:
        """Keep the replicas that still run (re-registered); restart the ones that died meanwhile."""
        for record in self.records:
            if record.state in ("crash_loop", "stopped"):
                continue
            if record.pid is None and record.port is None:  # an external (openai) replica
                continue
            if is_running(record):
                if record.state == "ready":
                    self._register(record)
                continue
            record.state, record.next_start_at = "restarting", time.time()
            record.detail = "not running when the supervisor started"

    # -- the gateway ------------------------------------------------------------------------------

    def _register(self, record: ReplicaRecord) -> None:
        gateway = self.supervisor.gateway
        if gateway is not None:
            gateway.add_replica(self._spec.name, record.track, record.url, record.name, record.model_version)

    def _deregister(self, record: ReplicaRecord) -> None:
        gateway = self.supervisor.gateway
        if gateway is not None:
            # unreachable now: the gateway's health checks eject the replica anyway
            with contextlib.suppress(LLMOpsError):
                gateway.remove_replica(self._spec.name, record.track, record.name)

    def _ensure_gateway_arm(self, spec: DeploymentSpec, track: str, model: str) -> None:
        gateway = self.supervisor.gateway
        if gateway is not None:
            ensure_arm(gateway, spec, track, model)

    # -- starting and stopping --------------------------------------------------------------------

    def _env(self, spec: DeploymentSpec) -> dict[str, str]:
        threads = str(spec.resources.threads)
        return {**self.supervisor.env, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}

    def _log_path(self, name: str) -> Path:
        return self.supervisor.home.settings.resolved_home() / "deploy" / self._spec.name / f"{name}.log"

    def _launch(self, record: ReplicaRecord) -> None:
        spec = self.track_spec(record.track)
        local = None
        if isinstance(spec.backend, VLLMBackend):
            local = Registry.from_home(self.supervisor.home).local_path(record.model_version)
        assert record.port is not None
        command = replica_command(spec, record.model_version, local, record.port)
        log_path = self._log_path(record.name)
        record.pid, record.pid_started = launch(command, self._env(spec), log_path)
        record.log, record.state, record.started_at = str(log_path), "starting", time.time()

    def _new_record(self, track: str, model: str, version: str, index: int, taken: set[int]) -> ReplicaRecord:
        spec = self.track_spec(track)
        name = f"{spec.name}-{track}-{index}"
        host = spec.network.host
        if isinstance(spec.backend, OpenAIBackend):
            url = spec.backend.urls[index % len(spec.backend.urls)].rstrip("/")
            return ReplicaRecord(
                name=name, track=track, model=model, model_version=version, host=host, url=url
            )
        offset = {"stable": 0, "canary": spec.replicas.max, "shadow": 2 * spec.replicas.max}.get(track, 0)
        wanted = spec.network.base_port + offset + index if spec.network.base_port else None
        port = pick_port(host, wanted, name)
        while port in taken:
            port = pick_port(host, None, name)
        return ReplicaRecord(
            name=name,
            track=track,
            model=model,
            model_version=version,
            host=host,
            port=port,
            url=f"http://{host}:{port}",
        )

    def _wait_ready(self, started: list[ReplicaRecord]) -> None:
        """Every replica in ``started`` ready and registered, or an error naming the one that is not."""
        spec = self._spec
        deadline = time.monotonic() + spec.readiness.timeout_s
        pending = [r for r in started if r.state != "ready"]
        while pending:
            self.supervisor.renew()
            for record in list(pending):
                if record.pid is not None and not is_running(record):
                    raise LLMOpsError(
                        f"replica {record.name} ({record.model_version}) exited while starting; "
                        f"see {record.log}"
                    )
                if probe(record.url + self.track_spec(record.track).readiness.path, 2.0):
                    self._register(record)
                    record.state, record.detail = "ready", None
                    pending.remove(record)
            if pending and time.monotonic() > deadline:
                names = ", ".join(f"{r.name} at {r.url}{spec.readiness.path} (log {r.log})" for r in pending)
                raise LLMOpsError(f"replica never became ready within {spec.readiness.timeout_s:g}s: {names}")
            if pending:
                time.sleep(spec.readiness.interval_s)

    def _start(
        self, track: str, model: str, version: str, count: int, first_index: int
    ) -> list[ReplicaRecord]:
        """Start ``count`` replicas and wait until they are ready; stops them all again on failure."""
        started: list[ReplicaRecord] = []
        taken = {r.port for r in self.records if r.port}
        try:
            for index in range(first_index, first_index + count):
                record = self._new_record(track, model, version, index, taken)
                taken.add(record.port or 0)
                started.append(record)
                if record.port is not None:
                    self._launch(record)
            self._wait_ready(started)
        except BaseException:
            self._retire(started, wait=False)
            raise
        return started

    def _retire(self, records: list[ReplicaRecord], *, wait: bool = True) -> None:
        """Drain and stop: deregister, let every gateway worker notice, then stop the processes."""
        spec = self._spec
        for record in records:
            self._deregister(record)
            record.state = "draining"
        if wait and any(r.pid for r in records):
            time.sleep(spec.drain.deregister_wait_s)
        for record in records:
            self.supervisor.renew()
            stop(record, spec.drain.grace_s)
            record.state = "stopped"
        self.records = [r for r in self.records if r not in records]

    # -- the operations -----------------------------------------------------------------------------

    def apply(
        self, spec: DeploymentSpec, track: str, model: str | None, replicas: int | None
    ) -> dict[str, Any]:
        if self.spec is not None and spec.name != self.spec.name:
            raise InvalidInput(
                f"spec name {spec.name!r} differs from deployment {self.spec.name!r}", param="name"
            )
        previous, previous_track = self.spec, self.tracks.get(track)
        if track == "stable" or self.spec is None:
            self.spec = spec
        own = {} if track == "stable" else {"spec": spec.model_dump(mode="json", exclude_unset=True)}
        ref = model or spec.model
        registry = Registry.from_home(self.supervisor.home)
        try:
            # a stable track may start a version nobody evaluated; a candidate's gates must have passed
            version = require_gate(registry, ref, spec.rollout, unevaluated_ok=track == "stable")
            self._ensure_gateway_arm(spec, track, ref)
            self.tracks[track] = {**(previous_track or {}), **own}
            count = replicas if replicas is not None else spec.replicas.count
            current = [r for r in self.records if r.track == track]
            same = [r for r in current if r.model_version == version]
            old = [r for r in current if r.model_version != version]
            new = self._start(track, ref, version, max(0, count - len(same)), self._next_index(track))
        except BaseException:
            self.spec = previous
            if previous_track is None:
                self.tracks.pop(track, None)
            else:
                self.tracks[track] = previous_track
            raise
        self.records += new
        surplus = same[count:] if len(same) > count else []
        self._retire(old + surplus)
        self.tracks[track] = {"model": ref, "model_version": version, "count": count, **own}
        return {
            "track": track,
            "model": ref,
            "model_version": version,
            "replicas": count,
            "started": len(new),
        }

    def _next_index(self, track: str) -> int:
        indexes = [int(r.name.rsplit("-", 1)[1]) for r in self.records if r.track == track]
        return max(indexes, default=-1) + 1

    def scale(self, track: str, count: int) -> dict[str, Any]:
        spec = self._spec
        if track == "stable" and not spec.replicas.min <= count <= spec.replicas.max:
            raise InvalidInput(
                f"replicas: {count} is outside {spec.replicas.min}..{spec.replicas.max} (replicas.min/max "
                "of the spec); change the spec to go beyond",
                param="replicas",
            )
        info = self.tracks.get(track)
        if info is None:
            raise InvalidInput(f"deployment {spec.name!r} has no track {track!r}", param="track")
        current = [r for r in self.records if r.track == track and r.state != "crash_loop"]
        before = len(current)
        if count > before:
            self.records += self._start(
                track, info["model"], info["model_version"], count - before, self._next_index(track)
            )
        else:
            self._retire(sorted(current, key=lambda r: r.name)[count:])
        info["count"] = count
        return {"track": track, "replicas_before": before, "replicas": count}

    def rolling_restart(self, track: str | None) -> dict[str, Any]:
        """One replica at a time: a fresh one ready and registered before the old one drains."""
        restarted = 0
        for record in [r for r in list(self.records) if track is None or r.track == track]:
            if record.pid is None and record.port is None:
                continue
            info = self.tracks[record.track]
            fresh = self._start(
                record.track, info["model"], info["model_version"], 1, self._next_index(record.track)
            )
            self.records += fresh
            self._retire([record])
            restarted += 1
        return {"restarted": restarted}

    def drain(self, track: str | None) -> dict[str, Any]:
        records = [r for r in self.records if track is None or r.track == track]
        for record in records:
            self._deregister(record)
            record.state = "draining"
        return {"drained": len(records)}

    def delete(self, track: str | None) -> dict[str, Any]:
        records = [r for r in self.records if track is None or r.track == track]
        self._retire(records)
        gateway, spec = self.supervisor.gateway, self._spec
        if gateway is not None:
            try:
                if track is None:
                    gateway.delete_deployment(spec.name, reason="deploy delete")
                elif track != "stable":
                    gateway.delete_arm(spec.name, track)
            except LLMOpsError as exc:
                if exc.status_code != 404:
                    raise
        for name in [track] if track else list(self.tracks):
            self.tracks.pop(name, None)
        return {"stopped": len(records), "track": track or "all"}

    # -- crashes ----------------------------------------------------------------------------------

    def crashed(self, record: ReplicaRecord, why: str) -> None:
        spec = self._spec
        self._deregister(record)
        up = time.time() - (record.started_at or time.time())
        record.failures = 1 if up >= spec.restart.stable_after_s else record.failures + 1
        if record.failures > spec.restart.max_restarts:
            record.state = "crash_loop"
            record.detail = (
                f"{why}; gave up after {spec.restart.max_restarts} restarts in a row (see {record.log})"
            )
            self.supervisor.record(
                f"replica {record.name} is in a crash loop",
                {"replica": record.name, "restarts": record.restarts},
            )
            return
        delay = min(spec.restart.backoff_max_s, spec.restart.backoff_initial_s * 2 ** (record.failures - 1))
        record.state, record.next_start_at = "restarting", time.time() + delay
        record.detail = f"{why}; restarting in {delay:.1f}s"
        self.supervisor.record(
            f"replica {record.name} crashed: {why}",
            {"replica": record.name, "failures": record.failures, "backoff_s": delay},
        )

    def restart(self, record: ReplicaRecord) -> None:
        record.restarts += 1
        record.next_start_at = None
        try:
            if record.port is None:  # an external (openai) replica: nothing to start, probe it again
                record.state, record.started_at = "starting", time.time()
            elif not is_running(record):
                self._launch(record)
                record.state = "starting"
        except LLMOpsError as exc:
            self.crashed(record, exc.message)

    def check_start(self, record: ReplicaRecord) -> None:
        spec = self.track_spec(record.track)
        if probe(record.url + spec.readiness.path, 2.0):
            try:
                self._register(record)
            except LLMOpsError:
                return  # the gateway is away: try again next tick
            record.state, record.detail = "ready", None
            self.supervisor.record(
                f"replica {record.name} ready again", {"replica": record.name, "restarts": record.restarts}
            )
        elif time.time() - (record.started_at or 0) > spec.readiness.timeout_s:
            stop(record, 0)
            self.crashed(record, f"not ready within {spec.readiness.timeout_s:g}s")
