"""A batched metric writer: logging a metric queues it; a background thread writes batches.

A training loop that logs every step pays one queue append per metric, not one transaction.
``flush()`` writes everything queued so far and returns when it is committed.
"""

from __future__ import annotations

import threading
from datetime import datetime

from sqlalchemy import insert

from llmops.store.database import Store
from llmops.store.schema import RunMetric

FLUSH_INTERVAL_S = 0.5
FLUSH_ROWS = 1000


class MetricWriter:
    def __init__(self, store: Store, run_id: str) -> None:
        self._store = store
        self._run_id = run_id
        self._pending: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=f"metrics-{run_id}", daemon=True)
        self._thread.start()

    def add(self, key: str, value: float, step: int, ts: datetime) -> None:
        row = {"run_id": self._run_id, "key": key, "value": value, "step": step, "ts": ts}
        with self._lock:
            self._pending.append(row)
            full = len(self._pending) >= FLUSH_ROWS
        if full:
            self._wake.set()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # surfaced by close(); the loop keeps the rows queued
                self._error = exc

    def flush(self) -> None:
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                with self._store.transaction() as session:
                    session.execute(insert(RunMetric), batch)
            except Exception:
                with self._lock:
                    self._pending = batch + self._pending
                raise

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join()
        self.flush()
