"""Replica faults under traffic, against a gateway process: a replica SIGKILLed mid-stream, one that
stalls (accepts, never answers), one that resets every connection; and slow-loris clients.

Each scenario reports requests sent/answered/failed and how long the gateway took to serve
normally again; the assertions are about outcomes (clean errors, no hangs, failover), not time.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from tests.reliability.faults import RawServer
from tests.reliability.harness import (
    gateway_config,
    metric,
    processes,
    report,
    start_gateway,
    start_model_replica,
    start_replica,
)
from tests.reliability.load import CHAT, Tally, run_load

from llmops.security.keys import KeySpec, KeyStore
from llmops.security.roles import Role
from llmops.store.home import Home

pytestmark = [pytest.mark.slow, pytest.mark.anyio]
FAST_TIMEOUTS = {"timeouts": {"connect_s": 1.0, "first_token_s": 1.0, "total_s": 30.0}}
# generous for a loaded machine: a healthy replica must never miss them
FAILOVER_TIMEOUTS = {"timeouts": {"connect_s": 2.0, "first_token_s": 2.0, "total_s": 30.0}}
FAILOVER_S = 1.9  # an answer this slow waited for the 2 s first-token timeout of the bad replica
MAX_ATTEMPTS_ON_BAD_REPLICA = 10
SLOW_CHECKS = {"interval_s": 2.0, "failure_threshold": 2, "cooldown_s": 2.0}
STREAM = {**CHAT, "stream": True, "max_tokens": 20}


def _key(home: Home, role: Role = Role.CONSUMER) -> str:
    return KeyStore.from_home(home).create(KeySpec(name=f"faults-{role.name.lower()}", role=role)).key


async def _until_normal(url: str, key: str, limit_s: float = 20.0) -> tuple[float | None, Tally]:
    """Seconds until a one-second window of closed-loop traffic is answered without a failure."""
    started, tally = time.monotonic(), Tally()
    while time.monotonic() - started < limit_s:
        window = await run_load(url, key, seconds=1.0, concurrency=4, timeout_s=10)
        tally.sent += window.sent
        tally.statuses += window.statuses
        tally.errors += window.errors
        if window.answered and window.answered == window.sent:
            return time.monotonic() - started, tally
    return None, tally


async def test_replica_killed_mid_stream(sqlite_home: Home, tmp_path: Path) -> None:
    key = _key(sqlite_home)
    with processes() as started:
        doomed, survivor = (
            start_replica("r1", "--token-delay", "0.1"),
            start_replica("r2", "--token-delay", "0.1"),
        )
        started += [doomed, survivor]
        gateway = start_gateway(gateway_config(doomed.url, survivor.url, deployment=FAST_TIMEOUTS), tmp_path)
        started.append(gateway)
        streams = asyncio.create_task(run_load(gateway.url, key, seconds=0.5, concurrency=8, body=STREAM))
        await asyncio.sleep(1.0)  # every stream has started; each lasts about 2 s
        doomed.kill()
        cut = await streams
        recovery_s, after = await _until_normal(gateway.url, key)
        numbers = report(
            "replica SIGKILL mid-stream",
            injected="SIGKILL to one of two replicas while 8 streams were open",
            sent=cut.sent + after.sent,
            answered=cut.answered + after.answered,
            failed=cut.failed + after.failed,
            streams_cut_with_error_event=cut.errors["stream_ended_with_error_event"],
            streams_completed=cut.answered,
            recovery_s=None if recovery_s is None else round(recovery_s, 1),
            gateway_alive=gateway.popen.poll() is None,
        )
    assert cut.sent == cut.answered + cut.errors["stream_ended_with_error_event"], cut.summary()
    assert numbers["streams_cut_with_error_event"] > 0 and numbers["streams_completed"] > 0, numbers
    assert recovery_s is not None and numbers["gateway_alive"], numbers


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with a tokenizer: what ``llmops replica`` serves for real."""
    from tests.engine.engine_factories import save_chat_model

    return save_chat_model(tmp_path_factory.mktemp("tiny-chat-model"))


