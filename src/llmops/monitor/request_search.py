"""Search the request log: filters, one request in full, feedback and online scores joined by id.

``search_requests(store, RequestFilter(...))`` lists request-log rows newest first, each with the
feedback given on it; ``get_request(store, id)`` returns one row with its timings, feedback and
online-evaluation scores (``NotFound`` naming ``request_id`` otherwise). ``iter_requests`` streams
every matching row in batches, for export (``request_export``). Stored prompts, completions and
feedback text are shown through ``reveal`` (decrypted, or ``[encrypted]`` for a reader without
payload access). The admin API and ``llmops requests`` both call these, so they filter and present
requests identically. Reads are blocking: on an event loop call them in a thread.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from llmops.errors import InvalidInput, NotFound
from llmops.security.payload_crypto import Reveal, default_reveal
from llmops.store.database import Store
from llmops.store.schema import GatewayRequest, OnlineEvalResult, RequestFeedback

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
REQUEST_COLUMNS = tuple(column.name for column in GatewayRequest.__table__.columns)


def as_utc(value: datetime) -> datetime:
    """A caller-given time in UTC (a naive one is taken as UTC). Stored times come back aware already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_time(value: str, *, param: str, now: datetime | None = None) -> datetime:
    """An ISO-8601 time (UTC when no zone is given) or a span ago: ``30m``, ``2h``, ``7d``, ``1w``."""
    text = value.strip()
    match = _AGO.match(text)
    if match is not None:
        try:
            return (now or datetime.now(UTC)) - timedelta(
                seconds=float(match.group(1)) * _UNIT_S[match.group(2)]
            )
        except OverflowError:
            raise InvalidInput(f"{param} {value!r} reaches back past year 1", param=param) from None
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise InvalidInput(
            f"{param} {value!r} is not a time; give ISO 8601 (2024-05-01T12:00:00Z) "
            "or a span ago (30m, 2h, 7d)",
            param=param,
        ) from None


