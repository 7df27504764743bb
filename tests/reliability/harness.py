"""What the soak, burst and fault scenarios are built from: real processes on loopback, faults that
are injected for real, a bounded load generator, and the numbers each scenario reports.

- ``start_gateway``: the gateway in its own process (``gateway_process.py``), its RSS, open file
  descriptors and asyncio tasks readable from outside.
- ``start_replica``: the mock OpenAI-compatible replica (``tests/gateway/mock_upstream.py``) in its
  own process, so a scenario can SIGKILL it; cheap, so the CPU goes to the gateway.
- ``RawServer``: a loopback TCP server that stalls (accepts, never answers) or resets every
  connection (RST through SO_LINGER 0).
- ``TcpProxy``: a loopback proxy in front of PostgreSQL or Redis; ``cut()`` closes its listener and
  every connection (the service is down for the gateway), ``restore()`` brings it back.
- ``run_load``: requests at a fixed rate (open loop) or from N concurrent clients (closed loop),
  bounded in count and in time; ``Tally`` counts what came back.
- ``report``: one JSON line per scenario to ``LLMOPS_RELIABILITY_REPORT`` (a file) and to stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[2]
MOCK_REPLICA = ROOT / "tests" / "gateway" / "mock_upstream.py"
GATEWAY_PROCESS = Path(__file__).with_name("gateway_process.py")
REPORT_ENV = "LLMOPS_RELIABILITY_REPORT"
CHAT = {"model": "support-bot", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5}


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

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def tasks(self) -> int:
        return int(httpx.get(self.url + "/_reliability/tasks", timeout=60).json()["tasks"])

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


# ---- faults on the wire ----
class RawServer:
    """A TCP server on loopback that misbehaves: ``stall`` keeps every connection open and silent,
    ``reset`` aborts every connection with a TCP RST as soon as the request arrives."""

    def __init__(self, behaviour: str) -> None:
        assert behaviour in ("stall", "reset")
        self.behaviour = behaviour
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.behaviour == "stall":
                self._held.append(conn)
                continue
            with contextlib.suppress(OSError):
                conn.settimeout(2)
                conn.recv(65536)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.listener.close()
        for conn in self._held:
            conn.close()


class TcpProxy:
    """A loopback TCP proxy to ``target`` (host, port) whose service can be cut and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.create_server(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.restore()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=20)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self._call(self._start())

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


# ---- load ----
@dataclass
class Tally:
    """What a stretch of load got back: statuses, latencies, and the request ids of 2xx answers."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    refusal_latencies: list[float] = field(default_factory=list)
    answered_ids: list[str] = field(default_factory=list)
    answered_at: list[tuple[float, float]] = field(default_factory=list)  # (monotonic start, latency)
    retry_after_missing: int = 0
    elapsed: float = 0.0

    @property
    def answered(self) -> int:
        return sum(n for status, n in self.statuses.items() if status < 300)

    @property
    def refused(self) -> int:
        return self.statuses[429] + self.statuses[503]

    @property
    def failed(self) -> int:
        return self.sent - self.answered - self.refused

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)

    def rate(self) -> float:
        return self.answered / self.elapsed if self.elapsed else 0.0

    def p(self, q: float, refusals: bool = False) -> float:
        values = sorted(self.refusal_latencies if refusals else self.latencies)
        return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "refused_429_503": self.refused,
            "failed": self.failed,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
            "p50_ms": round(self.p(0.5) * 1000, 1),
            "p99_ms": round(self.p(0.99) * 1000, 1),
            "answered_per_s": round(self.rate(), 1),
        }


async def _one(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str], tally: Tally,
    timeout_s: float,
) -> None:  # fmt: skip
    tally.sent += 1
    started = time.monotonic()
    try:
        async with session.post(
            url + "/v1/chat/completions", json=body, headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:  # fmt: skip
            payload = await resp.read()
            elapsed = time.monotonic() - started
            tally.statuses[resp.status] += 1
            if resp.status < 300:
                ok = not body.get("stream") or payload.endswith(b"data: [DONE]\n\n")
                if not ok:
                    tally.statuses[resp.status] -= 1
                    tally.errors["stream_ended_with_error_event"] += 1
                    return
                tally.latencies.append(elapsed)
                tally.answered_ids.append(resp.headers["x-request-id"])
                tally.answered_at.append((started, elapsed))
            elif resp.status in (429, 503):
                tally.refusal_latencies.append(elapsed)
                tally.retry_after_missing += "retry-after" not in resp.headers
    except TimeoutError:
        tally.errors["client_timeout"] += 1
    except (aiohttp.ClientError, OSError) as exc:
        tally.errors[type(exc).__name__] += 1


async def run_load(
    url: str,
    key: str,
    *,
    seconds: float,
    rate: float | None = None,
    concurrency: int = 16,
    body: dict[str, Any] | None = None,
    timeout_s: float = 30.0,
    connections: int = 256,
    tally: Tally | None = None,
    stop: asyncio.Event | None = None,
) -> Tally:
    """Send requests for ``seconds``: at ``rate`` per second (open loop, at most ``concurrency`` in
    flight beyond which a due request is counted as not sent), or closed loop from ``concurrency``
    clients. Like a client library, requests share a pool of at most ``connections`` connections
    (a request waiting for one is waiting: its timeout runs). Closed-loop clients also end when
    ``stop`` is set. Bounded: at most ``seconds * (rate or 5000)`` requests, every one with a timeout."""
    tally = tally or Tally()
    body = body or CHAT
    headers = {"Authorization": f"Bearer {key}"}
    limit = int(seconds * (rate or 5000)) + 1
    started = time.monotonic()
    deadline = started + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        if rate is None:

            async def client() -> None:
                while time.monotonic() < deadline and tally.sent < limit and not (stop and stop.is_set()):
                    await _one(session, url, body, headers, tally, timeout_s)

            await asyncio.gather(*(client() for _ in range(concurrency)))
        else:
            in_flight: set[asyncio.Task[None]] = set()
            for index in range(limit):
                due = started + index / rate
                if due >= deadline:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if len(in_flight) >= concurrency:
                    tally.errors["not_sent_client_saturated"] += 1
                    continue
                task = asyncio.create_task(_one(session, url, body, headers, tally, timeout_s))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.wait(in_flight, timeout=timeout_s + 5)
    tally.elapsed = time.monotonic() - started
    return tally


async def calibrate(url: str, key: str, seconds: float = 4.0, concurrency: int = 16) -> tuple[float, Tally]:
    """Capacity in answered requests per second, measured closed loop after a warm-up second, and
    the tally of every request the measurement sent."""
    tally = await run_load(url, key, seconds=1.0, concurrency=concurrency)
    measured = await run_load(url, key, seconds=seconds, concurrency=concurrency)
    assert measured.answered > 0, measured.summary()
    tally.sent += measured.sent
    tally.statuses += measured.statuses
    tally.answered_ids += measured.answered_ids
    return measured.rate(), tally


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
