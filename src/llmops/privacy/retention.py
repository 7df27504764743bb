"""Retention: how long each class of data is kept, and the purge that enforces it.

Four classes, each with an age in days (unset: kept): request payloads (prompts and completions,
set to NULL, the row stays), request metadata (the whole request-log row and its online-evaluation
scores), feedback, and audit events. Audit events are kept at least ``AUDIT_MINIMUM_DAYS`` (180)
whatever is configured: a shorter setting is refused. The audit log is a hash chain verified from
its first event, so ``purge`` counts audit events past retention but does not delete them (that
needs a chain checkpoint in ``store.audit``). Every purge that changes something appends a
``privacy.purge`` audit event with the counts. ``rotate_payloads`` re-encrypts every stored payload
(request prompts and completions, feedback text) with the first of ``LLMOPS_PAYLOAD_KEYS`` (after a
key rotation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy import delete as sql_delete

from llmops.errors import InvalidInput, invalid_config
from llmops.security.payload_crypto import PayloadCipher
from llmops.settings import Settings, get_settings
from llmops.store import audit
from llmops.store.home import Home
from llmops.store.schema import AuditEvent, Base, GatewayRequest, OnlineEvalResult, RequestFeedback

AUDIT_MINIMUM_DAYS = 180
DATA_CLASSES = ("request_payloads", "request_metadata", "feedback", "audit_events")
PayloadRow = TypeVar("PayloadRow", GatewayRequest, RequestFeedback)


class RetentionPolicy(BaseModel):
    """Ages (days) after which each class of data is purged; None keeps it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_payloads_days: float | None = Field(
        default=None, gt=0, description="Prompts and completions of logged requests (set to NULL)."
    )
    request_metadata_days: float | None = Field(
        default=None, gt=0, description="Whole request-log rows with their online-evaluation scores."
    )
    feedback_days: float | None = Field(default=None, gt=0, description="Feedback on requests.")
    audit_days: float | None = Field(
        default=None, description=f"Audit events; at least {AUDIT_MINIMUM_DAYS} days (None: kept)."
    )

    @model_validator(mode="after")
    def _audit_minimum(self) -> RetentionPolicy:
        if self.audit_days is not None and self.audit_days < AUDIT_MINIMUM_DAYS:
            raise InvalidInput(
                f"LLMOPS_RETENTION_AUDIT_DAYS is {self.audit_days:g}: retention of audit events must be "
                f"at least {AUDIT_MINIMUM_DAYS} days; set it to {AUDIT_MINIMUM_DAYS} or more, or unset it "
                "to keep them",
                param="retention_audit_days",
            )
        return self

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RetentionPolicy:
        """The policy of the ``LLMOPS_RETENTION_*_DAYS`` settings."""
        chosen = settings or get_settings()
        try:
            return cls(
                request_payloads_days=chosen.retention_request_payloads_days,
                request_metadata_days=chosen.retention_request_metadata_days,
                feedback_days=chosen.retention_feedback_days,
                audit_days=chosen.retention_audit_days,
            )
        except ValidationError as exc:
            raise invalid_config("retention settings", exc.errors(), env_prefix="LLMOPS_RETENTION_") from None


@dataclass(frozen=True)
class PurgeResult:
    """Rows changed (or, in a dry run, that would be) per data class; audit events are only counted."""

    counts: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    audit_seq: int | None = None


def _cutoff(now: datetime, days: float | None) -> datetime | None:
    return None if days is None else now - timedelta(days=days)


def purge(
    home: Home, policy: RetentionPolicy, *, dry_run: bool = False, now: datetime | None = None
) -> PurgeResult:
    """Remove what is past ``policy`` in one transaction (or count it, ``dry_run``)."""
    moment = now or datetime.now(UTC)
    counts = dict.fromkeys(DATA_CLASSES, 0)
    payloads = _cutoff(moment, policy.request_payloads_days)
    metadata = _cutoff(moment, policy.request_metadata_days)
    feedback = _cutoff(moment, policy.feedback_days)
    audits = _cutoff(moment, policy.audit_days)
    with home.store.transaction() as session:
        has_payload = or_(GatewayRequest.prompt.is_not(None), GatewayRequest.completion.is_not(None))

        def count(model: type[Base], *where: ColumnElement[bool]) -> int:
            return int(session.execute(select(func.count()).select_from(model).where(*where)).scalar_one())

        if payloads is not None:
            where = (GatewayRequest.ts < payloads, has_payload)
            counts["request_payloads"] = count(GatewayRequest, *where)
            if not dry_run:
                session.execute(update(GatewayRequest).where(*where).values(prompt=None, completion=None))
        if metadata is not None:
            counts["request_metadata"] = count(GatewayRequest, GatewayRequest.ts < metadata)
            if not dry_run:
                old_ids = select(GatewayRequest.id).where(GatewayRequest.ts < metadata)
                session.execute(sql_delete(OnlineEvalResult).where(OnlineEvalResult.request_id.in_(old_ids)))
                session.execute(sql_delete(GatewayRequest).where(GatewayRequest.ts < metadata))
        if feedback is not None:
            counts["feedback"] = count(RequestFeedback, RequestFeedback.created_at < feedback)
            if not dry_run:
                session.execute(sql_delete(RequestFeedback).where(RequestFeedback.created_at < feedback))
        if audits is not None:
            counts["audit_events"] = count(AuditEvent, AuditEvent.ts < audits)
        changed = any(counts[name] for name in DATA_CLASSES if name != "audit_events")
        seq = None
        if changed and not dry_run:
            event = audit.append(
                session,
                actor=home.actor,
                action="privacy.purge",
                target="retention",
                reason=None,
                after={"deleted_or_nulled": counts, "policy": policy.model_dump()},
            )
            seq = event.seq
    return PurgeResult(counts, dry_run, seq)


def rotate_payloads(home: Home, cipher: PayloadCipher, batch_size: int = 500) -> dict[str, int]:
    """Re-encrypt every stored payload with the cipher's first key (plain ones are encrypted too):
    request prompts and completions, feedback comments and corrected outputs. Returns how many rows
    were rewritten, per table (``requests``, ``feedback``)."""
    return {
        "requests": _rotate(home, cipher, GatewayRequest, ("prompt", "completion"), batch_size),
        "feedback": _rotate(home, cipher, RequestFeedback, ("comment", "corrected_output"), batch_size),
    }


def _rotate(
    home: Home,
    cipher: PayloadCipher,
    model: type[PayloadRow],
    columns: tuple[str, str],
    batch_size: int,
) -> int:
    rewritten, last = 0, ""
    while True:
        with home.store.transaction() as session:
            rows = list(
                session.execute(
                    select(model)
                    .where(model.id > last, or_(*(getattr(model, name).is_not(None) for name in columns)))
                    .order_by(model.id)
                    .limit(batch_size)
                ).scalars()
            )
            for row in rows:
                changed = False
                for name in columns:
                    value = getattr(row, name)
                    rotated = cipher.rotate(value)
                    if rotated != value:
                        setattr(row, name, rotated)
                        changed = True
                rewritten += changed
            last = rows[-1].id if rows else last
        if len(rows) < batch_size:
            return rewritten
