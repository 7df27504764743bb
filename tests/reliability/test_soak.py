"""Soak: the gateway and two replicas at ~80% of the capacity measured in the same run.

Capacity is measured first (closed loop, a few seconds); then traffic runs at 80% of it for a
warm-up and for ``LLMOPS_SOAK_SECONDS`` (default 30 in CI; 600 and 3600 are the full forms:
``LLMOPS_SOAK_SECONDS=600 pytest tests/reliability/test_soak.py -s``). Between stretches the load
stops so the process is measured idle: RSS may not grow by 10% or more after the warm-up, open file
descriptors (beside the bounded pool of keep-alive connections to the replicas) and asyncio tasks
come back to where they were, no answer is a 5xx, and the request log
holds exactly one row per request sent.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tests.reliability.harness import (
    gateway_config,
    processes,
    report,
    start_gateway,
    start_replica,
    wait_for_rows,
)
from tests.reliability.load import calibrate, run_load

from llmops.security.keys import KeySpec, KeyStore
from llmops.store.home import Home

pytestmark = [pytest.mark.slow, pytest.mark.anyio]
SOAK_SECONDS = float(os.environ.get("LLMOPS_SOAK_SECONDS", "30"))
WARM_UP_SECONDS = min(15.0, max(5.0, SOAK_SECONDS / 10))
STRETCH_SECONDS = 30.0  # idle samples between stretches of this length show a leak's trend
FD_SLACK = 8  # descriptors other than pooled replica connections (those are left out of the count)
TASK_SLACK = 2


def _idle_sample(gateway, replicas) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    time.sleep(1.5)  # in-flight work, the log writer and keep-alive closes settle
    pooled = tuple(int(urlsplit(r.url).port or 0) for r in replicas)
    fds = gateway.fds(pooled_to=pooled)
    names = _settled_tasks(gateway)
    rss = round(gateway.rss_mib(), 1)
    return {"rss_mib": rss, "fds": fds, "tasks": sum(names.values()), "task_names": names}


def _settled_tasks(gateway, within_s: float = 10.0) -> Counter[str]:  # type: ignore[no-untyped-def]
    """The gateway's asyncio tasks by coroutine, once two readings 0.5 s apart agree.

    On a loaded machine work that outlives its request (a settle, a log flush) can still be running
    1.5 s after the load stops; a leak does not finish, so waiting for a steady census keeps the
    check strict while a finishing task is not counted."""
    previous = Counter(gateway.task_census()["names"])
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current = Counter(gateway.task_census()["names"])
        if current == previous:
            return current
        previous = current
    return previous


async def test_soak_at_80_percent_of_capacity(sqlite_home: Home, tmp_path: Path) -> None:
    key = KeyStore.from_home(sqlite_home).create(KeySpec(name="soak")).key
    with processes() as started:
        replicas = [start_replica("r1"), start_replica("r2")]
        started += replicas
        gateway = start_gateway(gateway_config(*(r.url for r in replicas)), tmp_path)
        started.append(gateway)
        capacity, calibration = await calibrate(gateway.url, key)
        rate = 0.8 * capacity
        warm = await run_load(gateway.url, key, seconds=WARM_UP_SECONDS, rate=rate, concurrency=128)
        before = _idle_sample(gateway, replicas)
        tallies, samples = [calibration, warm], [before]
        remaining = SOAK_SECONDS
        while remaining > 0:
            stretch = min(STRETCH_SECONDS, remaining)
            tallies.append(await run_load(gateway.url, key, seconds=stretch, rate=rate, concurrency=128))
            samples.append(_idle_sample(gateway, replicas))
            remaining -= stretch
        after = samples[-1]
        sent = sum(t.sent for t in tallies)
        answered_ids = {i for t in tallies for i in t.answered_ids}
        ids = wait_for_rows(sqlite_home.store, answered_ids)
        soak = tallies[2:]
        numbers = report(
            "soak",
            injected=f"{rate:.0f} req/s (80% of {capacity:.0f}) for {WARM_UP_SECONDS:g}s warm-up "
            f"+ {SOAK_SECONDS:g}s",
            sent=sent,
            answered=sum(t.answered for t in tallies),
            failed=sum(t.failed + t.refused for t in tallies),
            server_errors=sum(t.server_errors for t in tallies),
            rows_lost=len(answered_ids - ids),
            rows=len(ids),
            rss_mib_before=before["rss_mib"],
            rss_mib_after=after["rss_mib"],
            fds_before=before["fds"],
            fds_after=after["fds"],
            tasks_before=before["tasks"],
            tasks_after=after["tasks"],
            idle_samples=samples,
            p50_ms=round(max(t.p(0.5) for t in soak) * 1000, 1),
            p99_ms=round(max(t.p(0.99) for t in soak) * 1000, 1),
            errors=dict(sum((t.errors for t in tallies), start=tallies[0].errors.__class__())),
        )
    assert numbers["server_errors"] == 0 and numbers["failed"] == 0, numbers
    assert numbers["rows"] == sent and numbers["rows_lost"] == 0, numbers
    assert after["rss_mib"] < before["rss_mib"] * 1.10, samples
    assert after["fds"] <= before["fds"] + FD_SLACK, samples
    grown = after["task_names"] - before["task_names"]
    assert abs(after["tasks"] - before["tasks"]) <= TASK_SLACK, (grown, samples)
