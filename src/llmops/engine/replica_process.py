"""A supervised server process: start it, wait until it is healthy, restart it when it dies.

Generic over the command; ``vllm_backend`` uses it to run vLLM's OpenAI server from its own Python
environment. Restarts back off exponentially (``backoff_initial_s`` doubling up to
``backoff_max_s``); a process that stayed up for ``stable_after_s`` resets the backoff; after
``max_restarts`` consecutive failures the supervisor gives up and reports unhealthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import STDOUT

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    startup_timeout_s: float = 600.0
    health_interval_s: float = 1.0
    max_restarts: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    stable_after_s: float = 60.0
    stop_timeout_s: float = 15.0


@dataclass
class ProcessStatus:
    ready: bool = False
    restarts: int = 0
    gave_up: bool = False
    last_exit_code: int | None = None
    pid: int | None = None
    detail: str = "not started"
    next_start_at: float | None = field(default=None)


class ReplicaProcess:
    """Runs ``command`` with ``env``; ``is_healthy`` probes it (an HTTP health check)."""

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        is_healthy: Callable[[], Awaitable[bool]],
        log_path: Path,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.command = command
        self.env = env
        self.is_healthy = is_healthy
        self.log_path = log_path
        self.policy = policy or RestartPolicy()
        self.status = ProcessStatus()
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Start the process and return once it is healthy (raises RuntimeError if it never is)."""
        if self._supervisor is not None:
            return
        await self._launch_until_healthy()
        self._supervisor = asyncio.create_task(self._supervise())

    async def _launch_until_healthy(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.command, env=self.env, stdout=log, stderr=STDOUT, start_new_session=True
            )
        finally:
            log.close()  # the child holds its own descriptor
        self.status.pid = self._process.pid
        self.status.detail = "starting"
        deadline = time.monotonic() + self.policy.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                code = self.status.last_exit_code = self._process.returncode
                raise RuntimeError(f"the process exited with code {code}; see {self.log_path}")
            if await self.is_healthy():
                self.status.ready = True
                self.status.detail = "healthy"
                self._ready.set()
                return
            await asyncio.sleep(self.policy.health_interval_s)
        await self._terminate()
        limit = self.policy.startup_timeout_s
        raise RuntimeError(f"the process was not healthy within {limit}s; see {self.log_path}")

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            assert self._process is not None
            started = time.monotonic()
            code = await self._process.wait()
            self.status.ready = False
            self._ready.clear()
            self.status.last_exit_code = code
            if self._stopping:
                return
            failures = 1 if time.monotonic() - started >= self.policy.stable_after_s else failures + 1
            if not await self._restart_with_backoff(failures, code):
                return

    async def _restart_with_backoff(self, failures: int, code: int) -> bool:
        """One restart attempt after the backoff; False once the supervisor gives up."""
        if failures > self.policy.max_restarts:
            self.status.gave_up = True
            self.status.detail = f"gave up after {self.policy.max_restarts} restarts (last exit code {code})"
            logger.error("replica %s: %s", self.command[0], self.status.detail)
            return False
        delay = min(self.policy.backoff_max_s, self.policy.backoff_initial_s * 2 ** (failures - 1))
        self.status.detail = f"exited with code {code}; restarting in {delay:.1f}s"
        self.status.next_start_at = time.monotonic() + delay
        logger.warning("replica %s %s", self.command[0], self.status.detail)
        await asyncio.sleep(delay)
        self.status.restarts += 1
        try:
            await self._launch_until_healthy()
        except RuntimeError as exc:
            self.status.detail = str(exc)
            # The failed launch left a dead (or terminated) process: the loop counts it as a failure.
        self.status.next_start_at = None
        return True

    def retry_after(self) -> float:
        """Seconds until the process may be back (for Overloaded answers while it restarts)."""
        if self.status.next_start_at is None:
            return 1.0
        return max(1.0, self.status.next_start_at - time.monotonic())

    async def wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        self._stopping = True
        await self._terminate()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        self.status.ready = False
        self.status.detail = "stopped"

    async def _terminate(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        # The child leads its own session: signal the group so its workers go too.
        with contextlib.suppress(ProcessLookupError):
            _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.policy.stop_timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                _signal_group(process.pid, signal.SIGKILL)
            await process.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    import os

    os.killpg(pid, sig)
