"""Traffic of the request log over a window: totals, per model version, and per time bucket.

Counts, errors, spend and averages are aggregated in SQL; the 95th percentiles of latency and TTFT
are taken over the window's values (one narrow column read), the same way on SQLite and PostgreSQL.
A consumer's view passes its ``key_id`` and sees its own traffic only. Shadow copies are left out:
they are not traffic a client sent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, case, func, select
from sqlalchemy.sql.elements import ColumnElement

from llmops.errors import InvalidInput
from llmops.store.database import Store
from llmops.store.schema import GatewayRequest, utcnow

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


def _scoped(query: Select[tuple[object, ...]], since: datetime, key_id: str | None) -> Select[tuple[object, ...]]:
    query = query.where(GatewayRequest.ts >= since, GatewayRequest.shadow_of.is_(None))
    return query.where(GatewayRequest.key_id == key_id) if key_id is not None else query


def traffic_summary(store: Store, window: str = "24h", *, key_id: str | None = None) -> TrafficSummary:
    """What the request log says about the last ``window`` (of ``key_id``'s requests only, if given)."""
    since = utcnow() - WINDOWS[window]
    version = func.coalesce(GatewayRequest.model_version, "-")
    deployment = func.coalesce(GatewayRequest.deployment, "-")
    failed = func.sum(case((GatewayRequest.status >= 400, 1), else_=0))
    totals = _scoped(
        select(version, deployment, func.count(), failed, func.coalesce(func.sum(GatewayRequest.cost_usd), 0.0)),
        since,
        key_id,
    ).group_by(version, deployment)
    timings = _scoped(select(version, GatewayRequest.latency_ms, GatewayRequest.ttft_ms), since, key_id)
    bucket = _bucket(store, hourly=window != "7d")
    per_bucket = _scoped(
        select(bucket, version, func.count(), failed, func.avg(GatewayRequest.latency_ms)), since, key_id
    ).group_by(bucket, version)
    with store.read() as session:
        groups = session.execute(totals).all()
        latencies: dict[str, list[float]] = {}
        ttfts: dict[str, list[float]] = {}
        for name, latency, ttft in session.execute(timings):
            latencies.setdefault(name, []).append(latency)
            if ttft is not None:
                ttfts.setdefault(name, []).append(ttft)
        buckets = session.execute(per_bucket).all()
    versions = [
        VersionTraffic(
            model_version=name, deployment=dep, requests=int(n), errors=int(bad or 0), cost_usd=float(cost),
            p95_latency_ms=percentile(latencies.get(name, []), 0.95), p95_ttft_ms=percentile(ttfts.get(name, []), 0.95),
        )  # fmt: skip
        for name, dep, n, bad, cost in groups
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
    )
    _fill_series(summary, buckets)
    return summary


def _fill_series(summary: TrafficSummary, rows: Sequence[tuple[object, ...]]) -> None:
    labels = sorted({str(row[0]) for row in rows})
    index = {label: i for i, label in enumerate(labels)}
    summary.buckets.extend(label[-2:] + "h" if len(label) == 13 else label[5:] for label in labels)
    errors: list[float | None] = [0.0] * len(labels)
    counts: list[float] = [0.0] * len(labels)
    for label, name, n, bad, mean_latency in rows:
        i = index[str(label)]
        summary.requests_by_version.setdefault(str(name), [None] * len(labels))[i] = float(n)  # type: ignore[arg-type]
        summary.latency_by_version.setdefault(str(name), [None] * len(labels))[i] = float(mean_latency)  # type: ignore[arg-type]
        errors[i] = (errors[i] or 0.0) + float(bad or 0)  # type: ignore[arg-type]
        counts[i] += float(n)  # type: ignore[arg-type]
    summary.errors_by_bucket.extend(e / c if c else None for e, c in zip(errors, counts, strict=True))
