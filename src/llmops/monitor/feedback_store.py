"""Feedback in the store: which request a feedback is about, and the row that records it.

A feedback names a request by id. The request is found among the requests this process answered
recently (``RecentRequests``, in memory: the request log may not have written the row yet) or in
the request log (``find_request``, a read in the caller's thread). ``feedback_row`` turns a
validated ``Feedback`` and its ``FeedbackTarget`` into a ``feedback`` table row, after
``protect_text`` has put its free text (comment, corrected output: a completion in all but name)
through the request log's protection step; ``FeedbackReceipt`` is what ``POST /v1/feedback`` answers.
Readers reveal that text like a request's payloads (``request_search``).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from llmops.errors import InvalidInput
from llmops.monitor.feedback import Feedback
from llmops.security.payload_protection import PayloadProtection
from llmops.store.database import Store
from llmops.store.schema import GatewayRequest, RequestFeedback, utcnow


@dataclass(frozen=True)
class FeedbackTarget:
    """The request a feedback is about: who made it and which model version answered."""

    request_id: str
    model_version: str | None
    key_id: str | None


@dataclass(frozen=True)
class FeedbackReceipt:
    """A stored feedback (what ``POST /v1/feedback`` answers)."""

    id: str
    request_id: str
    model_version: str | None
    rating: str
    created_at: datetime

    def to_json(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "object": "feedback",
            "request_id": self.request_id,
            "model_version": self.model_version,
            "rating": self.rating,
            "created_at": self.created_at.isoformat(),
        }


class RecentRequests:
    """The last ``capacity`` requests this process answered, by id (bounded, oldest evicted first)."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise InvalidInput("the recent-request capacity must be at least 1", param="capacity")
        self.capacity = capacity
        self._items: OrderedDict[str, FeedbackTarget] = OrderedDict()

    def add(self, target: FeedbackTarget) -> None:
        self._items[target.request_id] = target
        self._items.move_to_end(target.request_id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, request_id: str) -> FeedbackTarget | None:
        return self._items.get(request_id)

    def __len__(self) -> int:
        return len(self._items)


def find_request(store: Store, request_id: str) -> FeedbackTarget | None:
    """The logged request ``request_id`` (shadow copies excluded), or None (blocking: use a thread)."""
    with store.read() as session:
        row = session.get(GatewayRequest, request_id)
        if row is None or row.shadow_of is not None:
            return None
        return FeedbackTarget(row.id, row.model_version, row.key_id)


RESPONSE_CANDIDATES = 50


def find_response(store: Store, response_id: str) -> list[FeedbackTarget]:
    """The logged requests answered with the response id ``response_id`` (``chatcmpl-...``), newest
    first (a cached answer repeats its id, so there may be several; shadow copies excluded)."""
    with store.read() as session:
        rows = session.execute(
            select(GatewayRequest.id, GatewayRequest.model_version, GatewayRequest.key_id)
            .where(GatewayRequest.response_id == response_id, GatewayRequest.shadow_of.is_(None))
            .order_by(GatewayRequest.ts.desc())
            .limit(RESPONSE_CANDIDATES)
        ).all()
    return [FeedbackTarget(row.id, row.model_version, row.key_id) for row in rows]


def protect_text(feedback: Feedback, protection: PayloadProtection) -> Feedback:
    """``feedback`` with its comment and corrected output redacted and encrypted as ``protection``
    says (blocking: detection is not free). The copy skips validation: a token outgrows the limits."""
    comment, corrected = protection.protect(feedback.comment, feedback.corrected_output)
    return feedback.model_copy(update={"comment": comment, "corrected_output": corrected})


def feedback_row(feedback: Feedback, target: FeedbackTarget, *, key_id: str | None) -> RequestFeedback:
    """The ``feedback`` row of ``feedback`` on ``target``, sent with the key ``key_id``."""
    return RequestFeedback(
        id=f"fb_{uuid.uuid4().hex[:24]}",
        request_id=target.request_id,
        model_version=target.model_version,
        key_id=key_id,
        score=feedback.score,
        thumbs=feedback.thumbs,
        comment=feedback.comment,
        corrected_output=feedback.corrected_output,
        created_at=utcnow(),
    )


def receipt(row: RequestFeedback, feedback: Feedback) -> FeedbackReceipt:
    return FeedbackReceipt(row.id, row.request_id, row.model_version, feedback.rating, row.created_at)
