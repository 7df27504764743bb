"""The gateway follows the store: deployment changes made through the admin API, and alias moves.

The admin API writes a deployment's arms (name, registry reference), traffic split and the replicas
added by URL to ``gateway_deployments`` (with an audit event; a split or replica change writes only
the part it changed, so one worker's memory never writes back another's older change; in-process
replicas belong to the process that made them and are never stored), and, for a deployment defined
through the API (``PUT /api/deployments/NAME``: a supervisor registering what it started), its
settings too. Every
worker applies those rows on start and then polls them every ``admin_sync_s`` seconds (in a
thread), so a change reaches all workers within that interval without a restart:
- arms the row names are added (a canary arm not in the config file), arms it does not name are
  removed; replicas that stay keep their state (load, circuit breaker), new ones are built from URLs;
- a deployment whose row appears is added; one defined through the API is removed when its row
  becomes a tombstone (``{"deleted": true}``; absence is never read as deletion, so a worker that
  reads just before another commits a new deployment does not drop it);
- on every tick each arm's registry reference is resolved again, so an alias move
  (``support-bot@production`` now naming version 4) changes the version recorded for new requests.
A request's version is decided when it starts (``forward.Attempt``): in-flight requests keep it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from llmops.errors import LLMOpsError
from llmops.gateway.config import DeploymentConfig
from llmops.gateway.deployments import (
    Arm,
    Deployment,
    DeploymentTable,
    UpstreamFactory,
    VersionResolver,
    resolve_version,
)
from llmops.gateway.routing import Replica
from llmops.store.database import Store
from llmops.store.schema import GatewayDeployment

log = logging.getLogger(__name__)


def deployment_spec(deployment: Deployment, part: str = "all") -> dict[str, Any]:
    """What the admin API persists of a change: ``weights`` (a split), ``replicas`` (the replicas
    added by URL, with the version each serves) or ``all`` (arms, split, replicas and, for a
    deployment defined through the API, its settings)."""
    weights = {"weights": {a.name: a.weight for a in deployment.arms}}
    replicas = {
        "replicas": {
            a.name: [
                {"name": r.name, "url": url, "model_version": r.model_version}
                for r in a.replicas
                if (url := getattr(r.upstream, "url", None)) is not None
            ]
            for a in deployment.arms
        }
    }
    if part == "weights":
        return weights
    if part == "replicas":
        return replicas
    spec: dict[str, Any] = {
        "arms": [
            {"name": a.name, "model": a.model_ref, "upstream_model": a.upstream_model}
            for a in deployment.arms
        ],
        **weights,
        **replicas,
    }
    if deployment.from_store:
        spec["config"] = deployment.config.model_dump(mode="json", exclude={"arms", "model", "upstreams"})
    return spec


def _sync_arms(
    deployment: Deployment, entries: list[dict[str, Any]], resolver: VersionResolver | None
) -> None:
    """Make the deployment's arms exactly ``entries`` (in order), keeping the arms that stay."""
    have = {arm.name: arm for arm in deployment.arms}
    arms = []
    for entry in entries:
        arm = have.get(entry["name"])
        if arm is None:
            arm = Arm(entry["name"], entry["model"], resolve_version(resolver, entry["model"]), 0.0, "")
        elif arm.model_ref != entry["model"]:
            arm.model_ref, arm.model_version = entry["model"], resolve_version(resolver, entry["model"])
        arm.upstream_model = entry.get("upstream_model") or deployment.name
        arms.append(arm)
    deployment.arms = arms


