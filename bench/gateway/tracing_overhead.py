"""What Prometheus metrics and OpenTelemetry tracing cost the gateway, in requests per second.

    .venv/bin/python bench/gateway/tracing_overhead.py [--requests 1500] [--clients 16] [--rounds 8]

Four gateways (one uvicorn worker each, ``server_options()``, the set-up of ``run.py``: keys,
limits, a budget and the request log on) run side by side in front of one mock replica:

* ``baseline``: metrics on, tracing off (the default);
* ``no-metrics``: the gateway's per-request metric updates are no-ops (``create_app(metrics=False)``);
* ``tracing``: metrics on, tracing on, every request sampled, spans exported over OTLP/HTTP to a
  loopback sink (a process that answers 200 and counts export calls);
* ``tracing-10%``: the same with ``LLMOPS_TRACE_SAMPLE_RATIO=0.1`` (unsampled requests still get a
  context and send a ``traceparent``, but record nothing).

Rounds visit the gateways in turn (each round starting at the next one), so drifting load on the
machine hits all of them alike; the median req/s per gateway over the rounds gives the ratios.
Targets: metrics cost <= 3%, tracing cost <= 10% of requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import run_load
from run import CHAT, cpu_seconds, free_port, start_mock, summarise, wait_up

METRICS_TARGET, TRACING_TARGET = 0.03, 0.10

SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
calls = 0
class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        global calls
        self.rfile.read(int(self.headers.get("content-length", "0")))
        calls += 1
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        body = str(calls).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)
server.serve_forever()
"""


def start_sink() -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SINK, str(port)], text=True)
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/count")
    return process, url


