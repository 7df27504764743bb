"""Gateway benchmark: added latency and throughput over direct calls, streaming time to first
chunk, and request-log ingest into SQLite and PostgreSQL.

    .venv/bin/python bench/gateway/run.py [--requests 2000] [--postgres URL] [--clients 1,16] [--skip-ingest]

The mock replica (tests/gateway/mock_upstream.py) and the gateway each run in their own process
under uvicorn (uvloop, httptools); the gateway has authentication, rate limits (memory), a budget
and request logging (SQLite, relaxed mode) on. Results are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
from loadgen import Result, run_load  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1]))
from peers import LITELLM, ensure  # noqa: E402

MOCK = ROOT / "tests" / "gateway" / "mock_upstream.py"
REDIS_PREFIX = f"bench:{uuid.uuid4().hex[:8]}:"
CHAT = {"model": "bench", "messages": [{"role": "user", "content": "hello " * 20}], "max_tokens": 16}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start_mock() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, str(MOCK), "--name", "m"], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    url = f"http://127.0.0.1:{int(process.stdout.readline())}"
    wait_up(url + "/healthz")
    return process, url


def start_gateway(
    home: Path, upstream: str, client: str, redis_url: str | None = None, workers: int = 1
) -> tuple[subprocess.Popen[str], str, str]:
    """The gateway in its own process (``workers`` uvicorn workers under it when more than one,
    as ``llmops gateway serve --workers N`` runs them); returns it, its URL and a consumer key."""
    from llmops.security.keys import KeySpec, KeyStore
    from llmops.settings import Settings
    from llmops.store.home import open_home

    settings = Settings(home=home)
    key = (
        KeyStore.from_home(open_home(settings))
        .create(KeySpec(name="bench", rpm=10_000_000, tpm=10_000_000_000, budget_usd=1e9))
        .key
    )
    config = {
        "allow_loopback_upstreams": True,
        "upstream_client": client,
        **(
            {
                "redis_url": redis_url,
                "redis_prefix": f"bench:{uuid.uuid4().hex[:8]}:",
                "limits": {"backend": "redis"},
            }
            if redis_url
            else {}
        ),
        "deployments": [
            {"name": "bench", "upstreams": [{"url": upstream}], "price": {"usd_per_engine_second": 0.001}}
        ],
    }
    port = free_port()
    (home / "bench_gateway.py").write_text(
        "import json\nfrom llmops.gateway.app import create_app\n"
        "from llmops.gateway.config import GatewayConfig\nfrom llmops.settings import Settings\n"
        "from llmops.store.home import open_home\n\n\ndef app():\n"
        f"    config = GatewayConfig.model_validate(json.loads({json.dumps(json.dumps(config))}))\n"
        f"    return create_app(config, open_home(Settings(home={str(home)!r})))\n"
    )
    code = (
        "import uvicorn;from llmops.gateway.http_server import server_options;"
        f"uvicorn.run('bench_gateway:app',factory=True,app_dir={str(home)!r},host='127.0.0.1',port={port},"
        f"workers={workers},log_level='warning',**server_options())"
    )
    process = subprocess.Popen([sys.executable, "-c", code], text=True)
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/healthz")
    return process, url, key


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(result: Result, *, first: bool = False) -> tuple[float, float, float]:
    ok = [s for s in result.samples if s.status == 200]
    assert len(ok) == len(result.samples), f"{len(result.samples) - len(ok)} requests failed"
    values = [s.first_chunk if first else s.latency for s in ok]
    return statistics.median(values) * 1000, percentile(values, 0.99) * 1000, len(ok) / result.wall


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: dict[str, str]
    pid: int | None = None  # its server process, whose CPU time per request is measured


@dataclass(frozen=True)
class Measured:
    p50: float
    p99: float
    rps: float
    cpu_ms: float | None  # CPU of the target's process per request (user + system), ms

    def cells(self) -> str:
        return f"{self.p50:.2f} | {self.p99:.2f} | {self.rps:.0f}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(cpu_seconds(int(child)) for child in children)


async def _measure(target: Target, payload: dict[str, object], clients: int, n: int, first: bool) -> Measured:
    await run_load(
        target.url, "/v1/chat/completions", payload, target.headers, clients, min(n, 200)
    )  # warm-up
    cpu = cpu_seconds(target.pid) if target.pid else 0.0
    result = await run_load(target.url, "/v1/chat/completions", payload, target.headers, clients, n)
    cpu_ms = (cpu_seconds(target.pid) - cpu) * 1000 / n if target.pid else None
    return Measured(*summarise(result, first=first), cpu_ms)


Whole = dict[tuple[str, int], Measured]


async def latency_table(
    targets: list[Target], requests: int, only: set[int] | None = None
) -> tuple[list[str], Whole]:
    """p50 ms | p99 ms | req/s of each target (and CPU ms per request of the gateway process),
    non-streamed then time to first chunk of streams; also the whole-answer measurements by
    (target, clients) for the goals. ``only``: these client counts (default all)."""
    rows: list[str] = []
    whole: Whole = {}
    for title, payload, all_levels, first in (
        ("chat completion, whole answer", CHAT, (1, 16, 64), False),
        ("streamed chat completion, time to first chunk", {**CHAT, "stream": True}, (1, 16), True),
    ):
        levels = [n for n in all_levels if only is None or n in only]
        if not levels:
            continue
        header = " | ".join(f"{t.name} p50 ms | {t.name} p99 ms | {t.name} req/s" for t in targets)
        cpu_targets = [t for t in targets if t.pid]
        header += "".join(f" | {t.name} CPU ms/req" for t in cpu_targets)
        columns = 1 + 3 * len(targets) + len(cpu_targets)
        rows += ["", f"{title}:", "", f"| clients | {header} |", "|---:" * columns + "|"]
        for clients in levels:
            measured = [await _measure(t, payload, clients, requests, first) for t in targets]
            cells = [m.cells() for m in measured]
            cells += [f"{m.cpu_ms:.3f}" for m in measured if m.cpu_ms is not None]
            rows.append(f"| {clients} | " + " | ".join(cells) + " |")
            if not first:
                whole |= {(t.name, clients): m for t, m in zip(targets, measured, strict=True)}
    return rows, whole


GOAL_RATIO, GOAL_ADDED_MS, GOAL_CPU_MS = 30.0, 0.3, 0.3


def goals(whole: Whole) -> list[str]:
    """The gateway's goals that were measured, each with its value and whether it is met."""
    rows = ["", "| goal | measured | target | met |", "|---|---:|---:|---|"]
    if ("gateway", 1) in whole:
        added = whole["gateway", 1].p50 - whole["direct", 1].p50
        rows.append(
            f"| added p50 over direct, 1 client | {added:.2f} ms | <= {GOAL_ADDED_MS} ms | "
            f"{'yes' if added <= GOAL_ADDED_MS else 'no'} |"
        )
    cpu = whole["gateway", 16].cpu_ms if ("gateway", 16) in whole else None
    if cpu is not None:
        rows.append(
            f"| gateway CPU per request, 16 clients | {cpu:.3f} ms | <= {GOAL_CPU_MS} ms | "
            f"{'yes' if cpu <= GOAL_CPU_MS else 'no'} |"
        )
    if ("litellm", 16) in whole and ("gateway", 16) in whole:
        ratio = whole["gateway", 16].rps / whole["litellm", 16].rps
        rows.append(
            f"| req/s over LiteLLM's, 16 clients | {ratio:.1f}x | >= {GOAL_RATIO:.0f}x | "
            f"{'yes' if ratio >= GOAL_RATIO else 'no'} |"
        )
    return rows


