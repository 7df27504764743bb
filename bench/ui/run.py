"""Dashboard benchmark: server time of every page on a store with 100,000 request-log rows.

    PYTHONPATH=src:. .venv/bin/python bench/ui/run.py [--rows 100000] [--loads 20]

Seeds a SQLite store with the dashboard tests' seed (tiny models, runs, evaluations, a rollout,
keys, a pipeline run and a loop cycle) plus ``--rows`` request-log rows over the last 24 hours
(4 versions, 50 keys, 2% errors, 100-character prompts), then loads each page ``--loads`` times as
an admin through the ASGI app in-process (no network: the server's work only) and prints p50/p95
per page, and each page's p50 as a multiple of the p50 of a static file (the floor of the stack,
measured in the same run). Target: every page under 300 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select
from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.dashboard.seed import Seeded, seed_store  # noqa: E402

from llmops.dashboard import create_dashboard  # noqa: E402
from llmops.settings import Settings  # noqa: E402
from llmops.store.home import Home, open_home  # noqa: E402
from llmops.store.schema import GatewayRequest, utcnow  # noqa: E402

TARGET_MS = 300.0
WORDS = ("refund", "order", "delivery", "account", "password", "invoice", "shipping", "return", "late")
VERSIONS = ("bot@1", "bot@2", "bot@3", "helper@1")


def add_requests(home: Home, count: int, key_ids: list[str], seed: int = 0) -> None:
    """``count`` request-log rows spread over the last 24 hours, inserted in batches."""
    rng, now = random.Random(seed), utcnow()
    words = WORDS
    batch: list[dict[str, object]] = []
    for i in range(count):
        version = VERSIONS[i % len(VERSIONS)]
        latency = rng.lognormvariate(5.0, 0.5)
        batch.append({
            "id": f"req-{uuid.uuid4().hex[:16]}", "ts": now - timedelta(seconds=rng.uniform(0, 86_000)),
            "key_id": key_ids[i % len(key_ids)], "user": f"u-{i % 500}", "endpoint": "chat",
            "deployment": version.split("@")[0], "model_version": version, "arm": "stable",
            "replica": "r1", "shadow_of": None, "stream": True,
            "prompt": " ".join(rng.choice(words) for _ in range(14)), "completion": "an answer " * 5,
            "prompt_tokens": 20, "completion_tokens": 12, "ttft_ms": latency / 4, "latency_ms": latency,
            "status": 502 if rng.random() < 0.02 else 200, "cost_usd": 0.0001, "cache_hit": False,
            "error": None,
        })  # fmt: skip
        if len(batch) == 5000:
            with home.store.transaction() as session:
                session.execute(insert(GatewayRequest), batch)
            batch = []
    if batch:
        with home.store.transaction() as session:
            session.execute(insert(GatewayRequest), batch)


def pages(seeded: Seeded) -> list[tuple[str, str]]:
    request_id = seeded.xss_request_id
    deep = row_id_at(seeded.home, 199 * 50 - 1)  # the last row of page 199: the cursor of page 200
    return [
        ("static file (baseline)", "/ui/static/dashboard.css"),
        ("overview, 24h", "/ui/"),
        ("overview, 7d", "/ui/?window=7d"),
        ("requests, page 1", "/ui/requests"),
        ("requests, page 200", f"/ui/requests?before={deep}"),
        ("requests, by version", "/ui/requests?version=bot%402"),
        ("requests, text search", "/ui/requests?text=refund%20order"),
        ("request detail", f"/ui/requests/{request_id}"),
        ("models", "/ui/models"),
        ("model version", "/ui/models/bot/2"),
        ("runs", "/ui/runs"),
        ("run", f"/ui/runs/{seeded.train_run_id}"),
        ("evaluations", "/ui/evals"),
        ("evaluation", f"/ui/evals/{seeded.eval_run_ids[1]}"),
        ("deployments", "/ui/deployments"),
        ("rollout", f"/ui/rollouts/{seeded.rollout_id}"),
        ("monitoring", "/ui/monitoring"),
        ("keys", "/ui/keys"),
        ("audit", "/ui/audit"),
        ("pipelines", "/ui/pipelines"),
        ("loop", "/ui/loop"),
    ]


def row_id_at(home: Home, position: int) -> str:
    """The id of the request at ``position`` (0-based) of the log, newest first."""
    query = select(GatewayRequest.id).order_by(GatewayRequest.ts.desc(), GatewayRequest.id.desc())
    with home.store.read() as session:
        return str(session.execute(query.offset(position).limit(1)).scalar_one())


def login(client: TestClient, key: str) -> None:
    client.get("/ui/login")
    token = client.cookies.get("llmops_login")
    response = client.post("/ui/login", data={"key": key, "csrf": token}, follow_redirects=False)
    assert response.status_code == 303, response.text


def time_page(client: TestClient, path: str, loads: int) -> list[float]:
    client.get(path)  # warm: templates compiled, caches filled
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000, help="Request-log rows to add.")
    parser.add_argument("--loads", type=int, default=20, help="Loads of each page.")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="llmops-ui-bench-"))
    home = open_home(Settings(home=tmp / "home"))
    seeded = seed_store(home, tmp)
    started = time.perf_counter()
    add_requests(home, args.rows, list(seeded.key_ids.values()))
    print(f"seeded {args.rows:,} request rows in {time.perf_counter() - started:.1f} s (SQLite, {tmp})\n")
    with TestClient(create_dashboard(home)) as client:
        login(client, seeded.keys["admin"])
        results = [(name, time_page(client, path, args.loads)) for name, path in pages(seeded)]
    floor = statistics.median(results[0][1])
    print(f"| page | p50 ms | p95 ms | p50 / static file | under {TARGET_MS:.0f} ms |")
    print("|---|---:|---:|---:|---|")
    for name, times in results:
        p50 = statistics.median(times)
        p95 = statistics.quantiles(times, n=20)[18] if len(times) >= 2 else times[0]
        ok = "yes" if p95 < TARGET_MS else "**no**"
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {p50 / floor:.1f}x | {ok} |")


if __name__ == "__main__":
    main()
