"""Deployment changes made through the admin API, shared by every worker through the store.

The admin API writes a deployment's traffic split and its replicas added by URL to
``gateway_deployments`` (each change only the part it changed)
(with an audit event); every worker applies those rows on start and then polls them every
``admin_sync_s`` seconds (in a thread), so a change reaches all workers within that interval.
Replicas that stay keep their state (load, circuit breaker); new ones are built from their URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select

from llmops.errors import LLMOpsError
from llmops.gateway.deployments import Deployment, DeploymentTable, UpstreamFactory
from llmops.gateway.routing import Replica
from llmops.store.database import Store
from llmops.store.schema import GatewayDeployment

log = logging.getLogger(__name__)


def deployment_spec(deployment: Deployment, part: str) -> dict[str, Any]:
    """What the admin API persists of a change: ``weights`` (a split) or ``replicas`` (the replicas
    added by URL; in-process replicas belong to the process that made them and are never stored)."""
    if part == "weights":
        return {"weights": {a.name: a.weight for a in deployment.arms}}
    return {
        "replicas": {
            a.name: [
                {"name": r.name, "url": url}
                for r in a.replicas
                if (url := getattr(r.upstream, "url", None)) is not None
            ]
            for a in deployment.arms
        }
    }


def apply_spec(deployment: Deployment, spec: dict[str, Any], make_upstream: UpstreamFactory) -> None:
    """Apply a persisted change; an arm's in-process replicas always stay (they have no URL)."""
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
                continue  # written by an older version: an in-process replica, kept above
            if entry["name"] in have:
                replicas.append(have[entry["name"]])
                continue
            try:
                replicas.append(Replica(make_upstream(entry["url"], entry["name"])))
            except LLMOpsError as exc:
                log.error("deployment %s: replica %s refused: %s", deployment.name, entry["url"], exc.message)
        arm.replicas = replicas


def read_specs(store: Store) -> dict[str, tuple[datetime, dict[str, Any]]]:
    with store.read() as session:
        rows = session.execute(select(GatewayDeployment)).scalars()
        return {row.name: (row.updated_at, dict(row.spec)) for row in rows}


class OverrideSync:
    """Applies persisted admin changes on start and at an interval."""

    def __init__(
        self, store: Store, table: DeploymentTable, make_upstream: UpstreamFactory, interval_s: float
    ):
        self.store = store
        self.table = table
        self.make_upstream = make_upstream
        self.interval_s = interval_s
        self._seen: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def apply(self, specs: dict[str, tuple[datetime, dict[str, Any]]]) -> None:
        names = set(self.table.names())
        for name, (updated_at, spec) in specs.items():
            if name in names and self._seen.get(name) != updated_at:
                apply_spec(self.table.get(name), spec, self.make_upstream)
                self._seen[name] = updated_at

    def sync_once(self) -> None:
        self.apply(read_specs(self.store))

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
