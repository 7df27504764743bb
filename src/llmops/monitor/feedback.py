"""User feedback on served responses: the validated message and per-version aggregates.

``parse_feedback(body)`` turns a ``POST /v1/feedback`` body into a ``Feedback`` or raises
``InvalidInput`` naming the field and the fix. A feedback carries a score in 0..1 and/or thumbs
up/down, and optionally a comment and a corrected output (what the answer should have been, which
the maintenance loop can curate into training data). ``aggregate_feedback`` and
``FeedbackAggregator`` give per model version the feedback count, its rate per served request,
positive/negative counts and the mean score (``llmops_feedback_*``). ``feedback_store`` keeps
feedback in the store, joined to the request log by the request id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmops.errors import InvalidInput
from llmops.monitor.metrics import MonitorMetrics

Rating = Literal["positive", "negative", "neutral", "unrated"]
_FIXES = {
    "request_id": "send the response's x-request-id header (or its 'id' field shortly after the answer)",
    "score": "send a number from 0 (bad) to 1 (good)",
    "thumbs": "send 'up' or 'down'",
    "comment": "keep the comment under 4,000 characters",
    "corrected_output": "keep the corrected output under 100,000 characters",
}


class Feedback(BaseModel):
    """One piece of feedback on one response."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    request_id: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$", description="Id of the rated response."
    )
    score: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        strict=True,
        description="Quality from 0 (bad) to 1 (good).",
    )
    thumbs: Literal["up", "down"] | None = Field(default=None, description="Thumbs up or down.")
    comment: str | None = Field(default=None, max_length=4000, description="Free text from the user.")
    corrected_output: str | None = Field(
        default=None, max_length=100_000, description="What the answer should have been."
    )

    @field_validator("score", mode="before")
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("score must be a number, not true/false (use 'thumbs' for up/down)")
        return value

    @model_validator(mode="after")
    def _says_something(self) -> Feedback:
        if self.score is None and self.thumbs is None and not self.comment and not self.corrected_output:
            raise ValueError("feedback needs a score, thumbs, a comment or a corrected_output")
        return self

    @property
    def value(self) -> float | None:
        """The score, or thumbs as 1.0 (up) / 0.0 (down); None when only text was given."""
        if self.score is not None:
            return self.score
        if self.thumbs is not None:
            return 1.0 if self.thumbs == "up" else 0.0
        return None

    @property
    def rating(self) -> Rating:
        value = self.value
        if value is None:
            return "unrated"
        if value == 0.5:
            return "neutral"
        return "positive" if value > 0.5 else "negative"


def parse_feedback(body: Any) -> Feedback:
    """Validate a feedback body; ``InvalidInput`` (400) names the first bad field and how to fix it."""
    if not isinstance(body, Mapping):
        raise InvalidInput("feedback must be a JSON object", param="body")
    try:
        return Feedback.model_validate(dict(body))
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            raise InvalidInput(f"unknown feedback field {field!r}; remove it", param=field) from exc
        if not field:
            raise InvalidInput(message, param="body") from exc
        fix = _FIXES.get(field, "")
        raise InvalidInput(
            f"feedback field {field!r}: {message}" + (f"; {fix}" if fix else ""), param=field
        ) from exc


@dataclass(frozen=True)
class FeedbackRate:
    """Feedback of one model version."""

    model_version: str
    requests: int | None
    feedback: int
    positive: int
    negative: int
    rate: float | None  # feedback per served request, when the request count is known
    positive_share: float | None  # positive / (positive + negative)
    mean_score: float | None


@dataclass
class _Tally:
    feedback: int = 0
    positive: int = 0
    negative: int = 0
    scored: int = 0
    total: float = 0.0

    def add(self, item: Feedback) -> None:
        self.feedback += 1
        self.positive += item.rating == "positive"
        self.negative += item.rating == "negative"
        if item.value is not None:
            self.scored += 1
            self.total += item.value


def _rate(version: str, tally: _Tally, requests: int | None) -> FeedbackRate:
    rated = tally.positive + tally.negative
    return FeedbackRate(
        model_version=version,
        requests=requests,
        feedback=tally.feedback,
        positive=tally.positive,
        negative=tally.negative,
        rate=tally.feedback / requests if requests else None,
        positive_share=tally.positive / rated if rated else None,
        mean_score=tally.total / tally.scored if tally.scored else None,
    )


def aggregate_feedback(
    items: Iterable[tuple[str, Feedback]], requests: Mapping[str, int] | None = None
) -> list[FeedbackRate]:
    """Per-version aggregates of ``(model_version, feedback)`` pairs, sorted by version."""
    tallies: dict[str, _Tally] = {}
    for version, item in items:
        tallies.setdefault(version, _Tally()).add(item)
    requests = requests or {}
    versions = sorted(set(tallies) | set(requests))
    return [_rate(v, tallies.get(v, _Tally()), requests.get(v)) for v in versions]


class FeedbackAggregator:
    """Running per-version feedback aggregates, exported as ``llmops_feedback_*``."""

    def __init__(self, metrics: MonitorMetrics | None = None) -> None:
        self.metrics = metrics
        self._tallies: dict[str, _Tally] = {}
        self._requests: dict[str, int] = {}

    def record_request(self, model_version: str) -> None:
        """Count one served request (the denominator of the feedback rate)."""
        self._requests[model_version] = self._requests.get(model_version, 0) + 1
        self._export_rate(model_version)

    def record(self, model_version: str, feedback: Feedback) -> None:
        self._tallies.setdefault(model_version, _Tally()).add(feedback)
        if self.metrics is not None:
            self.metrics.feedback.labels(model_version=model_version, rating=feedback.rating).inc()
            if feedback.value is not None:
                self.metrics.feedback_score.labels(model_version=model_version).observe(feedback.value)
        self._export_rate(model_version)

    def _export_rate(self, model_version: str) -> None:
        requests = self._requests.get(model_version)
        if self.metrics is not None and requests:
            tally = self._tallies.get(model_version)
            rate = tally.feedback / requests if tally is not None else 0.0
            self.metrics.feedback_rate.labels(model_version=model_version).set(rate)

    def rates(self) -> list[FeedbackRate]:
        versions = sorted(set(self._tallies) | set(self._requests))
        return [_rate(v, self._tallies.get(v, _Tally()), self._requests.get(v)) for v in versions]
