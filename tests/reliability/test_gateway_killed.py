"""The gateway SIGKILLed under load, in strict and in relaxed request-logging mode.

Strict: the response completes only after its row committed, so every answer a client received has
its row in the database after the kill. Relaxed: rows wait in memory up to ``flush_interval_s``
before their batch commits, so the rows lost are of answers given in the last moments before the
kill (the documented window: about ``flush_interval_s`` of traffic), never older ones.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tests.reliability.harness import (
    gateway_config,
    logged_ids,
    processes,
    report,
    start_gateway,
    start_replica,
)
from tests.reliability.load import run_load

from llmops.security.keys import KeySpec, KeyStore
from llmops.store.home import Home

pytestmark = [pytest.mark.slow, pytest.mark.anyio]
FLUSH_INTERVAL_S = 0.2
COMMIT_SLACK_S = 2.0  # a batch's commit itself takes time on a loaded machine


@pytest.mark.parametrize("mode", ["strict", "relaxed"])
async def test_gateway_sigkilled_under_load(mode: str, sqlite_home: Home, tmp_path: Path) -> None:
    key = KeyStore.from_home(sqlite_home).create(KeySpec(name="kill")).key
    with processes() as started:
        replicas = [start_replica("r1"), start_replica("r2")]
        started += replicas
        config = gateway_config(
            *(r.url for r in replicas), request_log={"mode": mode, "flush_interval_s": FLUSH_INTERVAL_S}
        )
        gateway = start_gateway(config, tmp_path)
        started.append(gateway)
        rss = gateway.rss_mib()
        stop = asyncio.Event()
        load = asyncio.create_task(
            run_load(gateway.url, key, seconds=30, concurrency=16, timeout_s=10, stop=stop)
        )
        await asyncio.sleep(3.0)
        gateway.kill()
        killed_at = time.monotonic()
        stop.set()
        tally = await load
    ids = logged_ids(sqlite_home.store)
    answered = dict(zip(tally.answered_ids, tally.answered_at, strict=True))
    lost = {i: answered[i] for i in set(answered) - ids}
    oldest_lost_s = max((killed_at - (start + latency) for start, latency in lost.values()), default=0.0)
    numbers = report(
        f"gateway SIGKILL under load ({mode} logging)",
        injected=f"SIGKILL to the gateway after 3 s of 16 concurrent clients, request_log.mode={mode}",
        sent=tally.sent,
        answered=tally.answered,
        failed=tally.failed,
        rows=len(ids),
        rows_lost=len(lost),
        oldest_lost_answer_s_before_kill=round(oldest_lost_s, 2),
        rss_mib_before=round(rss, 1),
        errors=dict(tally.errors),
    )
    assert tally.answered > 0, numbers
    if mode == "strict":
        assert not lost, numbers
    else:
        assert oldest_lost_s <= FLUSH_INTERVAL_S + COMMIT_SLACK_S, numbers
