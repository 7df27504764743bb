"""Bounded load for the reliability scenarios: ``run_load`` at a fixed rate (open loop) or from N
concurrent clients (closed loop), ``Tally`` of what came back, ``calibrate`` to measure capacity."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

CHAT = {"model": "support-bot", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5}


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
