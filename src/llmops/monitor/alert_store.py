"""Alerts in the store: the ``monitor_alerts`` rows of ``AlertRecord``s, and reading them back.

The serving process writes each alert state change through the monitor's background writer
(``alert_row``); ``llmops monitor alerts`` and the admin API list them (``list_stored_alerts``), and
a restarted process adopts the alerts still firing (``firing_alerts``) instead of notifying them
again. Reads are blocking: on an event loop call them in a thread.
"""

from __future__ import annotations

from sqlalchemy import select

from llmops.errors import InvalidInput
from llmops.monitor.alert_history import AlertRecord, AlertStatus
from llmops.store.database import Store
from llmops.store.schema import MonitorAlert


def alert_row(record: AlertRecord) -> MonitorAlert:
    """The ``monitor_alerts`` row of ``record`` (its id is the row's key: a resolve updates it)."""
    return MonitorAlert(
        id=record.id,
        fingerprint=record.fingerprint,
        rule=record.rule,
        status=record.status,
        metric=record.metric,
        op=record.op,
        threshold=record.threshold,
        value=record.value,
        labels=dict(record.labels),
        annotations=dict(record.annotations),
        webhook=record.webhook,
        started_at=record.started_at,
        resolved_at=record.resolved_at,
    )


def _record(row: MonitorAlert) -> AlertRecord:
    return AlertRecord(
        id=row.id,
        fingerprint=row.fingerprint,
        rule=row.rule,
        status="resolved" if row.status == "resolved" else "firing",
        metric=row.metric,
        op=row.op,
        threshold=row.threshold,
        value=row.value,
        labels={str(k): str(v) for k, v in row.labels.items()},
        annotations={str(k): str(v) for k, v in row.annotations.items()},
        webhook=row.webhook,
        started_at=row.started_at,
        resolved_at=row.resolved_at,
    )


def list_stored_alerts(
    store: Store, *, status: AlertStatus | None = None, rule: str | None = None, limit: int = 100
) -> list[AlertRecord]:
    """Stored alerts, most recently started first, optionally only one status or rule."""
    if limit < 1:
        raise InvalidInput("limit must be at least 1", param="limit")
    query = select(MonitorAlert).order_by(MonitorAlert.started_at.desc(), MonitorAlert.id).limit(limit)
    if status is not None:
        query = query.where(MonitorAlert.status == status)
    if rule is not None:
        query = query.where(MonitorAlert.rule == rule)
    with store.read() as session:
        return [_record(row) for row in session.execute(query).scalars()]


def firing_alerts(store: Store, limit: int = 1000) -> list[AlertRecord]:
    """Alerts the store says are firing (a restarted evaluator adopts these)."""
    return list_stored_alerts(store, status="firing", limit=limit)
