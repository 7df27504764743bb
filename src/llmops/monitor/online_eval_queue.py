"""``OnlineEvalQueue``: online evaluation off the request path.

``submit`` decides sampling (a hash, no I/O) and puts a sampled response on a bounded queue; one
worker task scores queued responses in a thread (a judge makes blocking HTTP calls), one at a time.
A full queue drops the response and counts it (``llmops_online_eval_dropped_total``): scoring is
best-effort and must never slow serving down. ``submit`` must be called on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from llmops.monitor.online_eval import OnlineEvalRow, OnlineEvaluator

log = logging.getLogger(__name__)
RowListener = Callable[[list[OnlineEvalRow]], None]


@dataclass(frozen=True)
class ServedResponse:
    """What the gateway hands over after answering a request."""

    request_id: str
    model_version: str
    prompt: str
    completion: str


class OnlineEvalQueue:
    """Samples served responses and scores them in the background."""

    def __init__(
        self, evaluator: OnlineEvaluator, *, queue_max: int = 1000, on_rows: RowListener | None = None
    ) -> None:
        self.evaluator = evaluator
        self.on_rows = on_rows
        self._queue: asyncio.Queue[ServedResponse] | None = None
        self._queue_max = queue_max
        self._task: asyncio.Task[None] | None = None

    def submit(self, response: ServedResponse) -> bool:
        """Queue ``response`` if it is sampled; False when not sampled or the queue is full."""
        if not self.evaluator.should_score(response.request_id):
            return False
        prometheus = self.evaluator.prometheus
        if prometheus is not None:
            prometheus.online_sampled.labels(model_version=response.model_version).inc()
        queue = self._ensure_worker()
        try:
            queue.put_nowait(response)
        except asyncio.QueueFull:
            if prometheus is not None:
                prometheus.online_dropped.inc()
            return False
        return True

    async def drain(self) -> None:
        """Wait until every queued response is scored."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        """Stop the worker (queued responses are abandoned)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _ensure_worker(self) -> asyncio.Queue[ServedResponse]:
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self._queue_max)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._work(self._queue))
        return self._queue

    async def _work(self, queue: asyncio.Queue[ServedResponse]) -> None:
        while True:
            item = await queue.get()
            try:
                rows = await asyncio.to_thread(
                    self.evaluator.score, item.request_id, item.model_version, item.prompt, item.completion
                )
                if self.on_rows is not None:
                    self.on_rows(rows)
            except Exception:  # one bad response must not stop scoring
                log.exception("online evaluation of request %s failed", item.request_id)
            finally:
                queue.task_done()