def apply_spec(
    deployment: Deployment,
    spec: dict[str, Any],
    make_upstream: UpstreamFactory,
    resolver: VersionResolver | None = None,
) -> None:
    """Apply a persisted change; an arm's in-process replicas always stay (they have no URL)."""
    if "config" in spec:
        deployment.config = DeploymentConfig.model_validate({"name": deployment.name, **spec["config"]})
        deployment.from_store = True
    if "arms" in spec:
        _sync_arms(deployment, spec["arms"], resolver)
    weights = spec.get("weights", {})
    for arm in deployment.arms:
        if arm.name in weights:
            arm.weight = float(weights[arm.name])
        if arm.name not in spec.get("replicas", {}):
            continue
        have = {r.name: r for r in arm.replicas}
        replicas = [r for r in arm.replicas if getattr(r.upstream, "url", None) is None]
        for entry in spec["replicas"][arm.name]:
            if not entry.get("url"):
                continue  # an in-process replica (rows of older versions stored them): kept above
            replica = have.get(entry["name"])
            if replica is None:
                try:
                    replica = Replica(make_upstream(entry["url"], entry["name"]))
                except LLMOpsError as exc:
                    log.error(
                        "deployment %s: replica %s refused: %s", deployment.name, entry["url"], exc.message
                    )
                    continue
            replica.model_version = entry.get("model_version")
            replicas.append(replica)
        arm.replicas = replicas


def new_deployment(name: str, spec: dict[str, Any]) -> Deployment:
    """An empty deployment from a row written by ``PUT /api/deployments/NAME`` (arms come after)."""
    config = DeploymentConfig.model_validate({"name": name, **spec["config"]})
    return Deployment(config, arms=[], from_store=True)


def read_specs(store: Store) -> dict[str, tuple[datetime, dict[str, Any]]]:
    with store.read() as session:
        rows = session.execute(select(GatewayDeployment)).scalars()
        return {row.name: (row.updated_at, dict(row.spec)) for row in rows}


class OverrideSync:
    """Applies persisted admin changes on start and at an interval, and follows alias moves."""

    def __init__(
        self,
        store: Store,
        table: DeploymentTable,
        make_upstream: UpstreamFactory,
        interval_s: float,
        resolver: VersionResolver | None = None,
    ):
        self.store = store
        self.table = table
        self.make_upstream = make_upstream
        self.interval_s = interval_s
        self.resolver = resolver
        self._seen: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def apply(self, specs: dict[str, tuple[datetime, dict[str, Any]]]) -> None:
        names = set(self.table.names())
        for name, (updated_at, spec) in specs.items():
            if self._seen.get(name) == updated_at:
                continue
            try:
                if spec.get("deleted"):
                    if name in names and self.table.get(name).from_store:
                        self.table.remove(name)
                elif name not in names:
                    if "config" not in spec:
                        continue  # a change to a deployment this gateway's config does not have
                    self.table.add(new_deployment(name, spec))
                apply_spec(self.table.get(name), spec, self.make_upstream, self.resolver)
            except (ValidationError, KeyError, TypeError, ValueError) as exc:
                log.error("deployment %s: stored change not applied: %s", name, exc)
            self._seen[name] = updated_at

    def follow_aliases(self) -> None:
        """Resolve every arm's reference again: an alias move changes the version of new requests."""
        if self.resolver is None:
            return
        for deployment in self.table.all():
            arms = deployment.arms + ([deployment.shadow] if deployment.shadow else [])
            for arm in arms:
                version = resolve_version(self.resolver, arm.model_ref, quiet=True)
                if version != arm.model_version:
                    log.info(
                        "deployment %s arm %s: %s -> %s",
                        deployment.name,
                        arm.name,
                        arm.model_version,
                        version,
                    )
                    arm.model_version = version

    def sync_once(self) -> None:
        self.apply(read_specs(self.store))
        self.follow_aliases()

    def mark_seen(self, name: str, updated_at: datetime) -> None:
        """This worker made the change itself: no need to apply it again."""
        self._seen[name] = updated_at

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="deployment-override-sync")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                # in a thread: reading the store, and validating new replica URLs (DNS), block
                await asyncio.to_thread(self.sync_once)
            except LLMOpsError as exc:
                log.warning("could not read deployment changes: %s", exc.message)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
