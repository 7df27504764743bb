"""Webhook delivery off the caller's path: bounded queues, retries with exponential backoff.

``WebhookSender.submit`` only puts the payload on the target's bounded queue and returns (False
when the queue is full: the notification is dropped and recorded). One worker task per target
URL posts the payloads in order, so a "resolved" never overtakes its "firing", and a target that is
down delays only its own queue. A delivery is retried on connection errors, timeouts, 429 and 5xx,
waiting ``backoff_s * 2**(attempt-1)`` (capped) between attempts; any other 4xx fails at once.
Every delivery ends as a ``DeliveryRecord`` (delivered, failed or dropped). ``submit`` must be
called on the event loop's thread; the first call creates the HTTP client and the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from llmops.monitor.alert_rules import WebhookTarget
from llmops.monitor.metrics import MonitorMetrics

log = logging.getLogger(__name__)
DeliveryOutcome = Literal["delivered", "failed", "dropped"]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class DeliveryRecord:
    """How one notification ended."""

    url: str
    key: str
    outcome: DeliveryOutcome
    attempts: int
    error: str | None
    finished_at: float


@dataclass(frozen=True)
class _Job:
    target: WebhookTarget
    payload: Mapping[str, Any]
    key: str


@dataclass
class _Channel:
    queue: asyncio.Queue[_Job]
    task: asyncio.Task[None]


class _Retryable(Exception):
    """Internal: an attempt failed in a way worth retrying."""


class _Permanent(Exception):
    """Internal: the target refused the notification; retrying would not help."""


class WebhookSender:
    """Posts JSON payloads to webhook targets in the background."""

    def __init__(
        self,
        *,
        queue_max: int = 100,
        metrics: MonitorMetrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        history_size: int = 500,
    ) -> None:
        self.queue_max = queue_max
        self.metrics = metrics
        self._transport = transport
        self._sleep = sleep
        self._client: httpx.AsyncClient | None = None
        self._channels: dict[str, _Channel] = {}
        self._deliveries: deque[DeliveryRecord] = deque(maxlen=history_size)
        self._pending = 0

    def submit(self, target: WebhookTarget, payload: Mapping[str, Any], *, key: str = "") -> bool:
        """Queue ``payload`` for ``target`` without waiting; False (and recorded) when the queue is full."""
        channel = self._channel(target.url)
        try:
            channel.queue.put_nowait(_Job(target, payload, key))
        except asyncio.QueueFull:
            log.warning("webhook queue for %s is full; dropping a notification", target.url)
            self._finish(_Job(target, payload, key), "dropped", 0, "queue full")
            return False
        self._pending += 1
        return True

    @property
    def pending(self) -> int:
        """Notifications queued or being delivered."""
        return self._pending

    def deliveries(self) -> list[DeliveryRecord]:
        """Finished deliveries, oldest first (the last ``history_size``)."""
        return list(self._deliveries)

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued notification is finished; False if ``timeout_s`` passed first."""
        joins = [channel.queue.join() for channel in self._channels.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*joins), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop the workers (queued notifications are abandoned) and close the HTTP client."""
        for channel in self._channels.values():
            channel.task.cancel()
        for channel in self._channels.values():
            with contextlib.suppress(asyncio.CancelledError):
                await channel.task
        self._channels.clear()
        self._pending = 0
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _channel(self, url: str) -> _Channel:
        channel = self._channels.get(url)
        if channel is None:
            queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=self.queue_max)
            task = asyncio.get_running_loop().create_task(self._work(queue))
            channel = self._channels[url] = _Channel(queue, task)
        return channel

    async def _work(self, queue: asyncio.Queue[_Job]) -> None:
        while True:
            job = await queue.get()
            try:
                await self._deliver(job)
            except Exception:  # the worker must outlive any one delivery
                log.exception("webhook delivery to %s crashed", job.target.url)
                self._finish(job, "failed", 0, "internal error")
            finally:
                self._pending -= 1
                queue.task_done()

    async def _deliver(self, job: _Job) -> None:
        error: str | None = None
        for attempt in range(1, job.target.max_attempts + 1):
            try:
                await self._post(job)
            except _Retryable as exc:
                error = str(exc)
                self._count_attempt("retry")
            except _Permanent as exc:
                self._count_attempt("error")
                self._finish(job, "failed", attempt, str(exc))
                return
            else:
                self._count_attempt("ok")
                self._finish(job, "delivered", attempt, None)
                return
            if attempt < job.target.max_attempts:
                await self._sleep(job.target.backoff(attempt))
        log.warning("webhook %s failed after %d attempts: %s", job.target.url, job.target.max_attempts, error)
        self._finish(job, "failed", job.target.max_attempts, error)

    async def _post(self, job: _Job) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self._transport)
        try:
            response = await self._client.post(
                job.target.url,
                json=dict(job.payload),
                headers=job.target.headers,
                timeout=job.target.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}")
        if response.status_code >= 300:
            raise _Permanent(f"HTTP {response.status_code}: {response.text[:200]}")

    def _count_attempt(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_attempts.labels(result=result).inc()

    def _finish(self, job: _Job, outcome: DeliveryOutcome, attempts: int, error: str | None) -> None:
        self._deliveries.append(
            DeliveryRecord(job.target.url, job.key, outcome, attempts, error, time.time())
        )
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(outcome=outcome).inc()