class RequestFilter(BaseModel):
    """Which request-log rows to list; every field narrows the search (all must hold)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployment: str | None = Field(default=None, description="Deployment the request named.")
    model_version: str | None = Field(default=None, description="Model version that answered.")
    since: datetime | None = Field(default=None, description="Requests at or after this time.")
    until: datetime | None = Field(default=None, description="Requests before this time.")
    status: int | None = Field(default=None, ge=100, le=599, description="HTTP status of the answer.")
    user: str | None = Field(default=None, description="The request's `user` field.")
    key_id: str | None = Field(default=None, description="Id of the API key that sent it.")
    text: str | None = Field(
        default=None,
        min_length=1,
        description="Case-insensitive text in the prompt or the completion (encrypted payloads never match).",
    )
    limit: int | None = Field(default=100, ge=1, description="At most this many rows (None: all).")
    before_id: str | None = Field(
        default=None,
        description="Only requests older than this one (by time, then id): the next page after it.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> RequestFilter:
        if self.since is not None and self.until is not None and as_utc(self.since) >= as_utc(self.until):
            raise InvalidInput("since must be before until", param="since")
        return self

    def query(self) -> Select[GatewayRequest]:
        query = select(GatewayRequest).order_by(GatewayRequest.ts.desc(), GatewayRequest.id.desc())
        equal = {
            GatewayRequest.deployment: self.deployment,
            GatewayRequest.model_version: self.model_version,
            GatewayRequest.status: self.status,
            GatewayRequest.user: self.user,
            GatewayRequest.key_id: self.key_id,
        }
        for column, value in equal.items():
            if value is not None:
                query = query.where(column == value)
        if self.since is not None:
            query = query.where(GatewayRequest.ts >= as_utc(self.since))
        if self.until is not None:
            query = query.where(GatewayRequest.ts < as_utc(self.until))
        if self.text is not None:
            query = query.where(
                GatewayRequest.prompt.icontains(self.text, autoescape=True)
                | GatewayRequest.completion.icontains(self.text, autoescape=True)
            )
        if self.before_id is not None:  # keyset paging: as fast on page 200 as on page 1
            cursor = select(GatewayRequest.ts).where(GatewayRequest.id == self.before_id).scalar_subquery()
            query = query.where(
                (GatewayRequest.ts < cursor)
                | ((GatewayRequest.ts == cursor) & (GatewayRequest.id < self.before_id))
            )
        return query if self.limit is None else query.limit(self.limit)


class FeedbackView(BaseModel):
    """One feedback on a request."""

    id: str
    score: float | None
    thumbs: str | None
    comment: str | None
    corrected_output: str | None
    key_id: str | None
    created_at: datetime


class OnlineScoreView(BaseModel):
    """One online-evaluation metric on a request."""

    metric: str
    value: float | None
    raw_value: float | None
    error: str | None
    scored_at: datetime


class RequestView(BaseModel):
    """One request-log row with the feedback given on it."""

    id: str
    ts: datetime
    key_id: str | None
    user: str | None
    endpoint: str
    deployment: str | None
    model_version: str | None
    arm: str | None
    replica: str | None
    shadow_of: str | None
    stream: bool
    prompt: str | None
    completion: str | None
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float | None
    latency_ms: float
    status: int
    cost_usd: float
    cache_hit: bool
    error: str | None
    feedback: list[FeedbackView] = Field(default_factory=list)


class RequestDetail(RequestView):
    """One request in full: the row, its timings, feedback and online-evaluation scores."""

    timings: dict[str, float | None]
    online_eval: list[OnlineScoreView] = Field(default_factory=list)


def _view(row: GatewayRequest, feedback: list[FeedbackView], reveal: Reveal) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in REQUEST_COLUMNS}
    values["ts"] = row.ts
    values["prompt"], values["completion"] = reveal(row.prompt), reveal(row.completion)
    return {**values, "feedback": feedback}


def _feedback_by_request(
    session: Session, ids: Sequence[str], reveal: Reveal
) -> dict[str, list[FeedbackView]]:
    found: dict[str, list[FeedbackView]] = {}
    for start in range(0, len(ids), 500):  # keep IN lists short
        query = (
            select(RequestFeedback)
            .where(RequestFeedback.request_id.in_(ids[start : start + 500]))
            .order_by(RequestFeedback.created_at, RequestFeedback.id)
        )
        for item in session.execute(query).scalars():
            found.setdefault(item.request_id, []).append(
                FeedbackView(
                    id=item.id,
                    score=item.score,
                    thumbs=item.thumbs,
                    comment=reveal(item.comment),
                    corrected_output=reveal(item.corrected_output),
                    key_id=item.key_id,
                    created_at=item.created_at,
                )
            )
    return found


def search_requests(
    store: Store, request_filter: RequestFilter, reveal: Reveal = default_reveal
) -> list[RequestView]:
    """Rows matching ``request_filter``, newest first, with their feedback. ``reveal`` shows a stored
    payload (default: decrypted with this process's payload keys)."""
    with store.read() as session:
        rows = list(session.execute(request_filter.query()).scalars())
        feedback = _feedback_by_request(session, [row.id for row in rows], reveal)
        return [RequestView.model_validate(_view(row, feedback.get(row.id, []), reveal)) for row in rows]


def iter_requests(
    store: Store, request_filter: RequestFilter, batch_size: int = 1000, reveal: Reveal = default_reveal
) -> Iterator[RequestView]:
    """Every row matching ``request_filter`` (newest first), read in batches of ``batch_size``."""
    with store.read() as session:
        result = session.execute(request_filter.query().execution_options(yield_per=batch_size))
        for batch in result.scalars().partitions():
            feedback = _feedback_by_request(session, [row.id for row in batch], reveal)
            for row in batch:
                yield RequestView.model_validate(_view(row, feedback.get(row.id, []), reveal))


def timings(row: GatewayRequest) -> dict[str, float | None]:
    """Latency, time to first token, generation time after it, and completion tokens per second.

    The gateway sees the first token of a streamed call. A non-streamed answer arrives whole: its
    ``ttft_ms`` is logged only when the replica reported it (llmops replicas send
    ``x-llmops-ttft-seconds``); otherwise it, generation time and throughput are None (not
    measured) rather than invented.
    """
    ttft = row.ttft_ms
    generation = row.latency_ms - ttft if ttft is not None else None
    rate = row.completion_tokens / (generation / 1000) if generation and row.completion_tokens else None
    return {
        "latency_ms": row.latency_ms,
        "ttft_ms": ttft,
        "generation_ms": generation,
        "completion_tokens_per_s": rate,
    }


def _by_prefix(session: Session, prefix: str) -> GatewayRequest:
    """The one request whose id starts with ``prefix`` (like ``runs show``); NotFound otherwise."""
    query = select(GatewayRequest).where(GatewayRequest.id.startswith(prefix, autoescape=True)).limit(2)
    found = list(session.execute(query).scalars()) if len(prefix) >= 4 else []
    if len(found) == 1:
        return found[0]
    why = (
        f"{prefix!r} is the start of several request ids; give more of it"
        if found
        else (f"no request {prefix!r} in the request log")
    )
    raise NotFound(f"{why}; find ids with `llmops requests search`", param="request_id")


def get_request(store: Store, request_id: str, reveal: Reveal = default_reveal) -> RequestDetail:
    """One request with its timings, feedback and online-evaluation scores (a unique id prefix is enough)."""
    with store.read() as session:
        row = session.get(GatewayRequest, request_id) or _by_prefix(session, request_id)
        request_id = row.id
        feedback = _feedback_by_request(session, [row.id], reveal).get(row.id, [])
        scores = session.execute(
            select(OnlineEvalResult)
            .where(OnlineEvalResult.request_id == request_id)
            .order_by(OnlineEvalResult.metric)
        ).scalars()
        online = [
            OnlineScoreView(
                metric=s.metric,
                value=s.value,
                raw_value=s.raw_value,
                error=s.error,
                scored_at=s.scored_at,
            )
            for s in scores
        ]
        return RequestDetail.model_validate(
            {**_view(row, feedback, reveal), "timings": timings(row), "online_eval": online}
        )
