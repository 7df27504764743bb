"""Traffic of the request log over a window: totals, per model version, and per time bucket.

Counts, errors, spend and averages are aggregated in SQL in one pass over the window; the 95th
percentiles of latency and TTFT are taken over the window's latest ``PERCENTILE_SAMPLE`` requests,
the same way on SQLite and PostgreSQL.
A consumer's view passes its ``key_id`` and sees its own traffic only. Shadow copies are left out:
they are not traffic a client sent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.sql.elements import ColumnElement

from llmops.errors import InvalidInput
from llmops.store.database import Store
from llmops.store.schema import GatewayRequest, utcnow

PERCENTILE_SAMPLE = 2000
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}


@dataclass(frozen=True)
class VersionTraffic:
    model_version: str
    deployment: str
    requests: int
    errors: int
    cost_usd: float
    p95_latency_ms: float | None
    p95_ttft_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class TrafficSummary:
    window: str
    requests: int
    errors: int
    cost_usd: float
    p95_latency_ms: float | None
    p95_ttft_ms: float | None
    versions: list[VersionTraffic]
    buckets: list[str] = field(default_factory=list)
    requests_by_version: dict[str, list[float | None]] = field(default_factory=dict)
    latency_by_version: dict[str, list[float | None]] = field(default_factory=dict)
    errors_by_bucket: list[float | None] = field(default_factory=list)
    sampled: int = 0  # requests the percentiles were taken over

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def window_of(value: str | None) -> str:
    """The window name (1h, 24h or 7d; default 24h); InvalidInput naming the choices otherwise."""
    name = value or "24h"
    if name not in WINDOWS:
        raise InvalidInput(f"window {name!r} is not one of {', '.join(WINDOWS)}", param="window")
    return name


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile by nearest rank (values need not be sorted); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _bucket(store: Store, hourly: bool) -> ColumnElement[str]:
    """The hour (or day) of ``ts`` as text, in UTC, on either database."""
    if store.dialect == "postgresql":
        pattern = "YYYY-MM-DD HH24" if hourly else "YYYY-MM-DD"
        return func.to_char(func.timezone("UTC", GatewayRequest.ts), pattern)
    return func.substr(GatewayRequest.ts, 1, 13 if hourly else 10)


def scanned(store: Store, column: Any) -> Any:
    """``column`` in a filter that should read the table in one pass rather than through its index.

    Without planner statistics SQLite walks an index (``ts``, ``key_id, ts``) for a filter that
    holds most of the table, one random row read per request (about 7 times slower than a scan at
    100,000 rows); an expression over the column makes it scan. PostgreSQL chooses well by itself.
    """
    if store.dialect == "postgresql":
        return column
    return func.coalesce(column, column, type_=column.type)


def _scoped(query: Any, ts: Any, since: datetime, key_id: str | None) -> Any:
    query = query.where(ts >= since, GatewayRequest.shadow_of.is_(None))
    return query.where(GatewayRequest.key_id == key_id) if key_id is not None else query


def traffic_summary(store: Store, window: str = "24h", *, key_id: str | None = None) -> TrafficSummary:
    """What the request log says about the last ``window`` (of ``key_id``'s requests only, if given).

    Counts, errors, spend and mean latency cover every request of the window (one scan, grouped by
    time bucket and version); the p95 latency and TTFT are those of its latest ``PERCENTILE_SAMPLE``
    requests (read newest first through the time index), which is all of them in most windows.
    """
    since = utcnow() - WINDOWS[window]
    version = func.coalesce(GatewayRequest.model_version, "-")
    deployment = func.coalesce(GatewayRequest.deployment, "-")
    failed = func.sum(case((GatewayRequest.status >= 400, 1), else_=0))
    bucket = _bucket(store, hourly=window != "7d")
    grouped = _scoped(
        select(bucket, version, deployment, func.count(), failed, func.sum(GatewayRequest.cost_usd),
               func.avg(GatewayRequest.latency_ms)),
        scanned(store, GatewayRequest.ts), since, key_id,
    ).group_by(bucket, version, deployment)  # fmt: skip
    latest = (
        _scoped(
            select(version, GatewayRequest.latency_ms, GatewayRequest.ttft_ms),
            GatewayRequest.ts,
            since,
            key_id,
        )
        .order_by(GatewayRequest.ts.desc())
        .limit(PERCENTILE_SAMPLE)
    )
    with store.read() as session:
        rows = session.execute(grouped).all()
        latencies: dict[str, list[float]] = {}
        ttfts: dict[str, list[float]] = {}
        for name, latency, ttft in session.execute(latest):
            latencies.setdefault(name, []).append(latency)
            if ttft is not None:
                ttfts.setdefault(name, []).append(ttft)
    totals: dict[tuple[str, str], list[float]] = {}
    for _, name, dep, n, bad, cost, _mean in rows:
        total = totals.setdefault((name, dep), [0, 0, 0.0])
        total[0], total[1], total[2] = total[0] + n, total[1] + (bad or 0), total[2] + (cost or 0.0)
    versions = [
        VersionTraffic(
            model_version=name,
            deployment=dep,
            requests=int(n),
            errors=int(bad),
            cost_usd=float(cost),
            p95_latency_ms=percentile(latencies.get(name, []), 0.95),
            p95_ttft_ms=percentile(ttfts.get(name, []), 0.95),
        )
        for (name, dep), (n, bad, cost) in totals.items()
    ]
    versions.sort(key=lambda v: -v.requests)
    summary = TrafficSummary(
        window=window,
        requests=sum(v.requests for v in versions),
        errors=sum(v.errors for v in versions),
        cost_usd=sum(v.cost_usd for v in versions),
        p95_latency_ms=percentile([x for xs in latencies.values() for x in xs], 0.95),
        p95_ttft_ms=percentile([x for xs in ttfts.values() for x in xs], 0.95),
        versions=versions,
        sampled=sum(len(xs) for xs in latencies.values()),
    )
    _fill_series(summary, [(label, name, n, bad, mean) for label, name, _dep, n, bad, _cost, mean in rows])
    return summary


def _fill_series(summary: TrafficSummary, rows: Sequence[tuple[Any, ...]]) -> None:
    """Per-bucket series from (bucket, version, requests, errors, mean latency) rows; a version
    under several deployments gets the request-weighted mean of their means."""
    labels = sorted({str(row[0]) for row in rows})
    index = {label: i for i, label in enumerate(labels)}
    summary.buckets.extend(label[-2:] + "h" if len(label) == 13 else label[5:] for label in labels)
    counts: dict[str, list[float]] = {}
    latency_sums: dict[str, list[float]] = {}
    errors, totals = [0.0] * len(labels), [0.0] * len(labels)
    for label, name, n, bad, mean_latency in rows:
        i, version = index[str(label)], str(name)
        counts.setdefault(version, [0.0] * len(labels))[i] += float(n)
        latency_sums.setdefault(version, [0.0] * len(labels))[i] += float(mean_latency or 0.0) * float(n)
        errors[i] += float(bad or 0)
        totals[i] += float(n)
    for version, per_bucket in counts.items():
        sums = latency_sums[version]
        summary.requests_by_version[version] = [c or None for c in per_bucket]
        summary.latency_by_version[version] = [
            s / c if c else None for s, c in zip(sums, per_bucket, strict=True)
        ]
    summary.errors_by_bucket.extend(e / c if c else None for e, c in zip(errors, totals, strict=True))
