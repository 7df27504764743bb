"""What the soak, burst and fault scenarios are built from: real processes on loopback, faults that
are injected for real, a bounded load generator, and the numbers each scenario reports.

- ``start_gateway``: the gateway in its own process (``gateway_process.py``), its RSS, open file
  descriptors and asyncio tasks readable from outside.
- ``start_replica``: the mock OpenAI-compatible replica (``tests/gateway/mock_upstream.py``) in its
  own process, so a scenario can SIGKILL it; cheap, so the CPU goes to the gateway.
- ``faults``: ``RawServer`` (a loopback server that stalls or resets every connection) and
  ``TcpProxy`` (cuts PostgreSQL or Redis off the gateway and brings it back).
- ``load``: ``run_load`` at a fixed rate or from N concurrent clients, bounded in count and time,
  and ``Tally`` of what came back.
- ``report``: one JSON line per scenario to ``LLMOPS_RELIABILITY_REPORT`` (a file) and to stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
MOCK_REPLICA = ROOT / "tests" / "gateway" / "mock_upstream.py"
GATEWAY_PROCESS = Path(__file__).with_name("gateway_process.py")
REPORT_ENV = "LLMOPS_RELIABILITY_REPORT"


# ---- processes ----
@dataclass
class Process:
    popen: subprocess.Popen[str]
    url: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def cpu_s(self) -> float:
        """User plus system CPU seconds the process has used."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fds(self, *, pooled_to: tuple[int, ...] = ()) -> int:
        """Open file descriptors, leaving out TCP connections to the ``pooled_to`` ports: keep-alive
        connections to replicas that the gateway's bounded pool holds more or fewer of with the load."""
        links = [link for fd in os.listdir(f"/proc/{self.pid}/fd") if (link := self._link(fd))]
        pooled = self._sockets_to(set(pooled_to)) if pooled_to else set()
        return sum(1 for link in links if link not in pooled)

    def _link(self, fd: str) -> str | None:
        """What ``fd`` points at, or None when it closed between listing and reading (a live process)."""
        try:
            return os.readlink(f"/proc/{self.pid}/fd/{fd}")
        except FileNotFoundError:
            return None

    def _sockets_to(self, ports: set[int]) -> set[str]:
        found = set()
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{self.pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) in ports:
                    found.add(f"socket:[{fields[9]}]")
        return found

    def tasks(self) -> int:
        return int(self.task_census()["tasks"])

    def task_census(self) -> dict[str, Any]:
        """The gateway's asyncio tasks: ``{"tasks": N, "names": [coroutine qualname, ...]}``."""
        return dict(httpx.get(self.url + "/_reliability/tasks", timeout=60).json())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        self.popen.wait(timeout=20)

    def stop(self) -> str:
        """SIGTERM (a graceful shutdown), then SIGKILL if it lingers; returns what it wrote to stderr."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=60)
        return self.popen.stderr.read() if self.popen.stderr else ""


def _spawn(args: list[str], env: dict[str, str] | None = None, preexec: Any = None) -> Process:
    popen = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", **(env or {})},
        preexec_fn=preexec,
    )
    assert popen.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(popen.stdout, selectors.EVENT_READ)
    if not selector.select(timeout=60):
        popen.kill()
        raise RuntimeError(f"{args[0]} did not start within 60s")
    line = popen.stdout.readline().strip()
    if not line.isdigit():
        popen.kill()
        raise RuntimeError(f"{args[0]} failed to start: {line} {popen.stderr.read() if popen.stderr else ''}")
    return Process(popen, f"http://127.0.0.1:{line}")


def start_replica(name: str, *args: str) -> Process:
    return _spawn([str(MOCK_REPLICA), "--name", name, "--port", "0", *args])


def start_model_replica(model_dir: Path, name: str, *, within_s: float = 180.0) -> Process:
    """``llmops replica`` serving a real (tiny) model on one torch thread, as ``support-bot``."""
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    args = ["-m", "llmops", "replica", "--model", str(model_dir), "--port", str(port), "--threads", "1"]
    args += ["--served-model-name", "support-bot", "--log-level", "warning"]
    popen = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "OMP_NUM_THREADS": "1"},
    )
    process = Process(popen, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and popen.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(process.url + "/readyz", timeout=2).status_code == 200:
                return process
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"replica {name} did not become ready within {within_s:g}s")


def start_gateway(
    config: dict[str, Any],
    folder: Path,
    *,
    env: dict[str, str] | None = None,
    file_size_limit: int | None = None,
) -> Process:
    """The gateway serving ``config``; ``file_size_limit``: RLIMIT_FSIZE of the process in bytes (a
    write past it fails with EFBIG, as on a full disk; Python ignores SIGXFSZ)."""
    path = folder / f"gateway-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(config))

    def limit_files() -> None:
        import resource

        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    process = _spawn([str(GATEWAY_PROCESS), str(path)], env, limit_files if file_size_limit else None)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(process.url + "/healthz", timeout=2).status_code == 200:
                return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the gateway did not become healthy within 30s")


def gateway_config(*upstreams: str, **extra: Any) -> dict[str, Any]:
    deployment = {
        "name": "support-bot",
        "upstreams": [{"url": url} for url in upstreams],
        "price": {"input_usd_per_1k_tokens": 1.0, "output_usd_per_1k_tokens": 2.0},
        **extra.pop("deployment", {}),
    }
    return {
        "allow_loopback_upstreams": True,
        "deployments": [deployment],
        "request_log": {"flush_interval_s": 0.2},
        "health": extra.pop("health", {"interval_s": 1.0, "failure_threshold": 2, "cooldown_s": 2.0}),
        **extra,
    }


def metric(url: str, name: str, key: str) -> float:
    """The sum of every sample of ``name`` on the gateway's /metrics (``key``: developer or admin)."""
    response = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=60)
    response.raise_for_status()
    text = response.text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---- the request log ----
def logged_ids(store: Any) -> set[str]:
    from sqlalchemy import select

    from llmops.store.schema import GatewayRequest

    with store.read() as session:
        return set(session.execute(select(GatewayRequest.id)).scalars())


def wait_for_rows(store: Any, expected: set[str], within_s: float = 15.0) -> set[str]:
    """The logged ids once every expected id is there, or after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        ids = logged_ids(store)
        if expected <= ids or time.monotonic() > deadline:
            return ids
        time.sleep(0.2)


# ---- the report ----
def report(scenario: str, **numbers: Any) -> dict[str, Any]:
    """Emit one scenario's numbers: a JSON line to stdout and, when set, to LLMOPS_RELIABILITY_REPORT."""
    line = json.dumps({"scenario": scenario, **numbers}, sort_keys=False)
    print(f"RELIABILITY {line}")
    target = os.environ.get(REPORT_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    return numbers


@contextlib.contextmanager
def processes() -> Iterator[list[Process]]:
    """Collects processes a scenario starts and stops every one of them when it ends."""
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in started:
            with contextlib.suppress(Exception):
                process.kill()