def start_gateway(
    home: Path, upstream: str, *, metrics: bool, otlp: str | None, ratio: float
) -> tuple[subprocess.Popen[str], str, str]:
    """A gateway process with its own home; returns it, its URL and a consumer key."""
    from llmops.security.keys import KeySpec, KeyStore
    from llmops.settings import Settings
    from llmops.store.home import open_home

    spec = KeySpec(name="bench", rpm=10_000_000, tpm=10_000_000_000, budget_usd=1e9)
    key = KeyStore.from_home(open_home(Settings(home=home))).create(spec).key
    config = {
        "allow_loopback_upstreams": True,
        "upstream_client": "h1",
        "deployments": [
            {"name": "bench", "upstreams": [{"url": upstream}], "price": {"usd_per_engine_second": 0.001}}
        ],
    }
    port = free_port()
    code = (
        "import json,uvicorn;from llmops.gateway.app import create_app;"
        "from llmops.gateway.http_server import server_options;"
        "from llmops.gateway.config import GatewayConfig;from llmops.settings import Settings;"
        "from llmops.store.home import open_home;"
        f"app=create_app(GatewayConfig.model_validate(json.loads({json.dumps(json.dumps(config))})),"
        f"open_home(Settings(home={str(home)!r})),metrics={metrics!r});"
        f"uvicorn.run(app,host='127.0.0.1',port={port},log_level='warning',**server_options())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_OTLP")}
    env["LLMOPS_HOME"] = str(home)
    if otlp:
        env |= {"LLMOPS_OTLP_ENDPOINT": otlp, "LLMOPS_TRACE_SAMPLE_RATIO": str(ratio)}
    process = subprocess.Popen([sys.executable, "-c", code], text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/healthz")
    return process, url, key


async def measure(
    gateways: dict[str, tuple[str, str, int]], clients: int, requests: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Requests/s and CPU ms per request of each gateway process, one value per round."""
    rps: dict[str, list[float]] = {name: [] for name in gateways}
    cpu: dict[str, list[float]] = {name: [] for name in gateways}
    for url, key, _ in gateways.values():  # warm-up
        await run_load(url, "/v1/chat/completions", CHAT, {"Authorization": f"Bearer {key}"}, clients, 300)
    names = list(gateways)
    for round_ in range(rounds):  # each round starts at the next gateway: no one is always first
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            url, key, pid = gateways[name]
            headers = {"Authorization": f"Bearer {key}"}
            before = cpu_seconds(pid)
            result = await run_load(url, "/v1/chat/completions", CHAT, headers, clients, requests)
            cpu[name].append((cpu_seconds(pid) - before) * 1000 / requests)
            failed = Counter(s.status for s in result.samples if s.status != 200)
            if failed:
                raise RuntimeError(f"{name}: requests failed, by status: {dict(failed)}")
            rps[name].append(summarise(result)[2])
    return rps, cpu


def table(
    rps: dict[str, list[float]], cpu: dict[str, list[float]], args: argparse.Namespace, exports: int
) -> str:
    median = {name: statistics.median(values) for name, values in rps.items()}
    cpu_ms = {name: statistics.median(values) for name, values in cpu.items()}
    rows = [
        f"{os.cpu_count()} CPUs, {args.clients} clients, {args.requests} requests x {args.rounds} rounds "
        f"per gateway, load average {os.getloadavg()[0]:.1f} at the end; {exports} OTLP export calls",
        "",
        "| gateway | metrics | tracing | median req/s | min | max | median CPU ms/req |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    setup = {
        "baseline": ("on", "off"),
        "no-metrics": ("off", "off"),
        "tracing": ("on", "on, ratio 1.0"),
        "tracing-10%": ("on", "on, ratio 0.1"),
    }
    for name, values in rps.items():
        on = setup[name]
        rows.append(
            f"| {name} | {on[0]} | {on[1]} | {median[name]:.0f} | {min(values):.0f} | {max(values):.0f} "
            f"| {cpu_ms[name]:.3f} |"
        )
    rows += ["", "| cost | req/s ratio | cost | target | met |", "|---|---:|---:|---:|---|"]
    for label, ratio, target in (
        ("metrics (baseline / no-metrics)", median["baseline"] / median["no-metrics"], METRICS_TARGET),
        ("tracing, all sampled (tracing / baseline)", median["tracing"] / median["baseline"], TRACING_TARGET),
        (
            "tracing, 10% sampled (tracing-10% / baseline)",
            median["tracing-10%"] / median["baseline"],
            TRACING_TARGET,
        ),
    ):
        cost = 1 - ratio
        rows.append(
            f"| {label} | {ratio:.3f} | {cost:.1%} | <= {target:.0%} | {'yes' if cost <= target else 'no'} |"
        )
    extra = cpu_ms["baseline"] / cpu_ms["no-metrics"] - 1
    rows += [
        "",
        f"Metrics in CPU per request (baseline / no-metrics - 1): {extra:.1%} "
        f"({(cpu_ms['baseline'] - cpu_ms['no-metrics']) * 1000:.0f} us a request).",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500, help="Requests per gateway per round.")
    parser.add_argument("--clients", type=int, default=16, help="Concurrent keep-alive clients.")
    parser.add_argument("--rounds", type=int, default=8, help="Rounds over the four gateways.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gateway-overhead-"))
    processes: list[subprocess.Popen[str]] = []
    try:
        mock, upstream = start_mock()
        sink, sink_url = start_sink()
        processes += [mock, sink]
        gateways: dict[str, tuple[str, str, int]] = {}
        for name, metrics, otlp, ratio in (
            ("baseline", True, None, 1.0),
            ("no-metrics", False, None, 1.0),
            ("tracing", True, sink_url, 1.0),
            ("tracing-10%", True, sink_url, 0.1),
        ):
            process, url, key = start_gateway(work / name, upstream, metrics=metrics, otlp=otlp, ratio=ratio)
            processes.append(process)
            gateways[name] = (url, key, process.pid)
        rps, cpu = asyncio.run(measure(gateways, args.clients, args.requests, args.rounds))
        exports = int(httpx.get(sink_url + "/count", timeout=5).text)
        print(table(rps, cpu, args, exports))
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
