"""The gateway's stores failing under traffic: the database locked and then down, Redis down, and
the spill file's disk full. PostgreSQL and Redis are reached through a loopback TCP proxy that the
scenario cuts (listener closed, every connection aborted) and restores, so they are really
unreachable for the gateway while the real servers keep running for everyone else.

The full disk is a real one for the process: the gateway runs with RLIMIT_FSIZE, so a write past
the limit fails with EFBIG as a write to a full disk fails with ENOSPC (a tmpfs of fixed size would
need root).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from tests.conftest import _postgres_schema_url
from tests.reliability.faults import TcpProxy
from tests.reliability.harness import (
    gateway_config,
    metric,
    processes,
    report,
    start_gateway,
    start_replica,
    wait_for_rows,
)
from tests.reliability.load import Tally, run_load

from llmops.security.keys import KeySpec, KeyStore
from llmops.security.roles import Role
from llmops.settings import Settings
from llmops.store.home import Home, open_home

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture
def proxied_postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Home, TcpProxy, str]]:
    """A home on a fresh PostgreSQL schema (opened directly), the proxy, and the URL through it."""
    for url in _postgres_schema_url():
        proxy = TcpProxy(("127.0.0.1", 5432))
        proxied = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        home = open_home(Settings(home=tmp_path / "home", database_url=url), migrate=True)
        monkeypatch.setenv("LLMOPS_DATABASE_URL", proxied)
        try:
            yield home, proxy, proxied
        finally:
            proxy.close()


def _keys(home: Home) -> tuple[str, str]:
    keys = KeyStore.from_home(home)
    return keys.create(KeySpec(name="load")).key, keys.create(KeySpec(name="ops", role=Role.ADMIN)).key


def _lock_table(home: Home, seconds: float) -> threading.Thread:
    """Another writer holds the request-log table exclusively for ``seconds``."""
    ready = threading.Event()

    def hold() -> None:
        with home.store.transaction() as session:
            session.execute(text("LOCK TABLE gateway_requests IN ACCESS EXCLUSIVE MODE"))
            ready.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert ready.wait(10)
    return thread


def _merge(*tallies: Tally) -> Tally:
    total = Tally()
    for tally in tallies:
        total.sent += tally.sent
        total.statuses += tally.statuses
        total.errors += tally.errors
        total.answered_ids += tally.answered_ids
    return total


@pytest.mark.postgres
async def test_database_locked_then_down(proxied_postgres: Any, tmp_path: Path) -> None:
    home, proxy, _ = proxied_postgres
    key, admin = _keys(home)
    with processes() as started:
        replica = start_replica("r1")
        started.append(replica)
        config = gateway_config(replica.url, request_log={"flush_interval_s": 0.2, "queue_max": 200})
        gateway = start_gateway(config, tmp_path)
        started.append(gateway)
        rss = gateway.rss_mib()
        normal = await run_load(gateway.url, key, seconds=2, concurrency=4)
        lock = _lock_table(home, 4.0)
        locked = await run_load(gateway.url, key, seconds=4, concurrency=4)
        await asyncio.to_thread(lock.join)
        proxy.cut()
        down = await run_load(gateway.url, key, seconds=8, concurrency=4)  # longer than the key cache
        proxy.restore()
        restored_at = time.monotonic()
        after = await run_load(gateway.url, key, seconds=2, concurrency=4)
        total = _merge(normal, locked, down, after)
        ids = await asyncio.to_thread(wait_for_rows, home.store, set(total.answered_ids), 30.0)
        recovery_s = time.monotonic() - restored_at
        spilled = metric(gateway.url, "llmops_gateway_request_log_spilled_total", admin)
        numbers = report(
            "database locked, then down",
            injected="request-log table locked 4 s (LOCK TABLE), then PostgreSQL unreachable 8 s",
            sent=total.sent,
            answered=total.answered,
            failed=total.failed,
            answered_while_locked=locked.answered,
            answered_while_down=down.answered,
            rows_spilled=spilled,
            rows_lost=len(set(total.answered_ids) - ids),
            recovery_s=round(recovery_s, 1),
            rss_mib_before=round(rss, 1),
            rss_mib_after=round(gateway.rss_mib(), 1),
            statuses=total.summary()["statuses"],
        )
    assert total.failed == 0 and total.refused == 0, numbers
    assert numbers["rows_lost"] == 0 and spilled > 0, numbers


@pytest.fixture
def proxied_redis() -> Iterator[tuple[TcpProxy, str]]:
    """A proxy to the real Redis and a key prefix of this test (its keys deleted afterwards)."""
    import redis

    proxy = TcpProxy(("127.0.0.1", 6379))
    prefix = f"test:reliability:{uuid.uuid4().hex[:10]}:"
    try:
        yield proxy, prefix
    finally:
        proxy.close()
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        stale = list(client.scan_iter(prefix + "*"))
        if stale:
            client.delete(*stale)
        client.close()


async def _until_answered(url: str, key: str, limit_s: float = 20.0) -> tuple[float | None, Tally]:
    """Seconds until half a second of traffic is answered in full, and the tally of what was sent."""
    started, tally = time.monotonic(), Tally()
    while time.monotonic() - started < limit_s:
        window = await run_load(url, key, seconds=0.5, concurrency=2, timeout_s=10)
        tally = _merge(tally, window)
        if window.sent and window.answered == window.sent:
            return time.monotonic() - started, tally
    return None, tally


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
async def test_redis_down(fail_mode: str, proxied_redis: Any, sqlite_home: Home, tmp_path: Path) -> None:
    proxy, prefix = proxied_redis
    keys = KeyStore.from_home(sqlite_home)
    limited = keys.create(KeySpec(name="limited", rpm=1_000_000)).key
    budgeted = keys.create(KeySpec(name="budgeted", budget_usd=1000.0)).key
    admin = keys.create(KeySpec(name="ops", role=Role.ADMIN)).key
    with processes() as started:
        replica = start_replica("r1")
        started.append(replica)
        config = gateway_config(
            replica.url,
            redis_url=f"redis://127.0.0.1:{proxy.port}/0",
            redis_prefix=prefix,
            limits={"backend": "redis", "fail_mode": fail_mode},
        )
        gateway = start_gateway(config, tmp_path)
        started.append(gateway)
        before = [await run_load(gateway.url, k, seconds=1.5, concurrency=2) for k in (limited, budgeted)]
        proxy.cut()
        down_limited, down_budgeted = await asyncio.gather(
            run_load(gateway.url, limited, seconds=3, concurrency=2, timeout_s=15),
            run_load(gateway.url, budgeted, seconds=3, concurrency=2, timeout_s=15),
        )
        fail_open = metric(gateway.url, "llmops_gateway_ratelimit_fail_open_total", admin)
        proxy.restore()
        recovered = [await _until_answered(gateway.url, k) for k in (limited, budgeted)]
        recovery = [seconds for seconds, _ in recovered]
        total = _merge(*before, down_limited, down_budgeted, *(tally for _, tally in recovered))
        numbers = report(
            f"Redis down (limits fail {fail_mode})",
            injected=f"Redis unreachable for 3 s; limits.fail_mode={fail_mode}; one key with a rate "
            "limit, one with a budget",
            sent=total.sent,
            answered=total.answered,
            refused_503=total.statuses[503],
            failed=total.failed,
            rate_limited_key_while_down=down_limited.summary()["statuses"],
            budget_key_while_down=down_budgeted.summary()["statuses"],
            fail_open_metric=fail_open,
            refusals_without_retry_after=down_limited.retry_after_missing + down_budgeted.retry_after_missing,
            recovery_s=round(max(r or 0.0 for r in recovery), 1),
        )
    assert total.failed == 0 and all(t.answered == t.sent for t in before), numbers
    assert down_budgeted.statuses[503] == down_budgeted.sent, numbers  # budgets always fail closed
    if fail_mode == "open":
        assert down_limited.answered == down_limited.sent and fail_open >= down_limited.sent, numbers
    else:
        assert down_limited.statuses[503] == down_limited.sent and fail_open == 0, numbers
    assert numbers["refusals_without_retry_after"] == 0 and None not in recovery, numbers


SPILL_LIMIT_BYTES = 64 << 10


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["relaxed", "strict"])
async def test_spill_disk_full(mode: str, proxied_postgres: Any, tmp_path: Path) -> None:
    home, proxy, _ = proxied_postgres
    key, admin = _keys(home)
    log_config = {
        "mode": mode,
        "flush_interval_s": 0.1,
        "queue_max": 20,
        "batch_size": 20,
        "strict_timeout_s": 2,
    }
    with processes() as started:
        replica = start_replica("r1")
        started.append(replica)
        config = gateway_config(replica.url, request_log=log_config)
        gateway = start_gateway(config, tmp_path, file_size_limit=SPILL_LIMIT_BYTES)
        started.append(gateway)
        normal = await run_load(gateway.url, key, seconds=1.5, concurrency=4)
        proxy.cut()
        down = await run_load(gateway.url, key, seconds=5, concurrency=4, timeout_s=15)
        proxy.restore()
        recovery_s, recovering = await _until_answered(gateway.url, key)
        after = await run_load(gateway.url, key, seconds=1, concurrency=4)
        lost_metric = metric(gateway.url, "llmops_gateway_request_log_lost_total", admin)
        total = _merge(normal, down, recovering, after)
        ids = await asyncio.to_thread(wait_for_rows, home.store, set(total.answered_ids), 15.0)
        spill_bytes = sum(
            p.stat().st_size for p in (home.settings.resolved_home() / "gateway-spill").glob("*")
        )
        stderr = gateway.stop()
        numbers = report(
            f"spill file's disk full ({mode} logging)",
            injected=f"PostgreSQL unreachable 5 s, the gateway's file size limited to {SPILL_LIMIT_BYTES} "
            "bytes (RLIMIT_FSIZE: writes past it fail with EFBIG)",
            sent=total.sent,
            answered=total.answered,
            refused_503=total.statuses[503],
            failed=total.failed,
            answered_while_down=down.answered,
            rows_lost=len(set(total.answered_ids) - ids),
            lost_metric=lost_metric,
            spill_bytes_left=spill_bytes,
            error_logged="cannot be written" in stderr,
            recovery_s=None if recovery_s is None else round(recovery_s, 1),
        )
    assert total.failed == 0 and recovery_s is not None, numbers
    if mode == "relaxed":  # keeps serving; says how many rows it lost, and where
        assert down.answered == down.sent and numbers["error_logged"], numbers
        assert 0 < numbers["rows_lost"] == lost_metric, numbers
    else:  # refuses rather than answer without a row
        assert down.statuses[503] > 0 and numbers["rows_lost"] == 0, numbers
