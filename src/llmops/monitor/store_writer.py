"""``MonitorStoreWriter``: monitoring rows written to the store off the request path, in batches.

Feedback, online-evaluation results, alert state changes and drift reports are small and much
rarer than requests, so this writer is simpler than the gateway's request log: ``submit`` appends a
row to a bounded in-memory queue and returns (never touching the database); a background task
merges queued rows in one transaction every ``flush_interval_s`` (or at ``batch_size`` rows) in a
worker thread. Rows are merged by primary key, so an alert written when it fires and again when it
resolves ends as one row. While the database is unavailable rows stay queued and are retried with
backoff; a full queue drops new rows (counted in ``llmops_monitor_store_dropped_total``). A row
the database refuses is logged and dropped so it cannot block the others. Rows still queued when
the process dies are lost: at most ``flush_interval_s`` of monitoring data in normal operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Sequence

from llmops.errors import StoreUnavailable
from llmops.monitor.metrics import MonitorMetrics
from llmops.store.database import Store
from llmops.store.schema import Base

log = logging.getLogger(__name__)
RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)


class MonitorStoreWriter:
    """Batched background writer of monitoring rows; see the module docstring for its guarantees."""

    def __init__(
        self,
        store: Store,
        *,
        flush_interval_s: float = 0.5,
        batch_size: int = 500,
        queue_max: int = 10_000,
        metrics: MonitorMetrics | None = None,
    ) -> None:
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self.queue_max = queue_max
        self.metrics = metrics
        self._queue: deque[Base] = deque()
        self._lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._flushing = asyncio.Lock()  # one batch at a time keeps a row's updates in order

    def submit(self, row: Base) -> bool:
        """Queue ``row`` (any thread); False when the queue is full and the row was dropped."""
        with self._lock:
            if len(self._queue) >= self.queue_max:
                if self.metrics is not None:
                    self.metrics.store_dropped.inc()
                log.warning("monitor store queue is full; dropping a %s row", type(row).__name__)
                return False
            self._queue.append(row)
            full = len(self._queue) >= self.batch_size
        if full and self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)
        return True

    def pending(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        """Start the background task on the running loop."""
        if self._task is None or self._task.done():
            self._closing = False
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            self._task = self._loop.create_task(self._run(), name="monitor-store-writer")

    async def flush(self) -> bool:
        """Write everything queued now; False if the database is unavailable."""
        async with self._flushing:
            while self._queue:
                if not await self._write_batch():
                    return False
        return True

    async def close(self) -> None:
        """Write what is queued (a few retries while the database is down), then stop."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._queue:
            log.error("monitor store: %d rows could not be written before shutdown", len(self._queue))

    async def _run(self) -> None:
        assert self._wake is not None
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            self._wake.clear()
            ok = await self.flush()
            failures = 0 if ok else failures + 1
            if self._closing and (ok or failures > len(RETRY_DELAYS)):
                return
            if not ok:
                await asyncio.sleep(RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1])

    async def _write_batch(self) -> bool:
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
        try:
            await asyncio.to_thread(self._merge, batch)
        except StoreUnavailable as exc:
            log.warning("monitor store: %d rows not written yet (%s); will retry", len(batch), exc.message)
            with self._lock:
                self._queue.extendleft(reversed(batch))
            return False
        except Exception as exc:  # some row is refused: write the others one by one
            log.error("monitor store: a batch was refused (%s); writing rows one by one", type(exc).__name__)
            try:
                await asyncio.to_thread(self._merge_one_by_one, batch)
            except StoreUnavailable:
                with self._lock:  # merging is idempotent: the rows already written are merged again
                    self._queue.extendleft(reversed(batch))
                return False
        if self.metrics is not None:
            self.metrics.store_written.inc(len(batch))
        return True

    def _merge(self, rows: Sequence[Base]) -> None:
        with self.store.transaction() as session:
            for row in rows:
                session.merge(row)

    def _merge_one_by_one(self, rows: Sequence[Base]) -> None:
        for row in rows:
            try:
                self._merge([row])
            except StoreUnavailable:
                raise
            except Exception:
                log.exception("monitor store: dropping a %s row the database refused", type(row).__name__)
