"""Admission control: a bounded waiting queue, by requests and by prompt tokens.

A request counts from admission until it first leaves the waiting queue (or ends before that).
When a new request would overflow either bound it is refused with ``Overloaded`` and a
``retry_after`` estimated from how fast the queue has been draining. Thread-safe: the event loop
admits, the engine thread releases.
"""

from __future__ import annotations

import threading
import time

from llmops.errors import Overloaded

_MIN_RETRY_S = 1.0
_MAX_RETRY_S = 60.0


class AdmissionControl:
    """Counts queued requests and tokens against ``max_requests`` and ``max_tokens``."""

    def __init__(self, max_requests: int, max_tokens: int) -> None:
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self._lock = threading.Lock()
        self._requests = 0
        self._tokens = 0
        # Exponentially weighted drain rate of queued prompt tokens (tokens per second).
        self._drain_rate = 0.0
        self._last_release = time.monotonic()

    @property
    def queued_requests(self) -> int:
        return self._requests

    @property
    def queued_tokens(self) -> int:
        return self._tokens

    def admit(self, num_tokens: int) -> None:
        """Reserve room for a request of ``num_tokens`` prompt tokens or raise ``Overloaded``."""
        with self._lock:
            if self._requests + 1 > self.max_requests:
                reason = f"the engine's waiting queue is full ({self.max_requests} requests)"
            elif self._tokens + num_tokens > self.max_tokens:
                reason = f"the engine's waiting queue is full ({self.max_tokens} prompt tokens)"
            else:
                self._requests += 1
                self._tokens += num_tokens
                return
            retry_after = self._retry_after_locked(num_tokens)
        raise Overloaded(f"{reason}; retry later", retry_after=retry_after, code="engine_overloaded")

    def release(self, num_tokens: int) -> None:
        """A request left the queue (started, or ended while waiting)."""
        now = time.monotonic()
        with self._lock:
            self._requests = max(0, self._requests - 1)
            self._tokens = max(0, self._tokens - num_tokens)
            elapsed = max(now - self._last_release, 1e-3)
            self._last_release = now
            instant = num_tokens / elapsed
            self._drain_rate = instant if self._drain_rate == 0.0 else 0.8 * self._drain_rate + 0.2 * instant

    def _retry_after_locked(self, num_tokens: int) -> float:
        if self._drain_rate <= 0.0:
            return _MIN_RETRY_S
        # Time until the queue has drained enough to take this request at the observed rate.
        backlog = self._tokens + num_tokens - self.max_tokens
        seconds = max(backlog, self._tokens / max(self._requests, 1)) / self._drain_rate
        return min(_MAX_RETRY_S, max(_MIN_RETRY_S, seconds))
