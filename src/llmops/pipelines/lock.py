"""One lock per pipeline: a lifecycle run with a lease, renewed while the pipeline runs.

A pipeline run is a ``LifecycleRun`` of kind ``pipeline`` (states ``running`` → ``succeeded`` |
``failed`` | ``abandoned``). Creating it is exclusive per pipeline name, so two runs never race on
the same outputs. A driver killed outright stops renewing its lease; the next run waits for that
lease to expire (at once when the dead driver was a process on this machine whose lease has
lapsed), marks the old run ``abandoned`` and starts its own; cached stages make that a resume.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping

from llmops.errors import Conflict
from llmops.store.database import Store
from llmops.store.lifecycle import Lifecycle, LifecycleRecord, StateMachine

PIPELINE_MACHINE = StateMachine(
    kind="pipeline",
    initial="running",
    edges={"running": frozenset({"succeeded", "failed", "abandoned"})},
)


def new_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_alive(holder: str | None) -> bool:
    """False only when the holder was a process on this machine that no longer exists."""
    if not holder:
        return False
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine: trust the lease
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PipelineLock:
    """Take the pipeline's lock (creating its run), keep the lease alive, hand it back at the end."""

    def __init__(
        self, store: Store, *, actor: str, lease_s: float = 30.0, log: Callable[[str], None] = print
    ):
        self.lifecycle = Lifecycle(store, PIPELINE_MACHINE)
        self.actor = actor
        self.lease_s = lease_s
        self.log = log
        self.holder = new_holder()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, name: str, data: Mapping[str, object]) -> tuple[LifecycleRecord, LifecycleRecord | None]:
        """Create the run (taking over an abandoned one); returns it and the abandoned run, if any."""
        abandoned = None
        try:
            record = self._create(name, data)
        except Conflict as exc:
            if exc.code != "run_in_progress":
                raise
            live = self.lifecycle.live(name)
            if live is None:
                record = self._create(name, data)
            else:
                abandoned = self._take_over(live)
                record = self._create(name, data)
        self._thread = threading.Thread(target=self._beat, args=(record.id,), daemon=True)
        self._thread.start()
        return record, abandoned

    def _create(self, name: str, data: Mapping[str, object]) -> LifecycleRecord:
        return self.lifecycle.create(
            name, actor=self.actor, data=dict(data), exclusive=True, holder=self.holder, ttl_s=self.lease_s
        )

    def _take_over(self, live: LifecycleRecord) -> LifecycleRecord:
        if live.lease_live() and holder_alive(live.lease_holder):
            raise Conflict(
                f"pipeline {live.name!r} is already running (run {live.id[:12]}, "
                f"driven by {live.lease_holder}); wait for it to finish",
                code="run_in_progress",
            )
        if live.lease_live() and live.lease_expires_at is not None:
            self.log(
                f"run {live.id[:12]} was interrupted (its driver is gone); waiting for its lease to lapse"
            )
            deadline = time.monotonic() + self.lease_s + 5
            while self.lifecycle.get(live.id).lease_live() and time.monotonic() < deadline:
                time.sleep(0.2)
        self.lifecycle.acquire(live.id, self.holder, ttl_s=self.lease_s)
        reason = "its driver stopped without finishing; a new run resumes from the cached stages"
        return self.lifecycle.transition(live.id, self.holder, "abandoned", actor=self.actor, reason=reason)

    def _beat(self, run_id: str) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.lifecycle.renew(run_id, self.holder, ttl_s=self.lease_s)
            except Conflict:
                self.lost.set()
                return
            except Exception:  # a store hiccup: try again on the next beat, the lease has slack
                continue

    def finish(
        self,
        run_id: str,
        state: str,
        *,
        reason: str,
        numbers: Mapping[str, object],
        data: Mapping[str, object],
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.lifecycle.transition(
            run_id, self.holder, state, actor=self.actor, reason=reason, numbers=numbers, data=data
        )

    def update(self, run_id: str, data: Mapping[str, object]) -> None:
        self.lifecycle.update(run_id, self.holder, data)