def start_litellm(venv: Path, upstream: str, work: Path) -> tuple[subprocess.Popen[str], str, str]:
    """LiteLLM's proxy (its own venv, see shared/PEERS.md): one model, a master key, no database."""
    master = "sk-bench-master"
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/bench\n"
        f"      api_base: {upstream}/v1\n      api_key: anything\n"
        f"general_settings:\n  master_key: {master}\n"
    )
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [str(venv / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--num_workers", "1"],
        env=env,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/health/liveliness")
    return process, url, master


def ingest(url: str, rows: int, batch: int) -> float:
    """Rows per second the request-log writer's batched insert reaches on this database."""
    from llmops.gateway.config import RequestLogConfig
    from llmops.gateway.request_log import RequestLogRecord, RequestLogWriter
    from llmops.store.database import Store
    from llmops.store.schema import utcnow

    store = Store(url)
    store.upgrade()
    writer = RequestLogWriter(
        store, Path(tempfile.mkdtemp()), RequestLogConfig(batch_size=batch, queue_max=rows + 1)
    )
    now = utcnow()
    records = [
        RequestLogRecord(
            id=uuid.uuid4().hex,
            ts=now + timedelta(microseconds=i),
            endpoint="chat",
            key_id="key_bench",
            deployment="bench",
            model_version="bench@1",
            arm="primary",
            replica="r1",
            prompt="hello " * 20,
            completion="tok " * 16,
            prompt_tokens=40,
            completion_tokens=16,
            ttft_ms=3.2,
            latency_ms=9.1,
            cost_usd=0.0001,
        )
        for i in range(rows)
    ]

    async def write_all() -> float:
        await writer.start()
        start = time.perf_counter()
        for record in records:
            await writer.submit(record)
        await writer.close()
        return time.perf_counter() - start

    elapsed = asyncio.run(write_all())
    store.dispose()
    return rows / elapsed


def postgres_schema(admin_url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with create_engine(admin_url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    return f"{admin_url}?options=-csearch_path%3D{schema}", schema


def drop_schema(admin_url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    with create_engine(admin_url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def ingest_table(args: argparse.Namespace, work: Path) -> list[str]:
    lines = ["", "| request-log ingest | rows/s |", "|---|---:|"]
    lines.append(f"| SQLite (WAL) | {ingest(f'sqlite:///{work}/ingest.db', args.rows, 1000):,.0f} |")
    pg_url, schema = postgres_schema(args.postgres)
    try:
        lines.append(f"| PostgreSQL | {ingest(pg_url, args.rows, 1000):,.0f} |")
    finally:
        drop_schema(args.postgres, schema)
    return lines


def _http_tables_sync(args: argparse.Namespace, work: Path) -> list[str]:
    processes: list[subprocess.Popen[str]] = []
    try:
        mock, direct = start_mock()
        processes.append(mock)
        gateway, url, key = start_gateway(
            work / "home", direct, args.upstream_client, args.redis, args.workers
        )
        processes.append(gateway)
        targets = [
            Target("direct", direct, {}),
            Target("gateway", url, {"Authorization": f"Bearer {key}"}, gateway.pid),
        ]
        if args.litellm:
            litellm, litellm_url, master = start_litellm(args.litellm, direct, work)
            processes.append(litellm)
            targets.append(Target("litellm", litellm_url, {"Authorization": f"Bearer {master}"}))
        rows, whole = asyncio.run(latency_table(targets, args.requests, args.clients))
        return rows + goals(whole)
    finally:
        if args.redis:
            import redis

            client = redis.Redis.from_url(args.redis)
            for name in client.scan_iter(REDIS_PREFIX + "*"):
                client.delete(name)
        for process in reversed(processes):
            process.terminate()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="Requests per concurrency level.")
    parser.add_argument("--rows", type=int, default=100_000, help="Rows for the ingest benchmark.")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--clients",
        type=lambda text: {int(n) for n in text.split(",")},
        help="Only these client counts, comma-separated (of 1, 16, 64; default all).",
    )
    parser.add_argument("--skip-ingest", action="store_true", help="No request-log ingest benchmark.")
    parser.add_argument("--upstream-client", default="h1", choices=["h1", "aiohttp", "httpx"])
    parser.add_argument("--workers", type=int, default=1, help="Gateway worker processes.")
    parser.add_argument("--redis", help="Redis URL: limits and budgets in Redis instead of memory.")
    parser.add_argument("--litellm", type=Path, help="A venv with litellm[proxy] to measure side by side.")
    parser.add_argument(
        "--with-litellm",
        action="store_true",
        help="Measure LiteLLM's proxy side by side, installing it into bench/.envs/litellm if missing.",
    )
    args = parser.parse_args()
    if args.with_litellm and args.litellm is None:
        args.litellm = ensure(LITELLM).parent.parent
    work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    os.environ["LLMOPS_HOME"] = str(work / "home")
    lines = [
        f"gateway benchmark, {os.cpu_count()} CPUs, {args.requests} requests per level, "
        f"upstream client {args.upstream_client}, limits {'redis' if args.redis else 'memory'}, "
        f"{args.workers} gateway worker(s); load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "",
    ]
    if not args.skip_http:
        lines += _http_tables_sync(args, work)
    if not args.skip_ingest:
        lines += ingest_table(args, work)
    lines.append(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
