"""Active health checks: every replica's health path is probed at an interval.

A replica that fails ``failure_threshold`` probes in a row is taken out of rotation until a probe
succeeds again (one lost probe does not eject it: with a single upstream, such as a Ray Serve
proxy, that would refuse every request for an interval); passive ejection (the circuit breaker in
``routing.Replica``) works alongside on live traffic.
"""

from __future__ import annotations

import asyncio
import contextlib

from llmops.gateway.config import HealthConfig
from llmops.gateway.deployments import DeploymentTable
from llmops.gateway.routing import Replica


class HealthChecker:
    def __init__(self, table: DeploymentTable, config: HealthConfig) -> None:
        self.table = table
        self.config = config
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> None:
        probes: list[tuple[Replica, str]] = [
            (replica, deployment.config.health_path)
            for deployment in self.table.all()
            for replica in deployment.replicas()
        ]
        results = await asyncio.gather(*(self._probe(r, path) for r, path in probes))
        for (replica, _), ok in zip(probes, results, strict=True):
            self._record(replica, ok)

    def _record(self, replica: Replica, ok: bool) -> None:
        if ok:
            replica.probe_failures = 0
            replica.healthy = True
            return
        replica.probe_failures += 1
        if replica.probe_failures >= self.config.failure_threshold:
            replica.healthy = False

    async def _probe(self, replica: Replica, path: str) -> bool:
        try:
            return await asyncio.wait_for(
                replica.upstream.health(path), timeout=max(1.0, self.config.interval_s)
            )
        except (TimeoutError, OSError):
            return False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="replica-health-checks")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.interval_s)
            await self.check_once()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