async def test_real_model_replica_killed_mid_stream(
    sqlite_home: Home, tmp_path: Path, chat_model_dir: Path
) -> None:
    """The same fault with ``llmops replica`` processes serving a real tiny model."""
    key = _key(sqlite_home)
    with processes() as started:
        doomed = start_model_replica(chat_model_dir, "m1")
        started.append(doomed)
        survivor = start_model_replica(chat_model_dir, "m2")
        started.append(survivor)
        config = gateway_config(doomed.url, survivor.url, deployment={"timeouts": {"first_token_s": 30.0}})
        gateway = start_gateway(config, tmp_path)
        started.append(gateway)
        body = {**STREAM, "max_tokens": 200}
        streams = asyncio.create_task(run_load(gateway.url, key, seconds=0.5, concurrency=8, body=body))
        await asyncio.sleep(0.6)  # the streams have started; the tiny model needs about 2 s for each
        doomed.kill()
        cut = await streams
        recovery_s, after = await _until_normal(gateway.url, key)
        numbers = report(
            "real-model replica SIGKILL mid-stream",
            injected="SIGKILL to one of two `llmops replica` processes (tiny Llama) while 8 streams "
            "were open",
            sent=cut.sent + after.sent,
            answered=cut.answered + after.answered,
            failed=cut.failed + after.failed,
            streams_cut_with_error_event=cut.errors["stream_ended_with_error_event"],
            streams_completed=cut.answered,
            recovery_s=None if recovery_s is None else round(recovery_s, 1),
            gateway_alive=gateway.popen.poll() is None,
        )
    assert cut.sent == cut.answered + cut.errors["stream_ended_with_error_event"], cut.summary()
    assert recovery_s is not None and numbers["gateway_alive"], numbers


@pytest.mark.parametrize("behaviour", ["stall", "reset"])
async def test_replica_that_stalls_or_resets_is_failed_over(
    behaviour: str, sqlite_home: Home, tmp_path: Path
) -> None:
    key, admin = _key(sqlite_home), _key(sqlite_home, Role.ADMIN)
    bad = RawServer(behaviour)
    try:
        with processes() as started:
            good = start_replica("good")
            started.append(good)
            config = gateway_config(bad.url, good.url, deployment=FAILOVER_TIMEOUTS, health=SLOW_CHECKS)
            gateway = start_gateway(config, tmp_path)
            started.append(gateway)
            began = time.monotonic()
            tally = await run_load(gateway.url, key, seconds=6, concurrency=4, timeout_s=15)
            # the bad replica is out of rotation once no answer waits for a failover any more
            waited = [
                start + latency - began for start, latency in tally.answered_at if latency >= FAILOVER_S
            ]
            attempts = metric(gateway.url, "llmops_gateway_upstream_failures_total", admin)
            numbers = report(
                f"replica that {'stalls' if behaviour == 'stall' else 'resets connections'}",
                injected="one of two replicas accepts and never answers"
                if behaviour == "stall"
                else "one of two replicas resets every connection (RST)",
                sent=tally.sent,
                answered=tally.answered,
                failed=tally.failed,
                p50_ms=round(tally.p(0.5) * 1000, 1),
                p99_ms=round(tally.p(0.99) * 1000, 1),
                failed_attempts_on_bad_replica=attempts,
                answers_that_waited_for_failover=len(waited),
                recovery_s=round(max(waited, default=0.0), 1),
                statuses=tally.summary()["statuses"],
                errors=dict(tally.errors),
            )
    finally:
        bad.close()
    assert numbers["failed"] == 0 and bad.accepted > 0, numbers
    # out of rotation after a few failed attempts (breaker, health checks), however long traffic runs
    assert attempts <= MAX_ATTEMPTS_ON_BAD_REPLICA, numbers


def _loris(port: int, count: int, key: str | None = None) -> list[socket.socket]:
    """Connections that send part of a request and then go quiet (headers, or a promised body)."""
    held = []
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        if key is not None:
            head += f"Authorization: Bearer {key}\r\n".encode()
            head += b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        else:
            head += b"X-Slow-" + str(index).encode() + b": "
        sock.sendall(head)
        held.append(sock)
    return held


async def test_slow_loris_clients_do_not_starve_others(sqlite_home: Home, tmp_path: Path) -> None:
    key = _key(sqlite_home)
    with processes() as started:
        replicas = [start_replica("r1"), start_replica("r2")]
        started += replicas
        gateway = start_gateway(gateway_config(*(r.url for r in replicas)), tmp_path)
        started.append(gateway)
        baseline = await run_load(gateway.url, key, seconds=3, concurrency=4)
        port = int(gateway.url.rsplit(":", 1)[1])
        held: list[Any] = []
        try:
            held += _loris(port, 300)
            held += _loris(port, 600, key)  # more than http.max_in_flight (512)
            await asyncio.sleep(1.0)
            during = await run_load(gateway.url, key, seconds=5, concurrency=4, timeout_s=15)
            fds = gateway.fds()
        finally:
            for sock in held:
                sock.close()
        numbers = report(
            "slow-loris clients",
            injected="300 connections stuck in their headers and 600 in their bodies, held open",
            sent=during.sent,
            answered=during.answered,
            failed=during.failed,
            baseline_p50_ms=round(baseline.p(0.5) * 1000, 1),
            p50_ms=round(during.p(0.5) * 1000, 1),
            p99_ms=round(during.p(0.99) * 1000, 1),
            gateway_fds_during=fds,
            statuses=during.summary()["statuses"],
            errors=dict(during.errors),
        )
    assert numbers["failed"] == 0 and during.answered > 0, numbers
