"""Alert history: every alert that fired, firing now or resolved, in memory and optionally on disk.

``AlertHistory`` keeps the latest state of the last ``max_records`` alerts. With a ``path`` it
appends each state change as one JSON line (an alert is written when it fires and again when it
resolves; the last line of an id wins), reloads the file on start (so an evaluator that restarts
adopts alerts still firing instead of notifying them twice) and compacts it when it grows to
twice the kept records. ``list_alerts(path)`` reads such a file. A ``listener`` sees every state
change (the serving process stores alerts in the ``monitor_alerts`` table through it, see
``alert_store``), and ``initial`` hands over alerts loaded from elsewhere.
Writes are a single small append on a state change (rare), done in the caller's thread.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmops.errors import InvalidInput

log = logging.getLogger(__name__)
AlertStatus = Literal["firing", "resolved"]


class AlertRecord(BaseModel):
    """One alert: a rule firing for one label set, from when it started until it resolved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Unique id of this occurrence.")
    fingerprint: str = Field(description="Stable hash of the rule name and the sample's labels.")
    rule: str = Field(description="The rule's name.")
    status: AlertStatus = Field(description="firing or resolved.")
    metric: str = Field(description="The sample name the rule reads.")
    op: str = Field(description="The rule's comparison.")
    threshold: float = Field(description="The rule's threshold.")
    value: float = Field(description="The value that fired it (the last seen while firing).")
    labels: dict[str, str] = Field(description="alertname, the sample's labels and the rule's labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="The rule's annotations.")
    webhook: str | None = Field(default=None, description="The webhook target's name, if any.")
    started_at: datetime = Field(description="When it started firing (UTC).")
    resolved_at: datetime | None = Field(default=None, description="When it resolved (UTC).")


AlertListener = Callable[[AlertRecord], None]


class AlertHistory:
    """The latest state of recent alerts, persisted as JSON lines when ``path`` is given."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        max_records: int = 1000,
        initial: Iterable[AlertRecord] = (),
        listener: AlertListener | None = None,
    ) -> None:
        if max_records < 1:
            raise InvalidInput("max_records must be at least 1", param="max_records")
        self.path = path
        self.max_records = max_records
        self.listener = listener
        self._records: dict[str, AlertRecord] = {}
        self._lines = 0
        if path is not None and path.is_file():
            self._records, self._lines = _read(path)
        for record in initial:  # e.g. alerts a previous process left firing, read from the store
            self._records.setdefault(record.id, record)
        self._trim()
        if path is not None and self._lines > 2 * self.max_records:
            self._compact()

    def record(self, record: AlertRecord) -> None:
        """Store a new alert or a state change of one (same ``id``)."""
        self._records.pop(record.id, None)
        self._records[record.id] = record
        self._trim()
        if self.listener is not None:
            try:
                self.listener(record)
            except Exception:  # storing elsewhere must not stop the in-memory history
                log.exception("alert history listener failed")
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(record.model_dump_json() + "\n")
        self._lines += 1
        if self._lines > 2 * self.max_records:
            self._compact()

    def records(self, status: AlertStatus | None = None, limit: int | None = None) -> list[AlertRecord]:
        """Alerts, most recently started first, optionally only ``firing`` or ``resolved`` ones."""
        chosen = [r for r in self._records.values() if status is None or r.status == status]
        chosen.sort(key=lambda record: record.started_at, reverse=True)
        return chosen if limit is None else chosen[:limit]

    def firing(self) -> list[AlertRecord]:
        return self.records("firing")

    def _trim(self) -> None:
        # Resolved alerts go first; alerts still firing are kept while there is room.
        while len(self._records) > self.max_records:
            victim = next((k for k, r in self._records.items() if r.status == "resolved"), None)
            self._records.pop(victim if victim is not None else next(iter(self._records)))

    def _compact(self) -> None:
        assert self.path is not None
        temporary = self.path.with_suffix(self.path.suffix + ".tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            for record in self._records.values():
                handle.write(record.model_dump_json() + "\n")
        os.replace(temporary, self.path)
        self._lines = len(self._records)


def _read(path: Path) -> tuple[dict[str, AlertRecord], int]:
    records: dict[str, AlertRecord] = {}
    lines = 0
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            lines += 1
            try:
                record = AlertRecord.model_validate(json.loads(line))
            except (ValueError, ValidationError):  # a torn last line after a crash, or a hand edit
                log.warning("skipping unreadable line %d of the alert history %s", number, path)
                continue
            records.pop(record.id, None)
            records[record.id] = record
    return records, lines


def list_alerts(path: Path, *, status: AlertStatus | None = None, limit: int = 100) -> list[AlertRecord]:
    """Alerts stored at ``path`` (firing and past), most recent first; empty when there is no file."""
    if limit < 1:
        raise InvalidInput("limit must be at least 1", param="limit")
    if not path.is_file():
        return []
    records, _ = _read(path)
    chosen = [record for record in records.values() if status is None or record.status == status]
    chosen.sort(key=lambda record: record.started_at, reverse=True)
    return chosen[:limit]
